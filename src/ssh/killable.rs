//! A connection the gateway can close from outside its task.
//!
//! russh runs each session in a task of its own and hands back no way to
//! abort it; a session waiting for a client's key exchange does not even
//! act on a disconnect request. So the stream is shared with a [`Switch`]:
//! killing it drops the socket at once (the client sees the connection
//! closed, whatever the session task is doing) and wakes that task, whose
//! next read or write fails, so that it ends too. The times of the last
//! read and write tell the admission policy whether the client is keeping
//! the gateway waiting.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

struct State<S> {
    stream: Option<S>,
    read: Option<Waker>,
    write: Option<Waker>,
}

struct Shared<S> {
    state: Mutex<State<S>>,
    born: Instant,
    /// Microseconds after `born` of the last read that got data and the
    /// last write, plus one (0: never).
    last_read: AtomicU64,
    last_write: AtomicU64,
    received: AtomicU64,
}

impl<S> Shared<S> {
    fn stamp(&self, at: &AtomicU64) {
        let us = u64::try_from(self.born.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
        at.store(us + 1, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, State<S>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The stream half, given to the SSH session.
pub struct Killable<S>(Arc<Shared<S>>);

/// The other half: kill the connection, see how much it received.
pub struct Switch<S>(Arc<Shared<S>>);

/// Wrap `stream`.
pub fn new<S>(stream: S) -> (Killable<S>, Switch<S>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            stream: Some(stream),
            read: None,
            write: None,
        }),
        born: Instant::now(),
        last_read: AtomicU64::new(0),
        last_write: AtomicU64::new(0),
        received: AtomicU64::new(0),
    });
    (Killable(shared.clone()), Switch(shared))
}

impl<S> Switch<S> {
    /// Close the connection now.
    pub fn kill(&self) {
        let (stream, read, write) = {
            let mut st = self.0.lock();
            (st.stream.take(), st.read.take(), st.write.take())
        };
        drop(stream);
        for w in [read, write].into_iter().flatten() {
            w.wake();
        }
    }

    pub fn is_killed(&self) -> bool {
        self.0.lock().stream.is_none()
    }
}

impl<S: Send> super::admission::Conn for Switch<S> {
    fn waiting_on_client_since(&self) -> Option<Instant> {
        let read = self.0.last_read.load(Ordering::Relaxed);
        let write = self.0.last_write.load(Ordering::Relaxed);
        (write > read).then(|| self.0.born + std::time::Duration::from_micros(write - 1))
    }

    fn received(&self) -> u64 {
        self.0.received.load(Ordering::Relaxed)
    }

    fn kill(&self) {
        Switch::kill(self);
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "closed by the gateway")
}

/// Remember `cx`'s waker when a poll is pending, for [`Switch::kill`].
fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Killable<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let shared = &self.0;
        let mut st = shared.lock();
        let State { stream, read, .. } = &mut *st;
        let Some(stream) = stream.as_mut() else {
            return Poll::Ready(Err(closed()));
        };
        let before = buf.filled().len();
        let polled = Pin::new(stream).poll_read(cx, buf);
        match &polled {
            Poll::Pending => park(read, cx),
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                let n = (buf.filled().len() - before) as u64;
                shared.received.fetch_add(n, Ordering::Relaxed);
                shared.stamp(&shared.last_read);
            }
            Poll::Ready(_) => {}
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Killable<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut st = self.0.lock();
        let State { stream, write, .. } = &mut *st;
        let Some(stream) = stream.as_mut() else {
            return Poll::Ready(Err(closed()));
        };
        let polled = Pin::new(stream).poll_write(cx, buf);
        match polled {
            Poll::Pending => park(write, cx),
            Poll::Ready(Ok(n)) if n > 0 => self.0.stamp(&self.0.last_write),
            Poll::Ready(_) => {}
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut st = self.0.lock();
        let State { stream, write, .. } = &mut *st;
        let Some(stream) = stream.as_mut() else {
            return Poll::Ready(Err(closed()));
        };
        let polled = Pin::new(stream).poll_write_vectored(cx, bufs);
        match polled {
            Poll::Pending => park(write, cx),
            Poll::Ready(Ok(n)) if n > 0 => self.0.stamp(&self.0.last_write),
            Poll::Ready(_) => {}
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.0
            .lock()
            .stream
            .as_ref()
            .is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.0.lock();
        let State { stream, write, .. } = &mut *st;
        let Some(stream) = stream.as_mut() else {
            return Poll::Ready(Err(closed()));
        };
        let polled = Pin::new(stream).poll_flush(cx);
        if polled.is_pending() {
            park(write, cx);
        }
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.0.lock();
        let State { stream, write, .. } = &mut *st;
        let Some(stream) = stream.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let polled = Pin::new(stream).poll_shutdown(cx);
        if polled.is_pending() {
            park(write, cx);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn kill_closes_the_socket_and_ends_a_pending_read() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let (mut stream, switch) = new(server);
        use super::super::admission::Conn;
        assert_eq!(switch.waiting_on_client_since(), None);
        stream.write_all(b"banner").await.expect("write");
        assert!(switch.waiting_on_client_since().is_some());
        client.write_all(b"hello").await.expect("write");
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.expect("read");
        assert_eq!(switch.waiting_on_client_since(), None);
        assert_eq!(switch.received(), 5);
        // A read that waits for the client ends when the switch is thrown.
        let reader = tokio::spawn(async move {
            let mut b = [0u8; 1];
            stream.read(&mut b).await
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        switch.kill();
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), reader)
            .await
            .expect("the read ends")
            .expect("join");
        assert_eq!(
            r.err().map(|e| e.kind()),
            Some(io::ErrorKind::ConnectionAborted)
        );
        // The client sees the connection closed.
        let mut rest = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client.read_to_end(&mut rest),
        )
        .await
        .expect("closed")
        .expect("EOF");
        assert_eq!(rest, b"banner");
        assert!(switch.is_killed());
    }
}
