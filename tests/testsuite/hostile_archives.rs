//! Crafted backup archives against `berth restore` and `restore --apply`:
//! every refusal is exit 2 naming the archive, and nothing is created (no
//! volume or container of the deployment, no file in the workspace, which
//! holds the state and unit directories).
//!
//! The archives are built here, with the `tar`, `zstd` and `sha2` crates,
//! in berth's format (see `src/data/format.rs`): a marker member, each
//! volume's tar stream in parts, the manifest last. Each test first restores
//! a benign archive from the same builder, so that a refusal is known to
//! come from what the case changed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{self, Cleanup, Workspace, show};

/// A ustar header block for a volume's stream, written byte by byte so
/// that any name, type and size can be set (the `tar` crate refuses `..`).
fn raw_header(name: &[u8], typeflag: u8, size: u64, mode: u32, link: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    b[..name.len()].copy_from_slice(name);
    b[100..107].copy_from_slice(format!("{mode:07o}").as_bytes());
    b[108..115].copy_from_slice(b"0000000");
    b[116..123].copy_from_slice(b"0000000");
    if size < 1 << 33 {
        b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    } else {
        b[124] = 0x80;
        b[128..136].copy_from_slice(&size.to_be_bytes());
    }
    b[136..147].copy_from_slice(b"14000000000");
    b[156] = typeflag;
    b[157..157 + link.len()].copy_from_slice(link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[329..336].copy_from_slice(b"0000001");
    b[337..344].copy_from_slice(b"0000003");
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
    b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    b
}

/// One entry of a crafted volume stream.
#[derive(Clone, Copy)]
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Mode(&'a str, u32),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Type(u8, &'a str),
}

/// A PAX header carrying `path`, for names longer than the header's field.
fn pax_path(out: &mut Vec<u8>, path: &str) {
    let body = path.len() + " path=\n".len();
    let mut len = body + body.to_string().len();
    if len.to_string().len() != body.to_string().len() {
        len += 1;
    }
    let record = format!("{len} path={path}\n");
    out.extend(raw_header(
        b"PaxHeaders/long",
        b'x',
        record.len() as u64,
        0o644,
        b"",
    ));
    out.extend_from_slice(record.as_bytes());
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn volume_stream(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let name = match e {
            E::Dir(n) | E::File(n, _) | E::Mode(n, _) | E::Sym(n, _) | E::Hard(n, _) => n,
            E::Type(_, n) => n,
        };
        let e = &if name.len() > 100 {
            pax_path(&mut out, name);
            match e {
                E::File(_, d) => E::File(&name[..100], d),
                _ => panic!("long names only for files"),
            }
        } else {
            *e
        };
        match e {
            E::Dir(n) => out.extend(raw_header(n.as_bytes(), b'5', 0, 0o755, b"")),
            E::File(n, d) => {
                out.extend(raw_header(n.as_bytes(), b'0', d.len() as u64, 0o644, b""));
                out.extend_from_slice(d);
                out.resize(out.len().div_ceil(512) * 512, 0);
            }
            E::Mode(n, m) => out.extend(raw_header(n.as_bytes(), b'0', 0, *m, b"")),
            E::Sym(n, t) => out.extend(raw_header(n.as_bytes(), b'2', 0, 0o777, t.as_bytes())),
            E::Hard(n, t) => out.extend(raw_header(n.as_bytes(), b'1', 0, 0o644, t.as_bytes())),
            E::Type(t, n) => out.extend(raw_header(n.as_bytes(), *t, 0, 0o644, b"")),
        }
    }
    out.extend([0u8; 1024]);
    out
}

/// The entries every case starts with: a restore that wrote as it read
/// would have created the volume and written these before the bad entry.
const GOOD: &[E<'static>] = &[
    E::Dir("berth-volume/"),
    E::File("berth-volume/index.html", b"hello\n"),
    E::Dir("berth-volume/sub/"),
    E::Sym("berth-volume/link", "index.html"),
    E::Hard("berth-volume/sub/hard", "berth-volume/index.html"),
];

/// One member of the outer archive, as berth writes it (ustar, regular).
fn member(out: &mut Vec<u8>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).expect("member path");
    h.set_size(data.len() as u64);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// The deployment stored in the manifest (`backup --with-deployment`).
fn spec(dep: &str) -> Value {
    json!({
        "revision": 1,
        "applied_at": "2026-01-01T00:00:00Z",
        "integration": "docker",
        "deployment": {
            "name": dep,
            "services": {
                "app": {
                    "name": "app",
                    "image": support::base_image(),
                    "count": 1,
                    "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
                    "volumes": [{"source": {"named": "data"}, "target": "/data"}]
                }
            }
        }
    })
}

/// A manifest for one volume `<dep>-app-data` holding `stream`.
fn manifest(dep: &str, stream: &[u8]) -> Value {
    json!({
        "format": "berth-backup/1",
        "berth_version": "0.1.0",
        "created_at": "2026-01-01T00:00:00Z",
        "deployment": dep,
        "consistent": true,
        "instances": [{
            "service": "app",
            "instance": 1,
            "container": format!("{dep}-app"),
            "image": support::base_image(),
            "volumes": [{
                "name": format!("{dep}-app-data"),
                "key": "data",
                "mount_path": "/data",
                "from_image": false,
                "size": stream.len(),
                "sha256": hex(&Sha256::digest(stream)),
                "parts": 1
            }]
        }],
        "spec": spec(dep)
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The whole archive: marker, the volume's stream as one part, manifest.
fn archive(dep: &str, stream: &[u8], manifest: &Value) -> Vec<u8> {
    let mut tar = Vec::new();
    member(
        &mut tar,
        "berth-backup",
        format!("berth-backup/1\n{dep}\n").as_bytes(),
    );
    member(&mut tar, &format!("volumes/{dep}-app-data/000000"), stream);
    member(
        &mut tar,
        "manifest.json",
        &serde_json::to_vec_pretty(manifest).expect("manifest json"),
    );
    tar.extend([0u8; 1024]);
    zstd::encode_all(&tar[..], 3).expect("compress")
}

/// Every file and directory below the workspace (state and unit
/// directories included).
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            out.insert(p);
        }
    }
    out
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// Run berth and check the refusal: exit 2, the archive named, every
/// `needles` in stderr, and nothing created.
fn assert_refused(ws: &Workspace, dep: &str, file: &Path, args: &[&str], needles: &[&str]) {
    let before = tree(ws.path());
    let mut all = vec!["restore", path_str(file)];
    all.extend_from_slice(args);
    let out = support::run(ws, &all);
    check_refusal(&out, file, &all, needles);
    assert_eq!(
        tree(ws.path()),
        before,
        "{all:?}: no file may be written (state, units, anything)"
    );
    assert!(
        support::volumes_of(dep).is_empty(),
        "{all:?}: volumes were created: {:?}",
        support::volumes_of(dep)
    );
    assert!(
        support::containers_of(dep).is_empty(),
        "{all:?}: containers were created: {:?}",
        support::containers_of(dep)
    );
}

fn check_refusal(out: &Output, file: &Path, args: &[&str], needles: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(path_str(file)),
        "{args:?}: the message names the archive: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "{args:?}: expected {n:?} in: {err}");
    }
}

/// The benign archive from the same builder restores (and with --apply
/// brings the deployment up): the refusals below come from the cases.
fn assert_builder_is_sound(tag: &str) {
    let dep = support::unique_name(tag);
    let _clean = Cleanup::new(&dep);
    let ws = Workspace::new();
    let stream = volume_stream(GOOD);
    let file = ws.path().join("good.tar.zst");
    std::fs::write(&file, archive(&dep, &stream, &manifest(&dep, &stream))).expect("write");
    let out = support::run(&ws, &["restore", path_str(&file)]);
    assert!(out.status.success(), "benign archive: {}", show(&out));
    assert_eq!(support::volumes_of(&dep), vec![format!("{dep}-app-data")]);
    for c in support::volumes_of(&dep) {
        support::docker_ok(&["volume", "rm", &c]);
    }
    let out = support::run(&ws, &["restore", path_str(&file), "--apply"]);
    assert!(
        out.status.success(),
        "benign archive --apply: {}",
        show(&out)
    );
    assert_eq!(support::containers_of(&dep).len(), 1);
    let cat = support::docker_ok(&[
        "exec",
        &format!("{dep}-app"),
        "cat",
        "/data/index.html",
        "/data/link",
        "/data/sub/hard",
    ]);
    assert_eq!(cat, "hello\nhello\nhello");
}

#[test]
fn crafted_volume_entries_are_refused_before_anything_is_created() {
    assert_builder_is_sound("hostentok");
    let long_link = format!("berth-volume/{}", "x".repeat(300));
    let cases: Vec<(&str, Vec<E>, Vec<&str>)> = vec![
        (
            "dotdot",
            vec![E::File("berth-volume/../../../tmp/berth-escape", b"x")],
            vec!["`..`"],
        ),
        (
            "absolute",
            vec![E::File("/tmp/berth-escape", b"x")],
            vec!["absolute"],
        ),
        (
            "outside the volume",
            vec![E::File("etc/cron.d/berth", b"x")],
            vec!["outside the volume"],
        ),
        (
            "write through a symlink",
            vec![
                E::Sym("berth-volume/out", "/etc"),
                E::File("berth-volume/out/berth-escape", b"x"),
            ],
            vec!["symlink"],
        ),
        (
            "write through a symlink that replaced a directory",
            vec![
                E::Dir("berth-volume/d/"),
                E::Sym("berth-volume/d", "/etc"),
                E::File("berth-volume/d/x", b"x"),
            ],
            vec!["twice"],
        ),
        (
            "hard link out of the volume",
            vec![E::Hard("berth-volume/shadow", "etc/shadow")],
            vec!["hard link"],
        ),
        (
            "hard link to a later entry",
            vec![
                E::Hard("berth-volume/early", "berth-volume/late"),
                E::File("berth-volume/late", b""),
            ],
            vec!["no earlier entry"],
        ),
        (
            "hard link through a symlink",
            vec![E::Hard("berth-volume/h", "berth-volume/link/x")],
            vec!["symlink"],
        ),
        (
            "over-long name",
            vec![E::File(&long_link, b"")],
            vec!["longer than"],
        ),
        (
            "unsupported type",
            vec![E::Type(b'S', "berth-volume/sparse")],
            vec!["not supported"],
        ),
        (
            "device node",
            vec![E::Type(b'3', "berth-volume/null")],
            vec!["device node", "manifest records none"],
        ),
        (
            "fifo",
            vec![E::Type(b'6', "berth-volume/fifo")],
            vec!["FIFO", "manifest records none"],
        ),
        (
            "setuid file",
            vec![E::Mode("berth-volume/suid", 0o4755)],
            vec!["setuid", "manifest records none"],
        ),
    ];
    for (what, bad, needles) in cases {
        let dep = support::unique_name("hostent");
        let _clean = Cleanup::new(&dep);
        let ws = Workspace::new();
        let mut entries: Vec<E> = GOOD.to_vec();
        entries.extend(bad);
        let stream = volume_stream(&entries);
        let file = ws.path().join("crafted.tar.zst");
        std::fs::write(&file, archive(&dep, &stream, &manifest(&dep, &stream))).expect("write");
        let mut needles = needles.clone();
        let vol = format!("{dep}-app-data");
        needles.push(&vol);
        for args in [
            &[][..],
            &["--force"][..],
            &["--allow-special-files"][..],
            &["--apply"][..],
            &["--apply", "--allow-special-files", "--force"][..],
        ] {
            eprintln!("case {what}: restore {args:?}");
            assert_refused(&ws, &dep, &file, args, &needles);
        }
    }
    assert!(!Path::new("/tmp/berth-escape").exists());
}

#[test]
fn recorded_special_files_need_the_flag() {
    let dep = support::unique_name("hostspecial");
    let _clean = Cleanup::new(&dep);
    let ws = Workspace::new();
    let mut entries: Vec<E> = GOOD.to_vec();
    entries.push(E::Type(b'6', "berth-volume/fifo"));
    entries.push(E::Mode("berth-volume/suid", 0o4755));
    let stream = volume_stream(&entries);
    let mut m = manifest(&dep, &stream);
    m["instances"][0]["volumes"][0]["special_files"] = json!({"fifos": 1, "setid": 1});
    let file = ws.path().join("special.tar.zst");
    std::fs::write(&file, archive(&dep, &stream, &m)).expect("write");
    let vol = format!("{dep}-app-data");
    assert_refused(&ws, &dep, &file, &[], &["--allow-special-files", &vol]);
    assert_refused(
        &ws,
        &dep,
        &file,
        &["--apply"],
        &["--allow-special-files", &vol],
    );

    // Recorded as something else: refused even with the flag.
    let mut wrong = m.clone();
    wrong["instances"][0]["volumes"][0]["special_files"] = json!({"fifos": 1});
    let wrong_file = ws.path().join("wrong.tar.zst");
    std::fs::write(&wrong_file, archive(&dep, &stream, &wrong)).expect("write");
    assert_refused(
        &ws,
        &dep,
        &wrong_file,
        &["--allow-special-files"],
        &["manifest records 1 FIFO"],
    );

    let out = support::run(&ws, &["restore", path_str(&file), "--allow-special-files"]);
    assert!(out.status.success(), "{}", show(&out));
    let listing = support::docker_ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{vol}:/v"),
        support::base_image(),
        "sh",
        "-c",
        "test -p /v/fifo && stat -c %a /v/suid",
    ]);
    assert_eq!(listing, "4755");
}

#[test]
fn crafted_manifests_are_refused_before_anything_is_created() {
    assert_builder_is_sound("hostmanok");
    type Change = Box<dyn Fn(&mut Value, &str)>;
    let svc = |m: &mut Value, name: &str| {
        let services = &mut m["spec"]["deployment"]["services"];
        let mut app = services["app"].take();
        app["name"] = json!(name);
        *services = json!({ name: app });
        m["instances"][0]["service"] = json!(name);
    };
    // (what, change, refused without --apply too)
    let cases: Vec<(&str, Change, bool)> = vec![
        (
            "unit injection in a service name",
            Box::new(move |m, _| svc(m, "app\nExecStartPre=/bin/touch /tmp/berth-pwned")),
            true,
        ),
        (
            "state path escape in a service name",
            Box::new(move |m, _| svc(m, "../../../../tmp/berth-escape")),
            true,
        ),
        (
            "injection in the stored deployment only",
            Box::new(|m, _| {
                let services = &mut m["spec"]["deployment"]["services"];
                let mut other = services["app"].clone();
                other["name"] = json!("x\nExecStartPre=/bin/true");
                services["x\nExecStartPre=/bin/true"] = other;
            }),
            false,
        ),
        (
            "a relative bind mount",
            Box::new(|m, _| {
                m["spec"]["deployment"]["services"]["app"]["volumes"]
                    .as_array_mut()
                    .expect("volumes")
                    .push(json!({"source": {"bind": "../../etc"}, "target": "/host"}))
            }),
            false,
        ),
        (
            "a reserved label",
            Box::new(|m, _| {
                m["spec"]["deployment"]["services"]["app"]["labels"] =
                    json!({"berth.deployment": "someone-else"})
            }),
            false,
        ),
        (
            "a capability no file can name",
            Box::new(|m, _| {
                m["spec"]["deployment"]["services"]["app"]["cap_add"] = json!(["SYS ADMIN"])
            }),
            false,
        ),
        (
            "a volume path no file can write",
            Box::new(|m, _| {
                m["spec"]["deployment"]["services"]["app"]["volumes"][0]["target"] =
                    json!("/data:/etc")
            }),
            false,
        ),
        (
            "another deployment's name",
            Box::new(|m, _| m["spec"]["deployment"]["name"] = json!("someone-else")),
            false,
        ),
        (
            "an instance the deployment does not have",
            Box::new(|m, dep| {
                m["instances"][0]["instance"] = json!(2);
                m["instances"][0]["container"] = json!(format!("{dep}-app-2"));
            }),
            false,
        ),
        (
            "instance number 0",
            Box::new(|m, _| m["instances"][0]["instance"] = json!(0)),
            true,
        ),
        (
            "a duplicate instance",
            Box::new(|m, dep| {
                let mut again = m["instances"][0].clone();
                again["volumes"][0]["name"] = json!(format!("{dep}-app-other"));
                m["instances"]
                    .as_array_mut()
                    .expect("instances")
                    .push(again);
            }),
            true,
        ),
        (
            "a container name escaping the snapshots directory",
            Box::new(|m, _| m["instances"][0]["container"] = json!("../../../tmp/berth-escape")),
            true,
        ),
        (
            "a volume key with a path",
            Box::new(|m, _| m["instances"][0]["volumes"][0]["key"] = json!("../data")),
            true,
        ),
        (
            "a relative mount path",
            Box::new(|m, _| m["instances"][0]["volumes"][0]["mount_path"] = json!("data")),
            true,
        ),
        (
            "a deployment name with a slash",
            Box::new(|m, _| m["deployment"] = json!("a/b")),
            true,
        ),
    ];
    for (what, change, plain_too) in cases {
        let dep = support::unique_name("hostman");
        let _clean = Cleanup::new(&dep);
        let ws = Workspace::new();
        let stream = volume_stream(GOOD);
        let mut m = manifest(&dep, &stream);
        change(&mut m, &dep);
        let file = ws.path().join("crafted.tar.zst");
        std::fs::write(&file, archive(&dep, &stream, &m)).expect("write");
        eprintln!("case {what}");
        assert_refused(&ws, &dep, &file, &["--apply"], &[]);
        assert_refused(&ws, &dep, &file, &["--apply", "--force"], &[]);
        if plain_too {
            assert_refused(&ws, &dep, &file, &[], &["manifest"]);
        }
    }
    assert!(!Path::new("/tmp/berth-pwned").exists());
    assert!(!Path::new("/tmp/berth-escape").exists());
}

/// Run berth with its address space limited, so that an allocation driven
/// by a size read from the archive fails instead of succeeding quietly.
fn run_limited(ws: &Workspace, args: &[&str], bytes: u64) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(support::bin());
    cmd.args(args)
        .env("BERTH_STATE_DIR", ws.state_dir())
        .env("BERTH_UNIT_DIR", ws.unit_dir())
        .env("NO_COLOR", "1")
        .current_dir(ws.path())
        .stdin(std::process::Stdio::null());
    // SAFETY: only setrlimit (async-signal-safe) runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, bytes, bytes)
                .map_err(std::io::Error::from)
        });
    }
    cmd.output().expect("run berth")
}

#[test]
fn sizes_read_from_an_archive_are_bounded() {
    const LIMIT: u64 = 2 << 30;
    let dep = support::unique_name("hostbomb");
    let _clean = Cleanup::new(&dep);
    let ws = Workspace::new();

    // The builder's benign archive restores under the same limit.
    let stream = volume_stream(GOOD);
    let good = ws.path().join("good.tar.zst");
    std::fs::write(&good, archive(&dep, &stream, &manifest(&dep, &stream))).expect("write");
    let out = run_limited(&ws, &["restore", path_str(&good)], LIMIT);
    assert!(out.status.success(), "{}", show(&out));
    for v in support::volumes_of(&dep) {
        support::docker_ok(&["volume", "rm", &v]);
    }

    let mut head = Vec::new();
    member(
        &mut head,
        "berth-backup",
        format!("berth-backup/1\n{dep}\n").as_bytes(),
    );

    // A tiny archive declaring a 64 GiB part.
    let mut tiny = head.clone();
    let mut h = tar::Header::new_ustar();
    h.set_path(format!("volumes/{dep}-app-data/000000"))
        .expect("path");
    h.set_size(64 << 30);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tiny.extend_from_slice(h.as_bytes());
    let tiny_file = ws.path().join("tiny.tar.zst");
    std::fs::write(
        &tiny_file,
        zstd::encode_all(&tiny[..], 3).expect("compress"),
    )
    .expect("write");

    // 4 GiB of zeros behind a part header that declares them: a few KiB
    // of concatenated zstd frames.
    let mut bomb_head = head.clone();
    h.set_size(4 << 30);
    h.set_cksum();
    bomb_head.extend_from_slice(h.as_bytes());
    let mut bomb = zstd::encode_all(&bomb_head[..], 3).expect("compress");
    let zeros = zstd::encode_all(&vec![0u8; 16 << 20][..], 3).expect("compress");
    for _ in 0..256 {
        bomb.extend_from_slice(&zeros);
    }
    let bomb_file = ws.path().join("zeros.tar.zst");
    std::fs::write(&bomb_file, &bomb).expect("write");

    // A manifest declaring 1 GiB.
    let mut big_manifest = head.clone();
    let mut h = tar::Header::new_ustar();
    h.set_path("manifest.json").expect("path");
    h.set_size(1 << 30);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    big_manifest.extend_from_slice(h.as_bytes());
    let manifest_file = ws.path().join("manifest.tar.zst");
    std::fs::write(
        &manifest_file,
        zstd::encode_all(&big_manifest[..], 3).expect("compress"),
    )
    .expect("write");

    for (file, needle) in [
        (&tiny_file, "declares"),
        (&bomb_file, "declares"),
        (&manifest_file, "manifest declares"),
    ] {
        for args in [&[][..], &["--apply"][..]] {
            let before = tree(ws.path());
            let mut all = vec!["restore", path_str(file)];
            all.extend_from_slice(args);
            let out = run_limited(&ws, &all, LIMIT);
            check_refusal(&out, file, &all, &[needle]);
            assert_eq!(tree(ws.path()), before);
            assert!(support::volumes_of(&dep).is_empty());
        }
    }
}
