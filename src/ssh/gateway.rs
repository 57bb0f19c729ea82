//! `berth ssh-gateway`: an SSH server whose every session is an exec in one
//! container.
//!
//! - The login name picks the container ([`super::access`]); only public keys
//!   granted to that service in the applied revision are accepted, looked up
//!   afresh on every attempt. Passwords and keyboard-interactive are not
//!   offered; every rejection costs the client [`REJECTION_DELAY`] and a
//!   connection gets [`MAX_AUTH_ATTEMPTS`] tries.
//! - `shell` and `exec` requests become engine execs. With a PTY the shell
//!   gets a real terminal (size and `TERM` from the client, resizes
//!   followed); without one stdout and stderr stay apart, stdin is streamed
//!   and EOF passed on, and the exit status is returned.
//! - Port forwarding (both directions), agent and X11 forwarding,
//!   Unix-socket forwarding and subsystems are refused.
//! - One audit line per session (target `berth::audit`, level info): peer,
//!   login, key fingerprint, container, node and task (on a swarm; `-` on a
//!   host), command or `shell`, TTY, exit status, duration; refused attempts
//!   are logged there too.
//! - On a swarm, a session runs in the running task of the login's
//!   instance, on whichever node runs it: exec, resizes and hang-up go to
//!   that node's engine ([`super::place`]). Which deployments there are
//!   comes from the state directory and, with [`access::Sources::swarm`],
//!   from the access lists published on the swarm, so every node's gateway
//!   serves every swarm deployment.
//! - Limits: connections that have not logged in are bounded per source
//!   address and overall, and closed when their login grace time is up
//!   ([`super::admission`]); [`MAX_CHANNELS`] sessions per connection, and
//!   [`STDIN_BUFFER`] bytes of client input waiting for a process that does
//!   not read it (beyond that the connection is paused).
//! - When a client of a terminal session goes away, the session is hung up
//!   (SIGHUP inside the container), as closing a terminal would.
//!
//! Known limit: russh replenishes a channel's window as data arrives, not as
//! it is consumed, so flow control towards a process that stops reading its
//! stdin rests on [`STDIN_BUFFER`] and on pausing the whole connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelMsg, ChannelOpenFailure, MethodKind, MethodSet};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::access::{self, Grant, Target};
use super::admission::{Admission, Event, Limits, Ticket};
use super::killable;
use super::place::{self, Located, Place};
use super::quickack::QuickAck;
use crate::engine::Engine;
use crate::engine::exec::{ExecOutput, ExecRequest};
use crate::engine::nodes::NodesFile;
use crate::error::{Error, Result};

/// Default listening address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:2222";
/// Authentication attempts allowed per connection.
pub const MAX_AUTH_ATTEMPTS: usize = 6;
/// Every refused authentication attempt takes at least this long.
pub const REJECTION_DELAY: Duration = Duration::from_millis(1000);
/// Sessions (pending or running) one connection may have at once.
pub const MAX_CHANNELS: usize = 10;
/// Client input buffered per session while the process is not reading it.
pub const STDIN_BUFFER: usize = 16 * 1024 * 1024;
/// Environment variables a client may pass (`SendEnv`), besides `TERM`.
fn env_allowed(name: &str) -> bool {
    name == "LANG" || name.starts_with("LC_")
}

/// What every connection shares.
struct Shared {
    /// The engine berth talks to (on a swarm, a manager's).
    engine: Engine,
    sources: access::Sources,
    /// How a swarm's nodes' engines are reached.
    nodes: NodesFile,
}

/// Run the gateway on `listener` until the process is stopped, serving the
/// deployments `sources` names; containers on other swarm nodes are
/// reached through `nodes`.
pub async fn serve(
    engine: Engine,
    sources: access::Sources,
    nodes: NodesFile,
    listener: TcpListener,
    host_key: PrivateKey,
    limits: Limits,
) -> Result<()> {
    let config = russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-berth".into()),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: REJECTION_DELAY,
        // OpenSSH starts with a `none` probe; answering that at once costs nothing.
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: MAX_AUTH_ATTEMPTS,
        keys: vec![host_key],
        inactivity_timeout: Some(Duration::from_secs(3600)),
        keepalive_interval: Some(Duration::from_secs(60)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    };
    let config = Arc::new(config);
    let shared = Arc::new(Shared {
        engine,
        sources,
        nodes,
    });
    let admission = Admission::new(limits);
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the
                // connections there are, and try again shortly.
                tracing::warn!("ssh-gateway: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let (stream, switch) = killable::new(QuickAck::new(socket));
        let switch = Arc::new(switch);
        // Refused: the socket closes as `stream` is dropped.
        let Some(ticket) = admission.admit(peer.ip(), switch.clone()) else {
            continue;
        };
        let (logged_in, login) = tokio::sync::oneshot::channel();
        let conn = Conn {
            shared: shared.clone(),
            peer: peer.to_string(),
            authed: None,
            channels: HashMap::new(),
            running: Arc::new(AtomicUsize::new(0)),
            logged_in: Some(logged_in),
        };
        let pending = Pending {
            admission: admission.clone(),
            peer,
            ticket,
            switch,
            login,
        };
        tokio::spawn(connection(config.clone(), stream, conn, pending));
    }
}

/// A connection that has not logged in yet.
struct Pending {
    admission: Arc<Admission>,
    peer: SocketAddr,
    /// Its place among the unauthenticated connections, held until login.
    ticket: Ticket,
    switch: Arc<killable::Switch<QuickAck>>,
    /// Fires when a key is accepted.
    login: tokio::sync::oneshot::Receiver<()>,
}

/// Serve one connection: it counts as unauthenticated until a key is
/// accepted, and is closed (socket and all) when the login grace time is up
/// first.
async fn connection(
    config: Arc<russh::server::Config>,
    stream: killable::Killable<QuickAck>,
    conn: Conn,
    pending: Pending,
) {
    let Pending {
        admission,
        peer,
        mut ticket,
        switch,
        mut login,
    } = pending;
    let deadline = tokio::time::Instant::now() + admission.limits().login_grace;
    // The grace time includes any wait for a slot.
    match tokio::time::timeout_at(deadline, ticket.admitted()).await {
        Ok(true) => {}
        // Closed to make room for a newer one.
        Ok(false) => return,
        Err(_) => {
            switch.kill();
            admission.audit_peer(Event::NoHandshake, peer.ip());
            return;
        }
    }
    let session =
        match tokio::time::timeout_at(deadline, russh::server::run_stream(config, stream, conn))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, "ssh connection setup failed: {e}");
                return;
            }
            Err(_) => {
                switch.kill();
                admission.audit_peer(Event::NoHandshake, peer.ip());
                return;
            }
        };
    let mut session = std::pin::pin!(session);
    tokio::select! {
        r = &mut session => {
            if let Err(e) = r {
                tracing::debug!(%peer, "ssh connection ended: {e}");
            }
            return;
        }
        Ok(()) = &mut login => {}
        _ = tokio::time::sleep_until(deadline) => {
            // The session task ends at its next read or write; the socket
            // is closed now.
            switch.kill();
            admission.audit_peer(Event::NotAuthenticated, peer.ip());
            return;
        }
    }
    drop(ticket);
    if let Err(e) = session.await {
        tracing::debug!(%peer, "ssh connection ended: {e}");
    }
}

/// Who logged in on a connection.
#[derive(Clone)]
struct Authed {
    login: String,
    key: PublicKey,
    fingerprint: String,
}

/// A session channel before its shell or command starts.
struct PendingChannel {
    channel: Option<Channel<Msg>>,
    pty: Option<PtyRequest>,
    env: Vec<String>,
}

#[derive(Clone)]
struct PtyRequest {
    term: String,
    rows: u16,
    cols: u16,
}

/// One client connection.
struct Conn {
    shared: Arc<Shared>,
    peer: String,
    authed: Option<Authed>,
    channels: HashMap<ChannelId, PendingChannel>,
    /// Sessions of this connection whose shell or command runs.
    running: Arc<AtomicUsize>,
    /// Told once a key was accepted (the connection then no longer counts
    /// as unauthenticated).
    logged_in: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Counts a running session; the count drops when the session ends.
struct RunningGuard(Arc<AtomicUsize>);

impl RunningGuard {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter.clone())
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn key_fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A login name made safe to print in a log line.
fn printable(s: &str) -> String {
    s.chars()
        .take(access::MAX_LOGIN_LEN)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl Conn {
    async fn grant(&self, login: &str, key: &PublicKey) -> Option<Grant> {
        access::grant_for(&self.shared.sources.resolve(login).await, key)
    }

    fn start(&mut self, channel: ChannelId, command: Option<String>, session: &mut Session) {
        let Some(authed) = self.authed.clone() else {
            let _ = session.channel_failure(channel);
            return;
        };
        let Some(pending) = self.channels.get_mut(&channel) else {
            let _ = session.channel_failure(channel);
            return;
        };
        let Some(ch) = pending.channel.take() else {
            // Already running a shell or command.
            let _ = session.channel_failure(channel);
            return;
        };
        let _ = session.channel_success(channel);
        let job = Job {
            shared: self.shared.clone(),
            peer: self.peer.clone(),
            authed,
            pty: pending.pty.clone(),
            env: pending.env.clone(),
            command,
        };
        let guard = RunningGuard::new(&self.running);
        tokio::spawn(async move {
            job.run(ch).await;
            drop(guard);
        });
    }

    /// Refuse a channel the gateway never opens (forwarding, X11), with an
    /// audit line so that an operator sees what a client tried.
    async fn refuse_channel(&self, what: &str, reply: russh::server::ChannelOpenHandle) {
        tracing::info!(target: "berth::audit", peer = %self.peer, "refused: {what}");
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    async fn auth_password(&mut self, user: &str, _password: &str) -> Result<Auth, Self::Error> {
        tracing::info!(target: "berth::audit", peer = %self.peer, login = %printable(user), "refused: password authentication is not offered");
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        _response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        tracing::info!(target: "berth::audit", peer = %self.peer, login = %printable(user), "refused: keyboard-interactive authentication is not offered");
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.grant(user, offer.public_key).await.is_some() {
            Ok(Auth::Accept)
        } else {
            tracing::info!(target: "berth::audit", peer = %self.peer, login = %printable(user),
                key = %key_fingerprint(offer.public_key), "refused: key not granted to this login");
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.grant(user, key.public_key).await.is_some() {
            if let Some(tx) = self.logged_in.take() {
                let _ = tx.send(());
            }
            self.authed = Some(Authed {
                login: user.to_string(),
                key: key.public_key.clone(),
                fingerprint: key_fingerprint(key.public_key),
            });
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        _certificate: &russh::keys::Certificate,
    ) -> Result<Auth, Self::Error> {
        tracing::info!(target: "berth::audit", peer = %self.peer, login = %printable(user), "refused: certificates are not accepted");
        Ok(Auth::reject())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.retain(|_, p| p.channel.is_some());
        let sessions = self.channels.len() + self.running.load(Ordering::SeqCst);
        if self.authed.is_none() || sessions >= MAX_CHANNELS {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        self.channels.insert(
            channel.id(),
            PendingChannel {
                channel: Some(channel),
                pty: None,
                env: Vec::new(),
            },
        );
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let what = format!("port forwarding to {}:{port}", printable(host));
        self.refuse_channel(&what, reply).await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("an X11 channel", reply).await;
        Ok(())
    }

    async fn channel_open_forwarded_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let what = format!("a forwarded channel from {}:{port}", printable(host));
        self.refuse_channel(&what, reply).await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        socket_path: &str,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let what = format!("socket forwarding to {}", printable(socket_path));
        self.refuse_channel(&what, reply).await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::info!(target: "berth::audit", peer = %self.peer, "refused: remote port forwarding from {}:{port}", printable(address));
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        _socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::info!(target: "berth::audit", peer = %self.peer, "refused: subsystem {}", printable(name));
        session.channel_failure(channel)
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(p) = self.channels.get_mut(&channel) else {
            return session.channel_failure(channel);
        };
        let term = if !term.is_empty()
            && term.len() <= 64
            && term
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
        {
            term.to_string()
        } else {
            "xterm".to_string()
        };
        p.pty = Some(PtyRequest {
            term,
            rows: clamp_dim(row_height),
            cols: clamp_dim(col_width),
        });
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(p)
                if env_allowed(name)
                    && value.len() <= 256
                    && !value.chars().any(char::is_control)
                    && p.env.len() < 32 =>
            {
                p.env.push(format!("{name}={value}"));
                session.channel_success(channel)
            }
            _ => session.channel_failure(channel),
        }
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, None, session);
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The command goes to `/bin/sh -c` as it is; it must be text.
        match std::str::from_utf8(data) {
            Ok(cmd) if !cmd.contains('\0') => self.start(channel, Some(cmd.to_string()), session),
            _ => {
                session.channel_failure(channel)?;
            }
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }
}

/// Terminal dimensions as the engine takes them.
fn clamp_dim(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// One shell or command, from start to exit status.
struct Job {
    shared: Arc<Shared>,
    peer: String,
    authed: Authed,
    pty: Option<PtyRequest>,
    env: Vec<String>,
    command: Option<String>,
}

/// How a session ended, for the exit status and the audit line.
struct Outcome {
    status: u32,
    container: String,
    /// On a swarm: the node and the task; `-` otherwise.
    node: String,
    task: String,
}

impl Outcome {
    /// Ended before reaching a container.
    fn nowhere(status: u32) -> Self {
        Self {
            status,
            container: "-".into(),
            node: "-".into(),
            task: "-".into(),
        }
    }
}

impl Job {
    /// A message from berth itself, on the client's stderr.
    async fn say(&self, tx: &russh::ChannelWriteHalf<Msg>, msg: &str) {
        // A terminal needs the carriage return that its line discipline would add.
        let eol = if self.pty.is_some() { "\r\n" } else { "\n" };
        let _ = tx
            .extended_data_bytes(1, format!("{msg}{eol}").into_bytes())
            .await;
    }

    async fn run(self, channel: Channel<Msg>) {
        let started = Instant::now();
        let (mut rx, tx) = channel.split();
        // Keys are looked up again: an apply since login may have revoked this one.
        let grant = access::grant_for(
            &self.shared.sources.resolve(&self.authed.login).await,
            &self.authed.key,
        );
        let outcome = match grant {
            Some(Grant::Enter(target)) => self.exec(&target, &mut rx, &tx).await,
            Some(Grant::Ambiguous(names)) => {
                let msg = format!(
                    "berth: the login {:?} names more than one container; log in as one of: {}",
                    self.authed.login,
                    names.join(", ")
                );
                self.say(&tx, &msg).await;
                Outcome::nowhere(2)
            }
            None => {
                self.say(&tx, "berth: this key is no longer granted to this login")
                    .await;
                Outcome::nowhere(1)
            }
        };
        let _ = tx.exit_status(outcome.status).await;
        let _ = tx.eof().await;
        let _ = tx.close().await;
        tracing::info!(
            target: "berth::audit",
            peer = %self.peer,
            login = %printable(&self.authed.login),
            key = %self.authed.fingerprint,
            container = %outcome.container,
            node = %outcome.node,
            task = %outcome.task,
            command = %self.command.as_deref().map(printable).unwrap_or_else(|| "shell".into()),
            tty = self.pty.is_some(),
            exit_status = outcome.status,
            duration_ms = started.elapsed().as_millis() as u64,
            "ssh session"
        );
    }

    async fn exec(
        &self,
        target: &Target,
        rx: &mut russh::ChannelReadHalf,
        tx: &russh::ChannelWriteHalf<Msg>,
    ) -> Outcome {
        let place = match place::locate(&self.shared.engine, &self.shared.nodes, target).await {
            Ok(Located::Running(p)) => p,
            Ok(Located::NotRunning(why)) => {
                self.say(tx, &format!("berth: {why}")).await;
                return Outcome {
                    container: target.container.clone(),
                    ..Outcome::nowhere(1)
                };
            }
            Err(e) => {
                // The operator's business (a node missing from the nodes
                // file, an engine down); the client learns only that.
                tracing::warn!("ssh session for {}: {e}", target.qualified);
                self.say(tx, "berth: the container engine is not available")
                    .await;
                return Outcome {
                    container: target.container.clone(),
                    ..Outcome::nowhere(1)
                };
            }
        };
        self.run_in(target, &place, rx, tx).await
    }

    /// The session's process in `place`, until it exits or the client goes.
    async fn run_in(
        &self,
        target: &Target,
        place: &Place,
        rx: &mut russh::ChannelReadHalf,
        tx: &russh::ChannelWriteHalf<Msg>,
    ) -> Outcome {
        let fail = |status: u32| Outcome {
            status,
            container: place.container.clone(),
            node: place.node().to_string(),
            task: place.task_name().to_string(),
        };
        let engine = &place.engine;
        let cmd = match &self.command {
            Some(c) => vec!["/bin/sh".to_string(), "-c".to_string(), c.clone()],
            None => vec![target.shell.clone()],
        };
        let mut env = self.env.clone();
        if let Some(p) = &self.pty {
            env.push(format!("TERM={}", p.term));
        }
        let spec = ExecRequest {
            container: place.container.clone(),
            cmd,
            tty: self.pty.is_some(),
            env,
            size: self.pty.as_ref().map(|p| (p.rows, p.cols)),
            track_pid: true,
        };
        let exec = match engine.exec_start(&spec).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("ssh session for {}: {e}", place.container);
                let msg = format!("berth: cannot start a process in {}: {e}", place.container);
                self.say(tx, &msg).await;
                return fail(1);
            }
        };
        let id = exec.id.clone();
        let pid = exec.pid;
        let mut output = exec.output;
        let mut input = exec.input;
        let tty = self.pty.is_some();

        // Output to the client. `data_bytes` waits for the client's window,
        // so a slow client slows the process down instead of filling memory.
        let pump_out = async {
            while let Some(item) = output.next().await {
                let sent = match item {
                    Ok(ExecOutput::Stdout(b)) => tx.data_bytes(b).await,
                    Ok(ExecOutput::Stderr(b)) => tx.extended_data_bytes(1, b).await,
                    Err(e) => {
                        tracing::debug!("exec output ended: {e}");
                        break;
                    }
                };
                if sent.is_err() {
                    return false;
                }
            }
            true
        };
        // Input from the client, until it closes the channel. The channel is
        // read without waiting for the process: russh stalls the whole
        // connection (output included) while a channel's messages are not
        // taken, so a process that writes a lot without reading its stdin
        // would otherwise deadlock the session. Up to STDIN_BUFFER bytes wait
        // here for the process; beyond that reading pauses (backpressure).
        let budget = Arc::new(tokio::sync::Semaphore::new(STDIN_BUFFER));
        let (queue_tx, mut queue_rx) =
            tokio::sync::mpsc::unbounded_channel::<(bytes::Bytes, u32)>();
        let pump_in = async {
            let mut queue_tx = Some(queue_tx);
            while let Some(msg) = rx.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        let Some(q) = &queue_tx else { continue };
                        let cost = u32::try_from(data.len().min(STDIN_BUFFER)).unwrap_or(u32::MAX);
                        match budget.clone().acquire_many_owned(cost).await {
                            Ok(permit) => permit.forget(),
                            Err(_) => continue,
                        }
                        if q.send((data, cost)).is_err() {
                            // The process closed its stdin; the rest is discarded.
                            queue_tx = None;
                        }
                    }
                    // With a terminal, EOF from the client is not passed on: the
                    // engine ends a TTY exec's output when its stdin closes, and
                    // sshd, too, leaves the terminal open (the shell exits on its own).
                    ChannelMsg::Eof if !tty => queue_tx = None,
                    ChannelMsg::WindowChange {
                        col_width,
                        row_height,
                        ..
                    } if tty => {
                        if let Err(e) = engine
                            .exec_resize(&id, clamp_dim(row_height), clamp_dim(col_width))
                            .await
                        {
                            tracing::debug!("resize: {e}");
                        }
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
        };
        let feed_stdin = async {
            while let Some((data, cost)) = queue_rx.recv().await {
                let ok = input.write_all(&data).await.is_ok();
                budget.add_permits(cost as usize);
                if !ok {
                    // Discard what is still queued; its budget goes back too.
                    queue_rx.close();
                    while let Some((_, cost)) = queue_rx.recv().await {
                        budget.add_permits(cost as usize);
                    }
                    break;
                }
            }
            // EOF from the client (or the process closed its stdin).
            let _ = input.shutdown().await;
            std::future::pending::<()>().await
        };
        let pump_in = async {
            tokio::select! {
                _ = pump_in => {}
                _ = feed_stdin => {}
            }
        };
        let finished = tokio::select! {
            done = pump_out => done,
            _ = pump_in => false,
        };
        if !finished {
            // The client went away. Without a terminal, dropping the exec's
            // connection closes the process's stdin; a terminal session is
            // hung up, as sshd does when it closes the terminal.
            tracing::debug!("client left the session in {}", place.container);
            drop(output);
            drop(input);
            if let (true, Some(pid)) = (tty, pid)
                && let Err(e) = engine.exec_hangup(&place.container, pid).await
            {
                tracing::warn!("cannot hang up the session in {}: {e}", place.container);
            }
            return fail(255);
        }
        let status = match engine.exec_exit_code(&id).await {
            Ok(Some(code)) => u32::try_from(code).unwrap_or(255),
            Ok(None) => 255,
            Err(e) => {
                tracing::warn!("exit status of the session in {}: {e}", place.container);
                255
            }
        };
        fail(status)
    }
}

/// Bind `listen` and return the listener and its actual address (useful with port 0).
pub async fn bind(listen: &str) -> Result<(TcpListener, SocketAddr)> {
    check_listen(listen)?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Runtime(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Runtime(format!("cannot listen on {listen}: {e}")))?;
    Ok((listener, addr))
}

/// Is `listen` of the form `ADDR:PORT`? A usage error otherwise.
pub fn check_listen(listen: &str) -> Result<()> {
    let port_ok = listen
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(Error::Usage(format!(
            "--listen {listen:?}: expected ADDR:PORT, for example 0.0.0.0:2222 or [::]:2222"
        )));
    }
    Ok(())
}

/// Name of the gateway's systemd unit.
pub const UNIT_NAME: &str = "berth-ssh-gateway.service";

/// Does any applied deployment grant SSH access (so the gateway is wanted)?
pub fn wanted(deployments: &[crate::deployment::Deployment]) -> bool {
    deployments
        .iter()
        .any(|d| d.services.keys().any(|s| !d.keys_for(s).is_empty()))
}

/// The systemd unit that runs the gateway (`berth-ssh-gateway.service`).
/// Audit lines are logged at info level to the journal.
/// `berth_path` and `state_dir` must be absolute.
pub fn render_unit(
    berth_path: &std::path::Path,
    state_dir: &std::path::Path,
    listen: &str,
) -> String {
    format!(
        "[Unit]\nDescription=berth SSH gateway (ssh SERVICE@host opens a shell in that container)\n\
         After=docker.service network-online.target\nWants=docker.service network-online.target\n\n\
         [Service]\nType=simple\nEnvironment=RUST_LOG=warn,berth::audit=info\n\
         ExecStart={bin} --state-dir {state} ssh-gateway --listen {listen}\n\
         Restart=always\nRestartSec=1\n\n[Install]\nWantedBy=multi-user.target\n",
        // Quoted and escaped for systemd (spaces, `%`, `$`, quotes).
        bin = crate::target::systemd::unit::exec_word(berth_path, true),
        state = crate::target::systemd::unit::exec_word(state_dir, false),
        listen = crate::target::systemd::unit::exec_word(std::path::Path::new(listen), false),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert!(check_listen("0.0.0.0:2222").is_ok());
        assert!(check_listen("[::]:22").is_ok());
        assert!(check_listen("localhost:2222").is_ok());
        for bad in ["2222", ":2222", "host:", "host:70000", ""] {
            assert!(matches!(check_listen(bad), Err(Error::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn wanted_when_any_key_is_granted() {
        let k = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILV+JdUrlKrvmd1OAw9sG1mSMh+pqnjL9d1NU8rq4icz";
        let d = |ssh: &[&str], dkeys: bool| -> crate::deployment::Deployment {
            let key = serde_json::json!({"name": "a", "openssh": k, "fingerprint": ""});
            serde_json::from_value(serde_json::json!({
                "name": "d",
                "keys": {"a": key},
                "deployment_keys": if dkeys { vec![key.clone()] } else { vec![] },
                "services": {"s": {"name": "s", "image": "i", "count": 1, "ssh": ssh}},
            }))
            .expect("deployment")
        };
        assert!(!wanted(&[]));
        assert!(!wanted(&[d(&[], false)]));
        assert!(wanted(&[d(&["a"], false)]));
        assert!(wanted(&[d(&[], false), d(&[], true)]));
    }

    #[test]
    fn unit_is_valid_for_systemd() {
        let unit = render_unit(
            std::path::Path::new("/usr/local/bin/berth"),
            std::path::Path::new("/var/lib/berth"),
            DEFAULT_LISTEN,
        );
        assert!(unit.contains(
            "ExecStart=/usr/local/bin/berth --state-dir /var/lib/berth ssh-gateway --listen 0.0.0.0:2222\n"
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(UNIT_NAME);
        std::fs::write(&path, &unit).expect("write unit");
        // The binary must exist for systemd-analyze; point at one that does.
        let unit = unit.replace("/usr/local/bin/berth", "/bin/true");
        std::fs::write(&path, unit).expect("write unit");
        let out = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .expect("systemd-analyze (from the systemd package) is needed for this test");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && text.trim().is_empty(), "{text}");
    }
}
