//! Feed arbitrary text to the deployment-file parser in every format.
//! Anything but a panic (or a hang, or unbounded memory) is fine: invalid
//! input must come back as located errors.

#![no_main]

use std::path::PathBuf;

use berth::spec::{Format, LoadOptions, load_str};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let format = match selector % 3 {
        0 => Format::Toml,
        1 => Format::Yaml,
        _ => Format::Json,
    };
    // A directory that does not exist: no `.env` or `env_file` is read.
    let opts = LoadOptions {
        file: PathBuf::from("/nonexistent-berth-fuzz/deploy.toml"),
        name: None,
        set: vec![("SET".into(), "value".into())],
        env: [("HOME".to_string(), "/root".to_string())].into(),
    };
    if let Err(errors) = load_str(&opts, format, text.to_string()) {
        // Rendering the errors must not panic either.
        let _ = errors.to_string();
    }
});
