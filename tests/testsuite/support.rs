//! Glue between the test modules and `berth-test-support`.

pub use berth_test_support::*;

use std::path::Path;
use std::process::Output;

/// The `berth` binary cargo built for these tests.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// Run the built `berth` in a workspace.
#[allow(dead_code)]
pub fn run(ws: &Workspace, args: &[&str]) -> Output {
    berth(bin(), ws, args)
}
