//! The regulator: a bound on the filesystem driver's blocking operations running at once
//! (distribution's `regulator`, its `maxthreads`).
//!
//! Every disk operation of the driver ([`super::FsStorage`] and its upload [`super::direct`]
//! writer) runs through [`Regulator::run`]: it waits (asynchronously) for one of a fixed
//! number of permits, then runs on one of tokio's blocking threads, and gives both back when
//! that one operation ends. An operation is bounded work (one read of a chunk, one write of a
//! buffer, a stat, a rename), never a wait for the network: a transfer takes a thread only
//! while its bytes move to or from the disk, so thousands of slow clients hold no thread, and
//! at most the regulator's number of threads are busy with disk work whatever the load,
//! leaving the rest of the blocking pool to everything else.

use std::io;
use std::sync::Arc;

use tokio::sync::Semaphore;

/// Blocking filesystem operations running at once at most, by default.
pub const DEFAULT_MAX_THREADS: usize = 100;

/// Runs blocking filesystem operations, a bounded number at a time.
#[derive(Debug, Clone)]
pub(crate) struct Regulator {
    permits: Arc<Semaphore>,
}

impl Regulator {
    /// A regulator letting `max` operations run at once (at least one).
    pub(crate) fn new(max: usize) -> Self {
        Regulator { permits: Arc::new(Semaphore::new(max.max(1))) }
    }

    /// Runs `op` on a blocking thread once a permit is free. The permit goes with `op`: when
    /// the caller stops waiting, `op` still finishes (it is bounded) and only then frees it.
    pub(crate) async fn run<T: Send + 'static>(&self, op: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        let permit = self.permits.clone().acquire_owned().await.map_err(io::Error::other)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            op()
        })
        .await
        .map_err(io::Error::other)
    }

    /// Permits free at the moment.
    #[cfg(test)]
    pub(crate) fn free(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// However many operations are queued, no more than the bound run at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_runs_more_than_its_bound() {
        let regulator = Regulator::new(3);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let ops: Vec<_> = (0..40)
            .map(|_| {
                let (running, most, regulator) = (running.clone(), most.clone(), regulator.clone());
                tokio::spawn(async move {
                    regulator
                        .run(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(2));
                            running.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        for op in ops {
            op.await.unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 3, "{} ran at once", most.load(Ordering::SeqCst));
        assert_eq!(regulator.free(), 3);
    }
}
