//! One apply at a time per deployment: an exclusive `flock` on
//! `<state>/deployments/<name>/lock`. The kernel releases it when the
//! process dies, so an apply killed with SIGKILL never leaves a stale lock.

use std::fs::File;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};
use crate::state::StateDir;

/// Held while an apply runs; dropping it releases the lock.
#[derive(Debug)]
pub struct DeploymentLock {
    _lock: Flock<File>,
}

/// Take the lock of `deployment`, waiting for another holder. `on_wait` is
/// called once if the lock is busy (to tell the operator). With `timeout`,
/// gives up after that long.
pub async fn lock_deployment(
    state: &StateDir,
    deployment: &str,
    timeout: Option<Duration>,
    on_wait: impl FnOnce(),
) -> Result<DeploymentLock> {
    crate::state::create_private_dir(&state.deployment_dir(deployment))?;
    let path = state.lock_file(deployment);
    let start = Instant::now();
    let mut on_wait = Some(on_wait);
    loop {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(DeploymentLock { _lock: lock }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                if let Some(f) = on_wait.take() {
                    f();
                }
                if let Some(t) = timeout
                    && start.elapsed() >= t
                {
                    return Err(Error::Locked {
                        deployment: deployment.to_string(),
                        path,
                        waited: t,
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err((_, errno)) => {
                return Err(Error::io(&path, std::io::Error::from(errno)));
            }
        }
    }
}
