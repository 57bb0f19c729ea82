//! Records the commit berth is built from, for `berth --version`.
//!
//! The commit is, in order: `BERTH_COMMIT` from the environment (for builds
//! outside a git checkout, such as from a source tarball, or to override),
//! else the `HEAD` of the git checkout this crate is the top of, else
//! `unknown`. Only what decides it is watched (the env var, `HEAD`, the
//! branch it points to, `packed-refs`), so a build with nothing changed
//! neither reruns this script nor recompiles berth.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=BERTH_COMMIT");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = match std::env::var("BERTH_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => from_git(&manifest_dir).unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=BERTH_COMMIT={commit}");
}

/// `HEAD`'s commit (12 hex digits) and date, when `dir` is the top of a git
/// work tree, watching the files that change when `HEAD` moves.
fn from_git(dir: &Path) -> Option<String> {
    // Inside someone else's checkout (a tarball unpacked in a packaging
    // repository), that repository's HEAD is not berth's commit.
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(dir).ok()? {
        return None;
    }
    let git_dir = PathBuf::from(git(dir, &["rev-parse", "--absolute-git-dir"])?);
    let common_dir =
        std::fs::canonicalize(dir.join(git(dir, &["rev-parse", "--git-common-dir"])?)).ok()?;
    // HEAD (its own in a worktree) moves on checkout; the branch's ref (a
    // loose file, or packed-refs) moves on commit. Watching a missing path
    // would rerun every build, so only existing ones are named; a branch
    // with no loose ref yet gets one in refs/heads, which is watched then.
    watch(&git_dir.join("HEAD"));
    watch(&common_dir.join("packed-refs"));
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        let loose = common_dir.join(&branch);
        if loose.exists() {
            watch(&loose);
        } else {
            watch(&common_dir.join("refs/heads"));
        }
    }
    let line = git(dir, &["log", "-1", "--format=%H %cs"])?;
    let (hash, date) = line.split_once(' ')?;
    Some(format!("{} {date}", hash.get(..12)?))
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// A git command's trimmed stdout, or None if git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        if !out.stderr.is_empty() && dir.join(".git").exists() {
            // A checkout git cannot read (say, owned by another user):
            // say why the commit will read "unknown".
            let err = String::from_utf8_lossy(&out.stderr);
            println!(
                "cargo:warning=berth --version will say commit unknown: git {}: {}",
                args.join(" "),
                err.lines().next().unwrap_or("")
            );
        }
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
