//! What a build and its steps fail with.

use std::io;
use std::path::PathBuf;

use runtime::unpack;
use shared::Digest;

use crate::cache::CacheError;
use crate::context::ContextError;
use crate::expand::ExpandError;
use crate::fsindex;
use crate::ignore::IgnoreError;
use crate::plan::PlanError;
use crate::run::RunError;
use crate::syntax::Pos;
use crate::syntax::SyntaxError;
use crate::tarball::TarError;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile could not be read.
    #[error("cannot read the Dockerfile {path}")]
    Dockerfile {
        /// The Dockerfile.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The Dockerfile has a syntax error.
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    /// The plan could not be made.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The ignore file is bad.
    #[error(transparent)]
    Ignore(#[from] IgnoreError),
    /// A step failed; `source` says why.
    #[error("{}:{pos}: {keyword} failed", file.display())]
    Step {
        /// The Dockerfile.
        file: PathBuf,
        /// Where the step is.
        pos: Pos,
        /// Its keyword.
        keyword: String,
        /// The cause.
        #[source]
        source: Box<StepError>,
    },
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A file of the build state could not be used.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The `SOURCE_DATE_EPOCH` build argument is not a number of seconds.
    #[error("--build-arg SOURCE_DATE_EPOCH={0:?}: expected seconds since 1970 (an integer)")]
    SourceDateEpoch(String),
    /// A stage thread panicked.
    #[error("a build thread failed")]
    Thread,
}

/// Why one step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A word did not expand.
    #[error(transparent)]
    Expand(#[from] ExpandError),
    /// Sources could not be selected or read.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// The layer could not be written.
    #[error(transparent)]
    Tar(#[from] TarError),
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The base image could not be pulled.
    #[error("pulling {image}")]
    Pull {
        /// The image.
        image: String,
        /// The cause.
        #[source]
        source: runtime::PullError,
    },
    /// A reference is not valid.
    #[error(transparent)]
    Reference(#[from] shared::ImageRefError),
    /// The RUN container failed to start or be captured.
    #[error(transparent)]
    Run(#[from] RunError),
    /// `RUN --network=host` without the entitlement.
    #[error("RUN --network=host needs the network.host entitlement: run `berth build --allow network.host` to let RUN steps use the host's network")]
    HostNetwork,
    /// The RUN command exited with a non-zero code.
    #[error("the command {command} exited with code {code}{}", if output.is_empty() { String::new() } else { format!("; its last output:\n{}", output.join("\n")) })]
    Exit {
        /// The command.
        command: String,
        /// The exit code.
        code: i32,
        /// The last lines of output.
        output: Vec<String>,
    },
    /// A layer could not be unpacked to build a step's root.
    #[error("unpacking layer {digest}")]
    Unpack {
        /// The layer.
        digest: Digest,
        /// The cause.
        #[source]
        source: unpack::UnpackError,
    },
    /// An archive ADD extracts could not be.
    #[error("extracting {path}")]
    Extract {
        /// The archive.
        path: PathBuf,
        /// The cause.
        #[source]
        source: unpack::UnpackError,
    },
    /// A layer could not be indexed.
    #[error(transparent)]
    Index(#[from] fsindex::IndexError),
    /// A URL could not be downloaded.
    #[error("downloading {url}: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// An argument is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// A file of the build state could not be used.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A path could not be resolved inside a step's root, a stage's root or the context.
    #[error(transparent)]
    InRoot(#[from] runtime::inroot::InRootError),
    /// A base image config is unreadable.
    #[error("the config of {image} is not valid JSON")]
    Config {
        /// The image.
        image: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}
