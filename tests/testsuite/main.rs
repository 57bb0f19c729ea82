//! berth's integration tests: one binary (as cargo does it), one module per area.
//! They drive the built `berth` binary against the real Docker engine.

mod data;
mod support;
