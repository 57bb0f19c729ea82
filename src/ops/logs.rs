//! `berth logs`: the output of a service's containers, each line prefixed by
//! its instance when there are several. In follow mode an instance whose
//! container is replaced (a restart by the supervisor) is followed into the
//! new container.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;

use crate::engine::Engine;
use crate::engine::ops::{LogChunk, LogOptions};
use crate::error::{Error, Result};

/// Writes whole lines to stdout/stderr, each with an optional prefix, so that
/// lines of concurrent instances never interleave mid-line.
#[derive(Clone)]
pub struct LinePrinter {
    lock: Arc<Mutex<()>>,
    /// One JSON object per line on stdout instead of text (see [`json_line`]).
    json: bool,
}

impl Default for LinePrinter {
    fn default() -> Self {
        Self::new()
    }
}

impl LinePrinter {
    pub fn new() -> Self {
        Self {
            lock: Arc::new(Mutex::new(())),
            json: false,
        }
    }

    /// A printer of JSON lines.
    pub fn json() -> Self {
        Self {
            json: true,
            ..Self::new()
        }
    }

    /// Print one line (without its newline) of `container` to stdout or
    /// stderr; as JSON, everything goes to stdout.
    pub fn line(&self, container: &str, prefix: &str, line: &[u8], stderr: bool) {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.json {
            let mut text = json_line(container, line, stderr);
            text.push('\n');
            crate::stdout::write_bytes(text.as_bytes());
            crate::stdout::flush();
            return;
        }
        let mut buf = Vec::with_capacity(prefix.len() + line.len() + 1);
        buf.extend_from_slice(prefix.as_bytes());
        buf.extend_from_slice(line);
        buf.push(b'\n');
        // A closed stdout (`berth logs | head`) is not worth an error message.
        if stderr {
            let _ = std::io::stderr().write_all(&buf);
        } else {
            crate::stdout::write_bytes(&buf);
            crate::stdout::flush();
        }
    }
}

impl LinePrinter {
    /// Is this a printer of JSON lines?
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Print `text` and a newline on stdout as it is (a JSON line made by
    /// the caller), whole.
    pub fn raw(&self, text: &str) {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = String::with_capacity(text.len() + 1);
        buf.push_str(text);
        buf.push('\n');
        crate::stdout::write_bytes(buf.as_bytes());
        crate::stdout::flush();
    }
}

/// `berth logs --output json`: one object per line, `{"instance", "stream",
/// "timestamp", "line"}`. `line` is the engine's line with its timestamp
/// (the engine is always asked for one in this mode) split off.
pub fn json_line(container: &str, line: &[u8], stderr: bool) -> String {
    let text = String::from_utf8_lossy(line);
    let (timestamp, rest) = match text.split_once(' ') {
        Some((t, rest)) if crate::ops::status::parse_time(t).is_some() => (Some(t), rest),
        _ => (None, text.as_ref()),
    };
    serde_json::json!({
        "instance": container,
        "stream": if stderr { "stderr" } else { "stdout" },
        "timestamp": timestamp,
        "line": rest,
    })
    .to_string()
}

/// Splits chunks into lines, keeping an unfinished line until its end arrives.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feed a chunk; returns the complete lines (without `\n` or `\r\n`).
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.pending);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                lines.push(line);
            } else {
                self.pending.push(b);
            }
        }
        lines
    }

    /// Whatever is left at the end of the stream.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if self.pending.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.pending))
        }
    }
}

/// Print (and with `follow`, keep printing) the output of `containers`.
/// `prefix` puts `<container> | ` before each line; `json` prints JSON
/// lines instead (see [`json_line`]).
pub async fn show(
    engine: &Engine,
    containers: &[String],
    opts: &LogOptions,
    prefix: bool,
    json: bool,
) -> Result<()> {
    let (printer, prefix, opts) = if json {
        let opts = LogOptions {
            timestamps: true,
            ..opts.clone()
        };
        (LinePrinter::json(), false, opts)
    } else {
        (LinePrinter::new(), prefix, opts.clone())
    };
    let opts = &opts;
    let width = containers.iter().map(|c| c.len()).max().unwrap_or(0);
    let mut missing = Vec::new();
    let mut tasks = Vec::new();
    for c in containers {
        let status = engine.observe_container(c).await?;
        if status.is_none() && !opts.follow {
            missing.push(c.clone());
            continue;
        }
        let p = if prefix {
            format!("{c:<width$} | ")
        } else {
            String::new()
        };
        let engine = engine.clone();
        let printer = printer.clone();
        let opts = opts.clone();
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            follow_one(&engine, &c, &opts, &p, &printer).await
        }));
    }
    for m in &missing {
        eprintln!("{m}: no container (stopped or not started; see `berth ps`)");
    }
    if tasks.is_empty() {
        return Err(Error::Runtime(format!(
            "no container to show logs of ({})",
            missing.join(", ")
        )));
    }
    for t in tasks {
        match t.await {
            Ok(r) => r?,
            Err(e) => return Err(Error::Runtime(format!("log task failed: {e}"))),
        }
    }
    Ok(())
}

async fn follow_one(
    engine: &Engine,
    container: &str,
    opts: &LogOptions,
    prefix: &str,
    printer: &LinePrinter,
) -> Result<()> {
    let mut opts = opts.clone();
    let mut last_id: Option<String> = None;
    loop {
        let current = engine.observe_container(container).await?;
        match (&current, opts.follow) {
            (None, false) => return Ok(()),
            (None, true) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            (Some(c), true) if last_id.as_deref() == Some(c.id.as_str()) && !c.is_running() => {
                // Same container, still stopped: wait for it to run again or
                // to be replaced by a fresh one.
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            _ => {}
        }
        let Some(c) = current else { return Ok(()) };
        let same_container = last_id.as_deref() == Some(c.id.as_str());
        if same_container {
            // Restarted in place by the engine: only what it wrote since.
            opts.tail = Some(0);
        }
        last_id = Some(c.id.clone());
        let mut out = LineSplitter::default();
        let mut err = LineSplitter::default();
        let mut stream = Box::pin(engine.log_stream(container, &opts));
        while let Some(item) = stream.next().await {
            match item {
                Ok(LogChunk::Stdout(b)) => {
                    for l in out.feed(&b) {
                        printer.line(container, prefix, &l, false);
                    }
                    // Nobody reads any more: following is over.
                    if crate::stdout::is_closed() {
                        return Ok(());
                    }
                }
                Ok(LogChunk::Stderr(b)) => {
                    for l in err.feed(&b) {
                        printer.line(container, prefix, &l, true);
                    }
                }
                // The container went away mid-stream: with follow, wait for
                // the next one; otherwise the output ends here.
                Err(e) if opts.follow => {
                    tracing::debug!("{container}: {e}");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(l) = out.finish() {
            printer.line(container, prefix, &l, false);
        }
        if let Some(l) = err.finish() {
            printer.line(container, prefix, &l, true);
        }
        if !opts.follow {
            return Ok(());
        }
        // A fresh container gets its whole output.
        opts.tail = None;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `berth logs SERVICE --health`: the engine's recent health-check results
/// of each container (it keeps the last five), oldest first.
pub async fn health_report(engine: &Engine, containers: &[String]) -> Result<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    for c in containers {
        let Some(st) = engine.observe_container(c).await? else {
            let _ = writeln!(out, "{c}: no container");
            continue;
        };
        match &st.health {
            None => {
                let _ = writeln!(out, "{c}: no health check");
            }
            Some(h) => {
                let _ = writeln!(out, "{c}: {h}");
            }
        }
        for check in &st.checks {
            let _ = writeln!(
                out,
                "  {} exit {}",
                check.start.as_deref().unwrap_or("-"),
                check.exit_code
            );
            for line in check.output.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_keeps_partial_lines() {
        let mut s = LineSplitter::default();
        assert_eq!(s.feed(b"a\r\nb"), vec![b"a".to_vec()]);
        assert_eq!(s.feed(b"c\nd\n"), vec![b"bc".to_vec(), b"d".to_vec()]);
        assert_eq!(s.feed(b"tail"), Vec::<Vec<u8>>::new());
        assert_eq!(s.finish(), Some(b"tail".to_vec()));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn json_lines_split_the_engine_timestamp_off() {
        let v: serde_json::Value = serde_json::from_str(&json_line(
            "ex-web",
            b"2026-01-01T00:00:00.123456789Z hello world",
            true,
        ))
        .expect("JSON");
        assert_eq!(
            v,
            serde_json::json!({"instance": "ex-web", "stream": "stderr",
                "timestamp": "2026-01-01T00:00:00.123456789Z", "line": "hello world"})
        );
        let v: serde_json::Value =
            serde_json::from_str(&json_line("ex-web", b"no stamp here", false)).expect("JSON");
        assert_eq!(v["timestamp"], serde_json::Value::Null);
        assert_eq!(v["line"], "no stamp here");
    }
}
