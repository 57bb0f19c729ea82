//! Running a process in a running container through the engine's exec API:
//! what `berth exec` and the SSH gateway are built on.
//!
//! An [`ExecSession`] hands out the process's output as a stream (stdout and
//! stderr kept apart unless a TTY was asked for, in which case the engine
//! merges them) and its stdin as an `AsyncWrite`. Shutting the writer down
//! half-closes the attach connection, which the engine turns into EOF on the
//! process's stdin.

use std::pin::Pin;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWrite;

use super::Engine;
use crate::error::{Error, Result};

/// `cmd` run through `/bin/sh -c` on a terminal of `rows`x`cols`.
///
/// Engines before API 1.42 cannot create an exec with a terminal size, only
/// resize it once it runs, so a short command could see a 0x0 terminal. The
/// size is therefore also set from inside, with `stty` where the image has one,
/// before the command replaces the shell.
pub fn sized_shell_command(cmd: &str, rows: u16, cols: u16) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("stty rows {rows} cols {cols} 2>/dev/null; exec /bin/sh -c \"$1\""),
        "sh".into(),
        cmd.into(),
    ]
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    /// Container name or ID.
    pub container: String,
    /// Command and arguments (exec form).
    pub cmd: Vec<String>,
    /// Allocate a pseudo-terminal (stdout and stderr are then one stream).
    pub tty: bool,
    /// Extra environment, `VAR=value`.
    pub env: Vec<String>,
    /// Initial terminal size (rows, columns), applied right after the start.
    pub size: Option<(u16, u16)>,
}

/// One chunk of process output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutput {
    /// Standard output (or the terminal, with a TTY).
    Stdout(Bytes),
    /// Standard error (never with a TTY).
    Stderr(Bytes),
}

type OutputStream = Pin<Box<dyn Stream<Item = Result<ExecOutput>> + Send>>;

/// A started exec: its id, output and stdin.
pub struct ExecSession {
    pub id: String,
    pub output: OutputStream,
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

/// Whether a container can take an exec, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerStatus {
    Running,
    /// The container exists in another state (`exited`, `created`, `paused`, ...).
    NotRunning(String),
    Missing,
}

impl Engine {
    /// Is `container` there and running?
    pub async fn container_status(&self, container: &str) -> Result<ContainerStatus> {
        match self.docker().inspect_container(container, None).await {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                let status = state
                    .status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unknown".into());
                if state.running == Some(true) && state.paused != Some(true) {
                    Ok(ContainerStatus::Running)
                } else if state.paused == Some(true) {
                    Ok(ContainerStatus::NotRunning("paused".into()))
                } else {
                    Ok(ContainerStatus::NotRunning(status))
                }
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(ContainerStatus::Missing),
            Err(e) => Err(Error::engine(format!("inspect container {container}"), e)),
        }
    }

    /// Create and start an exec, attached to stdin, stdout and stderr.
    pub async fn exec_start(&self, spec: &ExecSpec) -> Result<ExecSession> {
        let options = CreateExecOptions::<String> {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(spec.tty),
            env: if spec.env.is_empty() {
                None
            } else {
                Some(spec.env.clone())
            },
            cmd: Some(spec.cmd.clone()),
            ..Default::default()
        };
        let created = self
            .docker()
            .create_exec(&spec.container, options)
            .await
            .map_err(|e| Error::engine(format!("create exec in {}", spec.container), e))?;
        let id = created.id;
        let started = self
            .docker()
            .start_exec(
                &id,
                Some(StartExecOptions {
                    detach: false,
                    tty: spec.tty,
                    output_capacity: Some(64 * 1024),
                }),
            )
            .await
            .map_err(|e| Error::engine(format!("start exec in {}", spec.container), e))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(Error::Runtime(format!(
                "the engine started the exec in {} detached although berth asked to attach",
                spec.container
            )));
        };
        let container = spec.container.clone();
        let output = output.filter_map(move |item| {
            let out = match item {
                Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                    Some(Ok(ExecOutput::Stdout(message)))
                }
                Ok(LogOutput::StdErr { message }) => Some(Ok(ExecOutput::Stderr(message))),
                Ok(LogOutput::StdIn { .. }) => None,
                Err(e) => Some(Err(Error::engine(format!("exec output of {container}"), e))),
            };
            std::future::ready(out)
        });
        if let (true, Some((rows, cols))) = (spec.tty, spec.size) {
            // The engine only resizes a running exec; it is running now, unless
            // it already finished, which is no error.
            if let Err(e) = self.exec_resize(&id, rows, cols).await {
                tracing::debug!("initial terminal size of exec {id}: {e}");
            }
        }
        Ok(ExecSession {
            id,
            output: Box::pin(output),
            input,
        })
    }

    /// Resize the terminal of an exec started with a TTY.
    pub async fn exec_resize(&self, id: &str, rows: u16, cols: u16) -> Result<()> {
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        self.docker()
            .resize_exec(
                id,
                ResizeExecOptions {
                    height: rows,
                    width: cols,
                },
            )
            .await
            .map_err(|e| Error::engine("resize exec terminal", e))
    }

    /// The exit code of a finished exec. The output stream can end a moment
    /// before the engine records the exit, so this waits briefly for it.
    /// `None`: the engine does not know (for example the container was killed).
    pub async fn exec_exit_code(&self, id: &str) -> Result<Option<i64>> {
        let mut delay = Duration::from_millis(5);
        for _ in 0..40 {
            let info = self
                .docker()
                .inspect_exec(id)
                .await
                .map_err(|e| Error::engine("inspect exec", e))?;
            if info.running != Some(true) {
                return Ok(info.exit_code);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(250));
        }
        Ok(None)
    }
}
