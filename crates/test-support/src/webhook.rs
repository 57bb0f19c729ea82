//! A webhook receiver for `notify_url` tests: Python's HTTP server behind
//! TLS with a throwaway self-signed certificate for 127.0.0.1, appending
//! each POSTed body as one line to a file. berth is pointed at the
//! certificate with `SSL_CERT_FILE`, so the TLS path is the one operators
//! use. Killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const SERVER: &str = r#"
import http.server, ssl, sys
cert, key, out, port_file = sys.argv[1:5]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open(out, "ab") as f:
            f.write(self.path.encode() + b" " + self.headers.get("Content-Type", "").encode() + b" " + body.replace(b"\n", b" ") + b"\n")
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os; os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
"#;

/// See the module documentation.
pub struct WebhookSink {
    /// `https://127.0.0.1:<port>`.
    pub base: String,
    /// The CA certificate to trust (`SSL_CERT_FILE`).
    pub cert: PathBuf,
    received: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl WebhookSink {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("webhook directory");
        // A CA and a server certificate it signed: a self-signed server
        // certificate is refused by berth's TLS (as it should be).
        let p = |f: &str| dir.path().join(f);
        let ext = p("ext.cnf");
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write ext.cnf");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=berth test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ]);
        let (cert, key) = (p("ca.pem"), p("key.pem"));
        let server_cert = p("server.pem");
        let received = dir.path().join("received");
        let port_file = dir.path().join("port");
        let child = Command::new("python3")
            .arg("-c")
            .arg(SERVER)
            .args([&server_cert, &key, &received, &port_file])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3");
        let mut sink = Self {
            base: String::new(),
            cert,
            received,
            child,
            _dir: dir,
        };
        let up = crate::wait_for(std::time::Duration::from_secs(20), || port_file.exists());
        assert!(up, "the webhook receiver did not start");
        let port = std::fs::read_to_string(&port_file).expect("port file");
        sink.base = format!("https://127.0.0.1:{}", port.trim());
        sink
    }

    /// One line per POST: `PATH CONTENT-TYPE BODY`.
    pub fn received(&self) -> Vec<String> {
        std::fs::read_to_string(&self.received)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    pub fn cert(&self) -> &Path {
        &self.cert
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
