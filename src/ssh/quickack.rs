//! The gateway's TCP connections acknowledge what they receive at once.
//!
//! OpenSSH's client turns Nagle's algorithm off only for interactive
//! sessions, so in `ssh svc@host cmd` a small packet it sends while its
//! previous one is still unacknowledged waits for that acknowledgement. The
//! server's kernel delays acknowledgements (up to 40 ms on Linux) whenever
//! the server has nothing to send back, which is exactly the case after the
//! client's key-exchange init and after its last stdin data: each of those
//! cost a 40 ms stall, seen as a gap in `ssh -vvv` between the client's key
//! exchange packet and the server's reply, on about half of all logins.
//! Linux falls back to delayed acknowledgements on its own, so the option is
//! set again after every read (one `setsockopt`, cheap next to the read).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream with `TCP_QUICKACK` renewed after every read that got data.
pub struct QuickAck(TcpStream);

impl QuickAck {
    /// Wrap an accepted connection.
    pub fn new(stream: TcpStream) -> Self {
        let this = Self(stream);
        this.renew();
        this
    }

    fn renew(&self) {
        // Only latency is at stake: a failure changes nothing else.
        let _ = SockRef::from(&self.0).set_tcp_quickack(true);
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.0).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.renew();
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
