//! `berth backup` / `berth restore` against the real engine.
//!
//! Until `apply` creates them, each test makes the labelled volumes and the
//! instance container berth would make (same names, same labels) with the
//! docker CLI, and compares volume contents entry by entry, as listed by
//! busybox inside a container, before and after.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::{self, Cleanup, Workspace, docker, docker_ok, show};

/// Command of the stand-in service: runs until SIGTERM, then exits at once.
const IDLE: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

/// A labelled volume as berth names it: `<deployment>-<service>-<key>`.
fn make_volume(deployment: &str, service: &str, key: &str) -> String {
    let name = format!("{deployment}-{service}-{key}");
    docker_ok(&[
        "volume",
        "create",
        "--label",
        &format!("berth.deployment={deployment}"),
        "--label",
        &format!("berth.service={service}"),
        "--label",
        "berth.instance=1",
        &name,
    ]);
    name
}

/// Start the instance container `<deployment>-<service>` with `mounts`
/// (volume, path) running `script`.
fn start_instance(
    deployment: &str,
    service: &str,
    mounts: &[(&str, &str)],
    script: &str,
) -> String {
    let name = format!("{deployment}-{service}");
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--name".into(),
        name.clone(),
        "--label".into(),
        format!("berth.deployment={deployment}"),
        "--label".into(),
        format!("berth.service={service}"),
        "--label".into(),
        "berth.instance=1".into(),
        "--stop-timeout".into(),
        "20".into(),
    ];
    for (vol, path) in mounts {
        args.push("-v".into());
        args.push(format!("{vol}:{path}"));
    }
    args.extend([
        support::base_image().to_string(),
        "sh".into(),
        "-c".into(),
        script.into(),
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    docker_ok(&refs);
    name
}

/// Run a shell script as root in a throw-away container with `volume` at /v.
fn in_volume(volume: &str, script: &str) -> Vec<u8> {
    in_volume_on(&docker, volume, script)
}

/// [`in_volume`] through `docker` (the host's engine, or a swarm node's).
pub(crate) fn in_volume_on(
    docker: &dyn Fn(&[&str]) -> std::process::Output,
    volume: &str,
    script: &str,
) -> Vec<u8> {
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{volume}:/v"),
        support::base_image(),
        "sh",
        "-c",
        script,
    ]);
    assert!(
        out.status.success(),
        "script in volume {volume} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Fill a volume with every kind of entry the round trip must keep.
fn fill_tree(volume: &str) {
    in_volume(volume, FILL_TREE);
}

/// A shell script filling `/v` with [`fill_tree`]'s entries (also used on a
/// swarm node's engine).
pub(crate) const FILL_TREE: &str = r#"set -e; cd /v
printf secret > f600; chmod 600 f600
printf exec > f755; chmod 755 f755
printf owned > owned; chown 1234:5678 owned; chmod 640 owned
printf suid > suid; chown 1234:5678 suid; chmod 4755 suid
printf sgid > sgid; chmod 2711 sgid
mkdir -p dir/sub empty/nested-empty
printf deep > dir/sub/deep
chown 42:43 dir; chmod 750 dir
ln -s f600 link
ln -s ../nowhere dangling
ln -s dir dirlink
ln f755 hard1
ln f755 dir/hard2
ln suid suid-hard
printf space > 'with space'
printf newline > "$(printf 'new\nline')"
printf bytes > "$(printf 'non\377utf8\376name')"
mkdir "$(printf 'dir with\nnewline')"
head -c 20971520 /dev/urandom > random20m
mkfifo fifo; chmod 620 fifo
chown 7:9 /v; chmod 701 /v
"#;

/// [`fill_tree`] through `docker` (the host's engine, or a swarm node's).
pub(crate) fn fill_tree_on(docker: &dyn Fn(&[&str]) -> std::process::Output, volume: &str) {
    in_volume_on(docker, volume, FILL_TREE);
}

/// One entry of a volume listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// `stat -c '%f %u %g %s %Y'` (raw mode, owner, group, size, mtime);
    /// the size of directories is left out (it depends on the file system's
    /// history, not on the content).
    meta: String,
    /// sha256 of a file's content, a symlink's target, or `-`.
    content: String,
    /// Names of all entries sharing this entry's inode (hard links), sorted.
    links: Vec<Vec<u8>>,
}

/// Everything in a volume, by raw name (relative, `.` is the root).
fn listing(volume: &str) -> BTreeMap<Vec<u8>, Entry> {
    parse_listing(&in_volume(volume, LISTING))
}

/// A shell script listing `/v` for [`parse_listing`].
pub(crate) const LISTING: &str = r#"cd /v && find . -exec sh -c 'for f; do
  printf "%s\0" "$f"
  if [ -d "$f" ] && [ ! -L "$f" ]; then stat -c "%f %u %g - %Y %i" "$f"; else stat -c "%f %u %g %s %Y %i" "$f"; fi
  if [ -L "$f" ]; then readlink "$f"; elif [ -f "$f" ]; then sha256sum < "$f" | cut -d" " -f1; else echo -; fi
done' sh {} +"#;

/// [`listing`] through `docker`.
pub(crate) fn listing_on(
    docker: &dyn Fn(&[&str]) -> std::process::Output,
    volume: &str,
) -> BTreeMap<Vec<u8>, Entry> {
    parse_listing(&in_volume_on(docker, volume, LISTING))
}

/// [`LISTING`]'s output, by raw name.
pub(crate) fn parse_listing(raw: &[u8]) -> BTreeMap<Vec<u8>, Entry> {
    let mut entries: Vec<(Vec<u8>, String, String, String)> = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .expect("listing record has a name");
        let name = rest[..nul].to_vec();
        rest = &rest[nul + 1..];
        let mut line = || {
            let nl = rest.iter().position(|&b| b == b'\n').expect("listing line");
            let l = String::from_utf8_lossy(&rest[..nl]).into_owned();
            rest = &rest[nl + 1..];
            l
        };
        let stat = line();
        let content = line();
        let (meta, inode) = stat.rsplit_once(' ').expect("stat output with inode");
        entries.push((name, meta.to_string(), inode.to_string(), content));
    }
    let mut by_inode: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (name, meta, inode, _) in &entries {
        if !meta.starts_with('4') {
            // not a directory (raw mode 4xxx)
            by_inode
                .entry(inode.clone())
                .or_default()
                .push(name.clone());
        }
    }
    entries
        .into_iter()
        .map(|(name, meta, inode, content)| {
            let mut links = by_inode.get(&inode).cloned().unwrap_or_default();
            links.sort();
            (
                name,
                Entry {
                    meta,
                    content,
                    links,
                },
            )
        })
        .collect()
}

/// The listing sees what [`fill_tree`] made (so comparing listings means something).
pub(crate) fn assert_tree_has_every_kind(t: &BTreeMap<Vec<u8>, Entry>) {
    let get = |name: &[u8]| {
        t.get(name)
            .unwrap_or_else(|| panic!("{:?} missing from {t:?}", String::from_utf8_lossy(name)))
    };
    assert!(get(b".").meta.starts_with("41c1 7 9 "), "root 0701 7:9");
    assert!(get(b"./f600").meta.starts_with("8180 0 0 6 "), "0600 file");
    assert!(
        get(b"./suid").meta.starts_with("89ed 1234 5678 "),
        "04755 1234:5678"
    );
    assert!(get(b"./sgid").meta.starts_with("85c9 0 0 "), "02711");
    assert!(
        get(b"./dir").meta.starts_with("41e8 42 43 "),
        "dir 0750 42:43"
    );
    assert_eq!(get(b"./dangling").content, "../nowhere");
    assert!(get(b"./dangling").meta.starts_with("a1ff "), "symlink");
    assert_eq!(
        get(b"./hard1").links,
        vec![
            b"./dir/hard2".to_vec(),
            b"./f755".to_vec(),
            b"./hard1".to_vec()
        ]
    );
    assert_eq!(get(b"./suid-hard").links.len(), 2);
    assert!(get(b"./empty/nested-empty").meta.starts_with("41ed "));
    assert_eq!(get(b"./new\nline").content.len(), 64);
    assert_eq!(get(b"./non\xffutf8\xfename").content.len(), 64);
    assert!(t.contains_key(&b"./dir with\nnewline"[..]));
    assert!(get(b"./random20m").meta.contains(" 20971520 "));
    assert!(get(b"./fifo").meta.starts_with("1190 "), "fifo 0620");
}

pub(crate) fn assert_same_tree(
    before: &BTreeMap<Vec<u8>, Entry>,
    after: &BTreeMap<Vec<u8>, Entry>,
) {
    for (name, e) in before {
        let shown = String::from_utf8_lossy(name);
        let a = after
            .get(name)
            .unwrap_or_else(|| panic!("{shown:?} is missing after the round trip"));
        assert_eq!(e, a, "{shown:?} differs after the round trip");
    }
    for name in after.keys() {
        assert!(
            before.contains_key(name),
            "{:?} appeared after the round trip",
            String::from_utf8_lossy(name)
        );
    }
}

fn run_ok(ws: &Workspace, args: &[&str]) -> std::process::Output {
    let out = support::run(ws, args);
    assert!(out.status.success(), "berth {args:?}:\n{}", show(&out));
    out
}

fn started_at(container: &str) -> String {
    docker_ok(&["inspect", "-f", "{{.State.StartedAt}}", container])
}

fn running(container: &str) -> bool {
    docker_ok(&["inspect", "-f", "{{.State.Running}}", container]) == "true"
}

/// Nothing but the instance containers: no carrier left behind.
fn assert_no_carriers(deployment: &str) {
    let carriers = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=berth.deployment={deployment}"),
        "--filter",
        "label=berth.carrier",
        "--format",
        "{{.Names}}",
    ]);
    assert!(carriers.is_empty(), "carriers left behind: {carriers}");
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

#[test]
fn round_trip_keeps_every_kind_of_entry_and_migrates() {
    let dep = support::unique_name("dataround");
    let other = support::unique_name("datamig");
    let _clean = Cleanup::new(&dep);
    let _clean_other = Cleanup::new(&other);
    let ws = Workspace::new();

    let vol = make_volume(&dep, "app", "data");
    fill_tree(&vol);
    let container = start_instance(&dep, "app", &[(&vol, "/data")], IDLE);
    let before = listing(&vol);
    assert_tree_has_every_kind(&before);
    let started = started_at(&container);

    let archive = ws.path().join("backup.tar.zst");
    run_ok(
        &ws,
        &["--name", &dep, "backup", "--all", "-o", path_str(&archive)],
    );
    assert_no_carriers(&dep);
    assert!(
        running(&container),
        "the instance runs again after the backup"
    );
    assert_ne!(
        started,
        started_at(&container),
        "a consistent backup stops and starts the instance"
    );
    assert!(!ws.path().join("backup.tar.zst.partial").exists());

    // The volume holds a FIFO and setuid/setgid files: the backup records
    // them, and restore recreates them only when asked to.
    let out = support::run(
        &ws,
        &["restore", path_str(&archive), "--deployment", &other],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--allow-special-files") && err.contains("1 FIFO"),
        "{err}"
    );
    assert!(support::volumes_of(&other).is_empty(), "nothing created");

    // Migration: the same data under another deployment name, volume created.
    run_ok(
        &ws,
        &[
            "restore",
            path_str(&archive),
            "--deployment",
            &other,
            "--allow-special-files",
        ],
    );
    let migrated = format!("{other}-app-data");
    assert_same_tree(&before, &listing(&migrated));
    let labels =
        support::inspect("volume", &migrated).expect("migrated volume exists")["Labels"].clone();
    assert_eq!(labels["berth.deployment"], other.as_str());
    assert_eq!(labels["berth.service"], "app");
    assert_eq!(labels["berth.instance"], "1");
    assert_no_carriers(&other);

    // Lost volume: restore recreates it, labelled, with the same tree.
    docker_ok(&["rm", "-f", &container]);
    docker_ok(&["volume", "rm", &vol]);
    run_ok(
        &ws,
        &[
            "--name",
            &dep,
            "restore",
            path_str(&archive),
            "--allow-special-files",
        ],
    );
    assert_same_tree(&before, &listing(&vol));
    let labels = support::inspect("volume", &vol).expect("volume recreated")["Labels"].clone();
    assert_eq!(labels["berth.deployment"], dep.as_str());
}

#[test]
fn restore_refuses_a_non_empty_volume_unless_forced() {
    let dep = support::unique_name("dataforce");
    let _clean = Cleanup::new(&dep);
    let ws = Workspace::new();
    let vol = make_volume(&dep, "db", "data");
    fill_tree(&vol);
    let container = start_instance(&dep, "db", &[(&vol, "/data")], IDLE);
    let original = listing(&vol);
    let archive = ws.path().join("b.tar.zst");
    run_ok(
        &ws,
        &["--name", &dep, "backup", "db", "-o", path_str(&archive)],
    );

    in_volume(
        &vol,
        "printf changed > /v/f600; printf new > /v/extra; rm /v/hard1",
    );
    let changed = listing(&vol);
    assert_ne!(changed, original);

    let out = support::run(
        &ws,
        &["restore", path_str(&archive), "--allow-special-files"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&vol) && err.contains("--force"), "{err}");
    assert_eq!(listing(&vol), changed, "a refused restore changes nothing");
    assert!(running(&container));

    run_ok(
        &ws,
        &[
            "restore",
            path_str(&archive),
            "--force",
            "--allow-special-files",
        ],
    );
    assert_same_tree(&original, &listing(&vol));
    assert!(
        running(&container),
        "the instance runs again after the restore"
    );
    assert_no_carriers(&dep);

    // The replaced content was saved, and is itself a valid backup.
    let saved_dir = ws.state_dir().join("snapshots").join(&container);
    let saved: Vec<_> = std::fs::read_dir(&saved_dir)
        .expect("pre-restore copy directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    run_ok(
        &ws,
        &[
            "restore",
            path_str(&saved[0]),
            "--force",
            "--allow-special-files",
        ],
    );
    assert_same_tree(&changed, &listing(&vol));
}

/// Back up a small volume and return (workspace, archive, volume, container).
fn small_backup(dep: &str) -> (Workspace, std::path::PathBuf, String, String) {
    let ws = Workspace::new();
    let vol = make_volume(dep, "web", "www");
    in_volume(
        &vol,
        "head -c 3000000 /dev/urandom > /v/blob; echo hello > /v/index.html",
    );
    let container = start_instance(dep, "web", &[(&vol, "/www")], IDLE);
    let out = run_ok(&ws, &["--name", dep, "backup", "--all", "-o", "-"]);
    let archive = ws.path().join("web.tar.zst");
    std::fs::write(&archive, &out.stdout).expect("write archive");
    (ws, archive, vol, container)
}

#[test]
fn truncated_archive_is_refused_and_nothing_is_touched() {
    let dep = support::unique_name("datatrunc");
    let _clean = Cleanup::new(&dep);
    let (ws, archive, vol, container) = small_backup(&dep);
    in_volume(&vol, "echo changed > /v/index.html");
    let before = listing(&vol);
    let started = started_at(&container);

    let bytes = std::fs::read(&archive).expect("read archive");
    for cut in [bytes.len() - 1, bytes.len() / 2, 100] {
        std::fs::write(&archive, &bytes[..cut]).expect("truncate");
        let out = support::run(&ws, &["restore", path_str(&archive), "--force"]);
        assert_eq!(out.status.code(), Some(2), "cut at {cut}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("truncated") && err.contains("nothing was restored"),
            "cut at {cut}: {err}"
        );
        assert_eq!(listing(&vol), before, "cut at {cut}: volume untouched");
    }
    assert_eq!(
        started,
        started_at(&container),
        "the instance was not stopped"
    );
    assert_no_carriers(&dep);
}

#[test]
fn corrupted_archive_is_refused_and_nothing_is_touched() {
    let dep = support::unique_name("datacorrupt");
    let _clean = Cleanup::new(&dep);
    let (ws, archive, vol, container) = small_backup(&dep);
    in_volume(&vol, "echo changed > /v/index.html");
    let before = listing(&vol);
    let started = started_at(&container);

    let good = std::fs::read(&archive).expect("read archive");
    for at in [good.len() / 3, good.len() / 2, good.len() - 20] {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        std::fs::write(&archive, &bad).expect("write corrupted archive");
        let out = support::run(&ws, &["restore", path_str(&archive), "--force"]);
        assert_eq!(out.status.code(), Some(2), "flip at {at}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("corrupt") || err.contains("checksum"),
            "flip at {at}: {err}"
        );
        assert_eq!(listing(&vol), before, "flip at {at}: volume untouched");
    }
    assert_eq!(
        started,
        started_at(&container),
        "the instance was not stopped"
    );

    // The intact archive still restores.
    std::fs::write(&archive, &good).expect("write archive");
    run_ok(&ws, &["restore", path_str(&archive), "--force"]);
    assert_eq!(
        in_volume(&vol, "cat /v/index.html"),
        b"hello\n".to_vec(),
        "the good archive restores"
    );
}

/// The stand-in service appends line N to a log, then writes N to a
/// counter, ten times a second. SIGTERM only sets a flag, so a round is
/// never cut between the log and the counter; the counter is replaced by
/// rename, so a reader never sees it half written.
const WRITER: &str = "trap 'stop=1' TERM; n=$(cat /data/counter 2>/dev/null || echo 0); while [ -z \"$stop\" ]; do n=$((n+1)); echo line $n >> /data/log; echo $n > /data/counter.new; mv /data/counter.new /data/counter; sleep 0.1; done";

#[test]
fn backup_of_a_writing_service_consistent_and_live() {
    let dep = support::unique_name("datawrite");
    let check = support::unique_name("datawchk");
    let _clean = Cleanup::new(&dep);
    let _clean_check = Cleanup::new(&check);
    let ws = Workspace::new();
    let vol = make_volume(&dep, "logger", "data");
    let container = start_instance(&dep, "logger", &[(&vol, "/data")], WRITER);
    // Let it write something first.
    while in_volume(&vol, "cat /v/counter 2>/dev/null || true").len() < 2 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // Consistent: stopped meanwhile, so the counter matches the log.
    let started = started_at(&container);
    let archive = ws.path().join("consistent.tar.zst");
    run_ok(
        &ws,
        &["--name", &dep, "backup", "logger", "-o", path_str(&archive)],
    );
    assert!(running(&container), "the service runs again");
    assert_ne!(
        started,
        started_at(&container),
        "it was stopped for the copy"
    );
    run_ok(
        &ws,
        &["restore", path_str(&archive), "--deployment", &check],
    );
    let copy = format!("{check}-logger-data");
    let counted = in_volume(&copy, "cat /v/counter; wc -l < /v/log");
    let text = String::from_utf8_lossy(&counted);
    let nums: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(nums.len(), 2, "{text}");
    assert_eq!(
        nums[0], nums[1],
        "counter and log agree in a consistent copy"
    );
    // And the service keeps writing after the backup.
    let after: u64 = String::from_utf8_lossy(&in_volume(&vol, "cat /v/counter"))
        .trim()
        .parse()
        .expect("counter");
    let mut now = after;
    while now <= after {
        std::thread::sleep(std::time::Duration::from_millis(200));
        now = String::from_utf8_lossy(&in_volume(&vol, "cat /v/counter"))
            .trim()
            .parse()
            .unwrap_or(after);
    }

    // Live: no stop; the copy still restores and holds the log.
    let started = started_at(&container);
    let live = ws.path().join("live.tar.zst");
    run_ok(
        &ws,
        &[
            "--name",
            &dep,
            "backup",
            "--all",
            "--live",
            "-o",
            path_str(&live),
        ],
    );
    assert_eq!(started, started_at(&container), "--live does not stop it");
    assert!(running(&container));
    run_ok(
        &ws,
        &[
            "restore",
            path_str(&live),
            "--deployment",
            &check,
            "--force",
        ],
    );
    let lines = in_volume(&copy, "grep -c '^line ' /v/log");
    let n: u64 = String::from_utf8_lossy(&lines)
        .trim()
        .parse()
        .expect("line count");
    assert!(
        n >= after,
        "the live copy has the log written so far ({n} < {after})"
    );
    assert_no_carriers(&dep);
}

/// At least 1 GB of mixed files (one 512 MiB random file, 4 MiB random
/// files, compressible text, 20 000 small files): backed up, restored into
/// another deployment, compared. Prints throughput next to a plain
/// `tar c` of the same volume through busybox. Slow, so ignored by default:
/// `cargo test --test testsuite data::large -- --ignored --nocapture`
#[test]
#[ignore = "writes and copies over 1 GB; run with --ignored"]
fn large_volume_round_trip() {
    let dep = support::unique_name("datalarge");
    let other = support::unique_name("datalarg2");
    let _clean = Cleanup::new(&dep);
    let _clean_other = Cleanup::new(&other);
    let ws = Workspace::new();
    let vol = make_volume(&dep, "big", "data");
    in_volume(
        &vol,
        r#"set -e; cd /v
head -c 536870912 /dev/urandom > big-random
mkdir rnd; i=0; while [ $i -lt 64 ]; do head -c 4194304 /dev/urandom > rnd/f$i; i=$((i+1)); done
mkdir text; i=0; while [ $i -lt 32 ]; do yes "line $i of some compressible text" | head -c 4194304 > text/t$i; i=$((i+1)); done
mkdir small; d=0; while [ $d -lt 100 ]; do mkdir small/d$d; f=0; while [ $f -lt 200 ]; do echo "file $d/$f" > small/d$d/f$f; f=$((f+1)); done; d=$((d+1)); done
"#,
    );
    let bytes: u64 = String::from_utf8_lossy(&in_volume(&vol, "du -sk /v | cut -f1"))
        .trim()
        .parse::<u64>()
        .expect("du")
        * 1024;
    assert!(bytes >= 1_000_000_000, "at least 1 GB: {bytes}");
    let container = start_instance(&dep, "big", &[(&vol, "/data")], IDLE);
    let before = listing(&vol);

    let t = std::time::Instant::now();
    let out = docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{vol}:/v"),
        support::base_image(),
        "sh",
        "-c",
        "tar c /v > /dev/null",
    ]);
    assert!(out.status.success());
    let plain = t.elapsed().as_secs_f64();

    let archive = ws.path().join("big.tar.zst");
    let t = std::time::Instant::now();
    run_ok(
        &ws,
        &[
            "--name",
            &dep,
            "backup",
            "--all",
            "--live",
            "-o",
            path_str(&archive),
        ],
    );
    let backup = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&archive).expect("archive").len();

    let t = std::time::Instant::now();
    run_ok(
        &ws,
        &["restore", path_str(&archive), "--deployment", &other],
    );
    let restore = t.elapsed().as_secs_f64();
    assert_same_tree(&before, &listing(&format!("{other}-big-data")));
    assert!(running(&container));
    let mb = bytes as f64 / 1e6;
    eprintln!(
        "large volume: {mb:.0} MB; plain tar c {plain:.1}s ({:.0} MB/s); berth backup --live {backup:.1}s ({:.0} MB/s, archive {:.0} MB); berth restore {restore:.1}s ({:.0} MB/s)",
        mb / plain,
        mb / backup,
        size as f64 / 1e6,
        mb / restore
    );
}

/// `data::snapshot::snapshot_instance` (what `apply` calls before it
/// recreates an instance for a new image) keeps the newest N, `berth
/// snapshots` lists them, and a snapshot restores like any backup.
#[test]
fn snapshots_of_an_instance_are_kept_listed_and_restorable() {
    let dep = support::unique_name("datasnap");
    let _clean = Cleanup::new(&dep);
    let ws = Workspace::new();
    let vol = make_volume(&dep, "app", "state");
    let container = start_instance(&dep, "app", &[(&vol, "/state")], IDLE);
    let state = berth::state::StateDir::new(ws.state_dir());
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let engine = rt
        .block_on(berth::engine::Engine::connect())
        .expect("engine");
    for revision in 1..=4u64 {
        in_volume(&vol, &format!("echo {revision} > /v/revision"));
        let snap = rt
            .block_on(berth::data::snapshot::snapshot_instance(
                &berth::data::instances::Site::Host(engine.clone()),
                &state,
                &dep,
                &container,
                revision,
                2,
            ))
            .expect("snapshot")
            .expect("the instance has volumes");
        assert_eq!(snap.revision, Some(revision));
        assert!(snap.path.is_file());
        assert!(
            running(&container),
            "running again after snapshot {revision}"
        );
    }
    assert_no_carriers(&dep);

    let out = run_ok(&ws, &["--name", &dep, "snapshots", "--output", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON listing");
    let list = list.as_array().expect("array");
    let revisions: Vec<u64> = list
        .iter()
        .map(|s| s["revision"].as_u64().expect("revision"))
        .collect();
    assert_eq!(revisions, vec![3, 4], "the newest two are kept");
    assert_eq!(list[1]["container"], container.as_str());
    assert_eq!(list[1]["manifest"]["deployment"], dep.as_str());

    // Restore revision 3's snapshot over the current content.
    let path = list[0]["path"].as_str().expect("path");
    run_ok(&ws, &["restore", path, "--force"]);
    assert_eq!(in_volume(&vol, "cat /v/revision"), b"3\n".to_vec());
    assert!(running(&container));
}

/// A full disk: the backup fails with the engine's reason, leaves no file
/// that looks like a backup, and the instance runs again.
#[test]
fn backup_to_a_full_disk_fails_cleanly() {
    let dep = support::unique_name("datafull");
    let _clean = Cleanup::new(&dep);
    let ws = Workspace::new();
    let vol = make_volume(&dep, "app", "data");
    in_volume(&vol, "head -c 4000000 /dev/urandom > /v/blob");
    let container = start_instance(&dep, "app", &[(&vol, "/data")], IDLE);
    let before = listing(&vol);

    // To stdout, which is /dev/full.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = std::process::Command::new(support::bin())
        .args(["--name", &dep, "backup", "--all", "-o", "-"])
        .env("BERTH_STATE_DIR", ws.state_dir())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(full)
        .output()
        .expect("run berth");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(running(&container), "started again after the failed backup");

    // To a file on a 1 MiB file system (needs root, as the whole suite does).
    let small = ws.path().join("small");
    std::fs::create_dir(&small).expect("mount point");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .status()
        .expect("run mount");
    assert!(mounted.success(), "mount a 1 MiB tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.clone());
    let target = small.join("b.tar.zst");
    let out = support::run(
        &ws,
        &["--name", &dep, "backup", "--all", "-o", path_str(&target)],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&small)
        .expect("read mount")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
    assert!(running(&container));
    assert_eq!(listing(&vol), before, "the volume is untouched");
    assert_no_carriers(&dep);
}

/// Restoring needs an image on this host to reach the volumes through; when
/// the backup's image is gone the restore says so and creates nothing.
#[test]
fn restore_without_the_image_fails_clearly_and_creates_nothing() {
    let dep = support::unique_name("datanoimg");
    let other = support::unique_name("datanoim2");
    let _clean = Cleanup::new(&dep);
    let _clean_other = Cleanup::new(&other);
    let ws = Workspace::new();
    // An image only this test uses: a commit of a container of the base image.
    let base = docker_ok(&["create", support::base_image(), "true"]);
    let image = format!("berth-test/data-gone:{dep}");
    docker_ok(&["commit", &base, &image]);
    docker_ok(&["rm", &base]);
    struct RemoveImage(String);
    impl Drop for RemoveImage {
        fn drop(&mut self) {
            let _ = docker(&["rmi", "-f", &self.0]);
        }
    }
    let _rmi = RemoveImage(image.clone());

    let vol = make_volume(&dep, "app", "data");
    in_volume(&vol, "echo precious > /v/file");
    let container = format!("{dep}-app");
    docker_ok(&[
        "create",
        "--name",
        &container,
        "--label",
        &format!("berth.deployment={dep}"),
        "--label",
        "berth.service=app",
        "--label",
        "berth.instance=1",
        "-v",
        &format!("{vol}:/data"),
        &image,
        "sh",
        "-c",
        IDLE,
    ]);
    let archive = ws.path().join("b.tar.zst");
    run_ok(
        &ws,
        &["--name", &dep, "backup", "app", "-o", path_str(&archive)],
    );

    docker_ok(&["rm", &container]);
    docker_ok(&["rmi", &image]);
    let out = support::run(
        &ws,
        &["restore", path_str(&archive), "--deployment", &other],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not on this host") && err.contains("nothing was restored"),
        "{err}"
    );
    assert!(
        support::volumes_of(&other).is_empty(),
        "no volume was created"
    );
    assert!(support::containers_of(&other).is_empty());
    assert_eq!(in_volume(&vol, "cat /v/file"), b"precious\n".to_vec());
}

/// An extraction the engine fails part-way after `--force` emptied the
/// volume: the previous content is put back exactly. Every entry is checked
/// before extraction, so the failure used is one only the kernel sees: a
/// file whose (recorded, allowed) file capability is malformed.
#[test]
fn failed_extraction_puts_the_previous_content_back() {
    use berth::data::entries::SpecialFiles;
    use berth::data::format::{
        ArchiveWriter, FORMAT, InstanceEntry, Manifest, VolumeEntry, hex, part_path,
    };
    use sha2::Digest;

    let dep = support::unique_name("datafail");
    let _clean = Cleanup::new(&dep);
    let ws = Workspace::new();
    let vol = make_volume(&dep, "app", "data");
    fill_tree(&vol);
    let container = start_instance(&dep, "app", &[(&vol, "/data")], IDLE);
    let before = listing(&vol);

    // Payload: a file, then a file with a capability the kernel refuses.
    let mut payload = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_path("berth-volume/").expect("path");
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_cksum();
    payload.append(&dir, &[][..]).expect("dir");
    let mut file = tar::Header::new_ustar();
    file.set_path("berth-volume/partial").expect("path");
    file.set_mode(0o644);
    file.set_size(7);
    file.set_cksum();
    payload.append(&file, &b"partial"[..]).expect("file");
    let record = b"42 SCHILY.xattr.security.capability=bogus\n";
    let mut pax = tar::Header::new_ustar();
    pax.set_path("PaxHeaders/broken").expect("path");
    pax.set_entry_type(tar::EntryType::XHeader);
    pax.set_mode(0o644);
    pax.set_size(record.len() as u64);
    pax.set_cksum();
    payload.append(&pax, &record[..]).expect("pax");
    let mut broken = tar::Header::new_ustar();
    broken.set_path("berth-volume/broken").expect("path");
    broken.set_mode(0o755);
    broken.set_size(0);
    broken.set_cksum();
    payload.append(&broken, &[][..]).expect("broken");
    let payload = payload.into_inner().expect("payload");

    let image = docker_ok(&["image", "inspect", "-f", "{{.Id}}", support::base_image()]);
    let manifest = Manifest {
        format: FORMAT.into(),
        berth_version: "test".into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        deployment: dep.clone(),
        consistent: true,
        spec: None,
        holds_secrets: false,
        instances: vec![InstanceEntry {
            service: "app".into(),
            instance: 1,
            container: container.clone(),
            image: Some(support::base_image().into()),
            image_id: Some(image),
            volumes: vec![VolumeEntry {
                name: vol.clone(),
                key: "data".into(),
                mount_path: Some("/data".into()),
                from_image: false,
                size: payload.len() as u64,
                sha256: hex(&sha2::Sha256::digest(&payload)),
                parts: 1,
                special_files: SpecialFiles {
                    capabilities: 1,
                    ..Default::default()
                },
            }],
        }],
    };
    let archive = ws.path().join("bad-payload.tar.zst");
    let file = std::fs::File::create(&archive).expect("create archive");
    let mut w = ArchiveWriter::new(file, &dep).expect("writer");
    w.member(&part_path(&vol, 0), &payload).expect("part");
    w.finish(&manifest).expect("finish");

    let out = support::run(
        &ws,
        &[
            "restore",
            path_str(&archive),
            "--force",
            "--allow-special-files",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("previous content was put back"), "{err}");
    assert_same_tree(&before, &listing(&vol));
    assert!(running(&container), "the instance runs again");
    assert_no_carriers(&dep);
}
