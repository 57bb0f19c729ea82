//! berth as an installed system tool: `--version`, the Debian package and
//! the static build (`scripts/build-deb`, `scripts/build-static`), and an
//! upgrade of the package on a systemd host with running deployments.

use std::path::Path;
use std::process::Command;

use crate::support::{bin, show};

/// `berth --version` names the version and the commit it was built from:
/// `BERTH_COMMIT` when the build had it, else this checkout's HEAD, else
/// "unknown" (a build outside a git checkout).
#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = Command::new(bin())
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("run berth: {e}"));
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let want_start = format!("berth {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&want_start), "{text}");
    let head = Command::new("git")
        .args(["log", "-1", "--format=%H %cs"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let want = match (std::env::var("BERTH_COMMIT"), head) {
        (Ok(c), _) if !c.trim().is_empty() => c.trim().to_string(),
        (_, Some(line)) if Path::new(env!("CARGO_MANIFEST_DIR")).join(".git").exists() => {
            let (hash, date) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("git log said {line:?}"));
            format!("{} {date}", &hash[..12])
        }
        _ => "unknown".to_string(),
    };
    assert_eq!(text.trim(), format!("{want_start}{want})"));
}
