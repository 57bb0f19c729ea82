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
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::Engine;
use crate::error::{Error, Result};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// Container name or ID.
    pub container: String,
    /// Command and arguments (exec form).
    pub cmd: Vec<String>,
    /// Allocate a pseudo-terminal (stdout and stderr are then one stream).
    pub tty: bool,
    /// Extra environment, `VAR=value`.
    pub env: Vec<String>,
    /// Initial terminal size (rows, columns).
    pub size: Option<(u16, u16)>,
    /// With a TTY: start `cmd` through a small `/bin/sh` wrapper that reports
    /// the process id and sets the terminal size before `cmd` replaces it,
    /// so that [`Engine::exec_hangup`] can end the session when its client
    /// goes away (the engine never hangs up a TTY exec by itself), and so a
    /// short command sees the right size (engines before API 1.42 can only
    /// resize an exec once it runs). Needs `/bin/sh` in the image.
    pub track_pid: bool,
}

/// The wrapper [`ExecRequest::track_pid`] puts around a TTY command.
fn tracked(cmd: &[String], size: Option<(u16, u16)>) -> Vec<String> {
    let stty = match size {
        Some((rows, cols)) if rows > 0 && cols > 0 => {
            format!("stty rows {rows} cols {cols} 2>/dev/null; ")
        }
        _ => String::new(),
    };
    let mut v = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        format!("echo \"$$\"; {stty}exec \"$@\""),
        "sh".to_string(),
    ];
    v.extend(cmd.iter().cloned());
    v
}

/// The pid line the wrapper prints first (`1234\r\n` on a terminal).
/// Returns the pid and the bytes after the line, or `None` if `buf` does not
/// start with such a line.
fn split_pid_line(buf: &[u8]) -> Option<(u32, &[u8])> {
    let nl = buf.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&buf[..nl]).ok()?.trim_end_matches('\r');
    if line.is_empty() || !line.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((line.parse().ok()?, &buf[nl + 1..]))
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
    /// The process id inside the container, when [`ExecRequest::track_pid`]
    /// was asked for and the wrapper reported it.
    pub pid: Option<u32>,
    pub output: OutputStream,
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

/// Whether a container can take an exec, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecReadiness {
    Running,
    /// The container exists in another state (`exited`, `created`, `paused`, ...).
    NotRunning(String),
    Missing,
}

impl Engine {
    /// Can `container` take an exec: is it there and running?
    pub async fn exec_readiness(&self, container: &str) -> Result<ExecReadiness> {
        match self.docker().inspect_container(container, None).await {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                let status = state
                    .status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unknown".into());
                if state.running == Some(true) && state.paused != Some(true) {
                    Ok(ExecReadiness::Running)
                } else if state.paused == Some(true) {
                    Ok(ExecReadiness::NotRunning("paused".into()))
                } else {
                    Ok(ExecReadiness::NotRunning(status))
                }
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(ExecReadiness::Missing),
            Err(e) => Err(Error::engine(format!("inspect container {container}"), e)),
        }
    }

    /// Create and start an exec, attached to stdin, stdout and stderr.
    pub async fn exec_start(&self, spec: &ExecRequest) -> Result<ExecSession> {
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
            cmd: Some(if spec.tty && spec.track_pid {
                tracked(&spec.cmd, spec.size)
            } else {
                spec.cmd.clone()
            }),
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
        let mut output: OutputStream = Box::pin(output);
        let mut pid = None;
        if spec.tty && spec.track_pid {
            // Read up to the wrapper's pid line. The caller has not got stdin
            // yet, so nothing typed can be echoed ahead of it.
            let mut head: Vec<u8> = Vec::new();
            let mut ended = false;
            while !head.contains(&b'\n') && head.len() < 64 {
                match output.next().await {
                    Some(Ok(ExecOutput::Stdout(b))) | Some(Ok(ExecOutput::Stderr(b))) => {
                        head.extend_from_slice(&b)
                    }
                    Some(Err(e)) => return Err(e),
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            let rest = match split_pid_line(&head) {
                Some((p, rest)) => {
                    pid = Some(p);
                    rest.to_vec()
                }
                // Not the wrapper speaking (no /bin/sh?): pass it all on.
                None => head,
            };
            let first = futures_util::stream::iter(
                (!rest.is_empty()).then(|| Ok(ExecOutput::Stdout(Bytes::from(rest)))),
            );
            output = if ended {
                Box::pin(first)
            } else {
                Box::pin(first.chain(output))
            };
        }
        if let (true, Some((rows, cols))) = (spec.tty, spec.size) {
            // The engine only resizes a running exec; it is running now, unless
            // it already finished, which is no error.
            if let Err(e) = self.exec_resize(&id, rows, cols).await {
                tracing::debug!("initial terminal size of exec {id}: {e}");
            }
        }
        Ok(ExecSession {
            id,
            pid,
            output,
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

    /// Hang up a TTY session whose client is gone, as closing a terminal
    /// does: SIGHUP to the process group `pid` leads (the session's shell and
    /// its foreground job) and to `pid` itself. `pid` is the in-container id
    /// from [`ExecSession::pid`]; the signal is sent from inside the
    /// container, so nothing on the host is touched.
    pub async fn exec_hangup(&self, container: &str, pid: u32) -> Result<()> {
        let spec = ExecRequest {
            container: container.to_string(),
            cmd: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("kill -HUP -{pid} 2>/dev/null; kill -HUP {pid} 2>/dev/null; true"),
            ],
            ..Default::default()
        };
        let mut session = self.exec_start(&spec).await?;
        let _ = session.input.shutdown().await;
        while session.output.next().await.is_some() {}
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_line() {
        assert_eq!(split_pid_line(b"123\r\nrest"), Some((123, &b"rest"[..])));
        assert_eq!(split_pid_line(b"7\n"), Some((7, &b""[..])));
        assert_eq!(split_pid_line(b"12"), None);
        assert_eq!(split_pid_line(b"sh: not found\n"), None);
        assert_eq!(split_pid_line(b"\r\n"), None);
    }

    #[test]
    fn tracked_wrapper_keeps_the_command_as_arguments() {
        let cmd = vec![
            "/bin/sh".to_string(),
            "-c".into(),
            "echo 'a b'; exit 3".into(),
        ];
        let w = tracked(&cmd, Some((24, 80)));
        assert_eq!(w[..2], ["/bin/sh", "-c"]);
        assert!(w[2].contains("stty rows 24 cols 80") && w[2].ends_with("exec \"$@\""));
        assert_eq!(w[3], "sh");
        assert_eq!(w[4..], cmd[..]);
        assert!(!tracked(&cmd, None)[2].contains("stty"));
    }
}
