//! FROM: the image a stage starts from — `scratch`, an earlier stage, or an image pulled
//! through the runtime's store (and recorded there).

use runtime::PullOptions;
use shared::manifest::Platform;
use shared::ImageRef;

use super::{key_of, Exec, Image, Layer, StepError};
use crate::cache::LayerRef;
use crate::config::ImageConfig;
use crate::config::RunConfig;
use crate::instructions::{Instruction, Step};
use crate::plan::Base;

impl Exec<'_> {
    /// The image a stage starts from, and whether it was fetched now (not cached).
    pub(super) fn base_image(&self, base: &Base, from: &Step) -> Result<(Image, bool), StepError> {
        match base {
            Base::Scratch => Ok((
                Image {
                    config: ImageConfig {
                        architecture: self.platform.architecture.clone(),
                        os: self.platform.os.clone(),
                        variant: self.platform.variant.clone(),
                        // BuildKit's empty image (`emptyImage`): working directory `/`; its
                        // default PATH comes with the stage's variables (`vars`).
                        config: RunConfig { working_dir: Some("/".into()), ..RunConfig::default() },
                        ..ImageConfig::default()
                    },
                    layers: Vec::new(),
                    layer_key: key_of(&[b"scratch", self.platform.to_string().as_bytes()]),
                    base: None,
                    vars: None,
                },
                false,
            )),
            Base::Stage(i) => {
                let image = self.results.lock().ok().and_then(|r| r.get(i).cloned());
                let image = image.ok_or_else(|| StepError::Invalid(format!("stage {i} has not been built")))?;
                Ok((image, false))
            }
            Base::Image(name) => {
                let Instruction::From(f) = &from.instruction else {
                    return Err(StepError::Invalid("not a FROM step".into()));
                };
                let platform = match &f.platform {
                    Some(p) => {
                        let text =
                            self.plan.expand_global(p, from.pos).map_err(|e| StepError::Invalid(e.to_string()))?;
                        text.parse::<Platform>().map_err(|e| StepError::Invalid(e.to_string()))?
                    }
                    None => self.platform.clone(),
                };
                let (image, pulled) = self.pull(name, &platform)?;
                Ok((image, pulled))
            }
        }
    }

    pub(super) fn pull(&self, name: &str, platform: &Platform) -> Result<(Image, bool), StepError> {
        let reference: ImageRef = name.parse()?;
        let options = PullOptions { platform: platform.clone(), ..PullOptions::default() };
        let before = self.builder.store.find(&reference.to_string()).ok().and_then(|v| v.into_iter().next());
        let content = self.builder.store.content();
        // The store has the image: one manifest request says whether it is still current
        // (none when pinned by digest), without rewriting the store's index.
        let current = match &before {
            Some(b) if b.platform.satisfies(platform) && b.blobs().all(|d| content.has(d)) => {
                if reference.digest().is_some_and(|d| *d == b.manifest) {
                    true
                } else {
                    let resolved =
                        self.handle.block_on(self.builder.client.resolve(&reference, platform)).map_err(|e| {
                            StepError::Pull { image: reference.familiar(), source: runtime::PullError::Client(e) }
                        })?;
                    resolved.manifest.digest == b.manifest
                }
            }
            _ => false,
        };
        let (record, fetched) = match before {
            Some(b) if current => (b, false),
            _ => {
                let record = self
                    .handle
                    .block_on(self.builder.store.pull(&self.builder.client, &reference, &options, &runtime::NoProgress))
                    .map_err(|source| StepError::Pull { image: reference.familiar(), source })?;
                (record, true)
            }
        };
        let bytes = content.read(&record.config).map_err(|e| StepError::Pull {
            image: reference.familiar(),
            source: runtime::PullError::Content { what: "config".into(), source: e },
        })?;
        let config = ImageConfig::from_base(&bytes)
            .map_err(|source| StepError::Config { image: reference.familiar(), source })?;
        let layers = record
            .layers
            .iter()
            .map(|l| Layer {
                layer: LayerRef {
                    digest: l.digest.clone(),
                    size: l.size,
                    diff_id: l.diff_id.clone(),
                    media_type: l.media_type.clone(),
                },
                blob: content.path(&l.digest),
            })
            .collect();
        let image = Image {
            config,
            layers,
            layer_key: key_of(&[b"image", record.manifest.to_string().as_bytes()]),
            base: Some(reference),
            vars: None,
        };
        Ok((image, fetched))
    }
}
