//! berth's standard output, for every command.
//!
//! A closed stdout (`berth ps | head -1`, `berth plan | true`) is the reader
//! saying it has read enough, not a failure: berth drops the rest of its
//! output, prints nothing about it, and exits with the code the command
//! itself ends with (0 for `ps`, 3 for a `plan` with changes). That is what
//! ripgrep does (it exits 0); `ls` and `cargo` are killed by SIGPIPE instead
//! (141 under bash), which would end an `apply` half way because its
//! progress went to a closed pipe. SIGPIPE itself stays ignored (Rust's
//! default), so the SSH gateway's sockets keep getting EPIPE as an error
//! rather than killing the process. Commands whose only work is output and
//! that would run forever (`logs --follow`) stop once stdout is closed.
//!
//! Any other write error (a full disk behind `> file`) is remembered and
//! reported once at the end, with exit code 1.

use std::io::{ErrorKind, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);
static FAILED: Mutex<Option<String>> = Mutex::new(None);

/// Write bytes to stdout; after the reader went away, nothing.
pub fn write_bytes(bytes: &[u8]) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes) {
        note(e);
    }
}

/// Write formatted text to stdout (what `print!` and `println!` in the
/// command files expand to).
pub fn write_fmt(args: std::fmt::Arguments<'_>) {
    match args.as_str() {
        Some(s) => write_bytes(s.as_bytes()),
        None => write_bytes(args.to_string().as_bytes()),
    }
}

/// Write formatted text to stderr (`eprint!`/`eprintln!` in the command
/// files). A closed stderr (`berth apply 2>&1 | head`) loses the text and
/// nothing else: progress and errors never end a command.
pub fn write_err_fmt(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// Push buffered output out (before exit, and where a line must be seen now).
pub fn flush() {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = std::io::stdout().lock().flush() {
        note(e);
    }
}

/// True once a write found stdout closed.
pub fn is_closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// A write error other than a closed pipe, if one happened.
pub fn failure() -> Option<String> {
    FAILED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn note(e: std::io::Error) {
    if e.kind() == ErrorKind::BrokenPipe {
        CLOSED.store(true, Ordering::Relaxed);
        return;
    }
    let mut failed = FAILED.lock().unwrap_or_else(|p| p.into_inner());
    if failed.is_none() {
        *failed = Some(e.to_string());
    }
    // Nothing more will get through either.
    CLOSED.store(true, Ordering::Relaxed);
}
