//! Attach this process's stdin, stdout and stderr (or its terminal) to an
//! exec in a container: what `berth exec` and `berth exec --ssh` (OpenSSH's
//! forced command) run.

use std::io::{IsTerminal, Read};
use std::os::fd::AsFd;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::engine::Engine;
use crate::engine::exec::{ExecOutput, ExecReadiness, ExecRequest};
use crate::error::{Error, Result};

/// Is this process attached to a terminal on both stdin and stdout?
pub fn on_terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

nix::ioctl_read_bad!(tiocgwinsz, nix::libc::TIOCGWINSZ, nix::libc::winsize);

/// The size of the terminal on stdout, as (rows, columns).
pub fn terminal_size() -> Option<(u16, u16)> {
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass; fd 1 is
    // our stdout and stays open for the call.
    let r = unsafe { tiocgwinsz(1, &mut ws) };
    match r {
        Ok(_) if ws.ws_row > 0 && ws.ws_col > 0 => Some((ws.ws_row, ws.ws_col)),
        _ => None,
    }
}

/// Puts the terminal on stdin into raw mode and restores it when dropped.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<Self> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        use nix::sys::termios::{SetArg, tcsetattr};
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Run `spec` attached to this process's stdio; returns the exit code
/// (255 when the engine does not know it).
pub async fn run_attached(engine: &Engine, spec: &ExecRequest) -> Result<u8> {
    match engine.exec_readiness(&spec.container).await? {
        ExecReadiness::Running => {}
        ExecReadiness::NotRunning(state) => {
            return Err(Error::Runtime(format!(
                "container {} is not running (it is {state})",
                spec.container
            )));
        }
        ExecReadiness::Missing => {
            return Err(Error::Runtime(format!(
                "container {} does not exist",
                spec.container
            )));
        }
    }
    let exec = engine.exec_start(spec).await?;
    let id = exec.id.clone();
    let pid = exec.pid;
    let mut output = exec.output;
    let mut input = exec.input;
    let raw = if spec.tty { RawMode::enter() } else { None };

    // stdin is read on a plain thread (a blocked read must not keep the
    // process alive at exit) and handed over through a small bounded channel:
    // reading pauses while the process is not consuming its input.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let pump_in = async {
        while let Some(chunk) = rx.recv().await {
            if input.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // With a terminal, the engine would end the output along with stdin.
        if !spec.tty {
            let _ = input.shutdown().await;
        }
        // Keep the attach connection open until the output ends.
        std::future::pending::<()>().await;
    };
    let resize = async {
        if !spec.tty {
            return std::future::pending::<()>().await;
        }
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return std::future::pending::<()>().await;
        };
        while winch.recv().await.is_some() {
            if let Some((rows, cols)) = terminal_size() {
                let _ = engine.exec_resize(&id, rows, cols).await;
            }
        }
        std::future::pending::<()>().await
    };
    let pump_out = async {
        let mut stdout = tokio::io::stdout();
        let mut stderr = tokio::io::stderr();
        while let Some(item) = output.next().await {
            let r = match item {
                Ok(ExecOutput::Stdout(b)) => match stdout.write_all(&b).await {
                    Ok(()) => stdout.flush().await,
                    Err(e) => Err(e),
                },
                Ok(ExecOutput::Stderr(b)) => match stderr.write_all(&b).await {
                    Ok(()) => stderr.flush().await,
                    Err(e) => Err(e),
                },
                Err(e) => {
                    tracing::debug!("exec output ended: {e}");
                    break;
                }
            };
            if r.is_err() {
                break;
            }
        }
    };
    // sshd hangs up (SIGHUP) when its client goes away; pass that on to a
    // terminal session instead of leaving its shell running in the container.
    let hangup = async {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut hup), Ok(mut term)) => {
                tokio::select! {
                    _ = hup.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    };
    let hung_up = tokio::select! {
        _ = pump_out => false,
        _ = pump_in => false,
        _ = resize => false,
        _ = hangup => true,
    };
    drop(raw);
    if hung_up {
        drop(output);
        drop(input);
        if let (true, Some(pid)) = (spec.tty, pid) {
            engine.exec_hangup(&spec.container, pid).await?;
        }
        return Ok(129);
    }
    let code = engine.exec_exit_code(&id).await?;
    Ok(code.and_then(|c| u8::try_from(c).ok()).unwrap_or(255))
}
