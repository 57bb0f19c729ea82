//! The deployment's `notify` command and `notify_url` webhook, told of
//! every update and every rollback `berth update` makes: the command in its
//! environment, the webhook by a JSON POST. A hook that fails or hangs is
//! reported, never fatal: the update (or its rollback) has already happened
//! and must not be undone by a hook.

use std::time::Duration;

use crate::apply::Reporter;
use crate::deployment::Deployment;

/// How long the command may run before it is killed.
const TIMEOUT: Duration = Duration::from_secs(60);

/// How long the webhook may take to answer.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// What the command is told.
pub struct Event<'a> {
    /// `update` or `rollback`.
    pub kind: &'a str,
    pub service: &'a str,
    pub image: &'a str,
    /// The digest the service left: for an update the one it ran before
    /// (empty when not known), for a rollback the one rolled back from.
    pub from: &'a str,
    /// The digest it runs now (for a rollback: empty when not known).
    pub to: &'a str,
    /// Why (for a rollback: the failing checks).
    pub reason: &'a str,
}

/// Tell `deployment.notify` and `deployment.notify_url`, if set, of
/// `event` (both at once: a slow one does not hold up the other).
pub async fn notify(deployment: &Deployment, event: &Event<'_>, report: &Reporter) {
    tokio::join!(
        command(deployment, event, report),
        webhook(deployment, event, report)
    );
}

async fn command(deployment: &Deployment, event: &Event<'_>, report: &Reporter) {
    let Some((program, args)) = deployment.notify.as_ref().and_then(|a| a.split_first()) else {
        return;
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("BERTH_EVENT", event.kind)
        .env("BERTH_DEPLOYMENT", &deployment.name)
        .env("BERTH_SERVICE", event.service)
        .env("BERTH_IMAGE", event.image)
        .env("BERTH_FROM", event.from)
        .env("BERTH_TO", event.to)
        .env("BERTH_REASON", event.reason)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let outcome = match tokio::time::timeout(TIMEOUT, cmd.output()).await {
        Err(_) => Err(format!("did not finish within {}s", TIMEOUT.as_secs())),
        Ok(Err(e)) => Err(format!("could not be started: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    };
    if let Err(why) = outcome {
        report(format!(
            "warning: notify command {program} for the {} of {} {why}",
            event.kind, event.service
        ));
    }
}

/// The body POSTed to `notify_url`.
fn webhook_body(deployment: &Deployment, event: &Event<'_>) -> Vec<u8> {
    serde_json::json!({
        "event": event.kind,
        "deployment": deployment.name,
        "service": event.service,
        "image": event.image,
        "from": event.from,
        "to": event.to,
        "reason": event.reason,
        "time": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    })
    .to_string()
    .into_bytes()
}

async fn webhook(deployment: &Deployment, event: &Event<'_>, report: &Reporter) {
    let Some(url) = &deployment.notify_url else {
        return;
    };
    // Checked when the file was read; a stored deployment is read the same way.
    let Ok(uri) = url.parse::<http::Uri>() else {
        return;
    };
    let body = webhook_body(deployment, event);
    let outcome = match tokio::time::timeout(WEBHOOK_TIMEOUT, post(&uri, body)).await {
        Err(_) => Err(format!(
            "did not answer within {}s",
            WEBHOOK_TIMEOUT.as_secs()
        )),
        Ok(r) => r,
    };
    if let Err(why) = outcome {
        report(format!(
            "warning: notify_url {} for the {} of {}: {why}",
            deployment.notify_url_shown().unwrap_or_default(),
            event.kind,
            event.service
        ));
    }
}

/// POST `body` as JSON to `uri`; an answer other than 2xx is an error.
async fn post(uri: &http::Uri, body: Vec<u8>) -> Result<(), String> {
    use http_body_util::BodyExt;

    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| format!("no trusted certificates for TLS: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    let request = http::Request::post(uri.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("berth/", env!("CARGO_PKG_VERSION")),
        )
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = client.request(request).await.map_err(|e| {
        // The connector's error says why (refused, TLS, DNS) in its source.
        let mut why = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            why = format!("{why}: {s}");
            source = s.source();
        }
        why
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    // A little of the answer helps tell a bad token from a broken service;
    // only a little is read, whatever the server sends.
    let mut body = response.into_body();
    let mut head = Vec::new();
    while head.len() < 200 {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    head.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    // The server's text reaches a terminal: no control characters.
    let text: String = String::from_utf8_lossy(&head)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    Err(format!("answered {status} {}", text.trim()))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers 500 with an endless body full of escape
    /// sequences: berth reads a little of it and prints none of them.
    #[tokio::test]
    async fn a_hostile_answer_is_read_only_in_part_and_printed_without_control_characters() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        tokio::spawn(async move {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            // The whole request first (its body is `{}`), as a server would.
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.ends_with(b"\r\n\r\n{}") {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let head = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1000000000\r\n\r\n";
            let _ = conn.write_all(head.as_bytes()).await;
            let chunk = "\x1b[2J\x1b]0;owned\x07".repeat(1000);
            // Endless, unless berth stops reading and closes.
            while conn.write_all(chunk.as_bytes()).await.is_ok() {}
        });
        let uri: http::Uri = format!("http://127.0.0.1:{port}/hook")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let err = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            super::post(&uri, b"{}".to_vec()),
        )
        .await
        .unwrap_or_else(|_| panic!("berth kept reading the endless answer"))
        .err()
        .unwrap_or_else(|| panic!("a 500 was taken for success"));
        assert!(err.starts_with("answered 500"), "{err}");
        assert!(!err.chars().any(char::is_control), "{err:?}");
        assert!(err.len() < 300, "{} bytes", err.len());
    }
}
