//! Checking a volume's tar stream entry by entry before any of it reaches
//! the engine.
//!
//! The engine extracts a restored stream with Go's `archive/tar`, so the
//! stream is read here the way that reader reads it (which header wins, which
//! entries carry data, where the archive ends), and anything it could read
//! differently from this code, or that berth's own backups never hold, is
//! refused rather than interpreted. Accepted: directories, regular files,
//! symlinks and hard links, every path inside the volume (`berth-volume/...`,
//! no `..`, `.`, empty or over-long components), no entry below a symlink or
//! a non-directory of the archive, every path defined once, hard links only
//! to an earlier non-directory entry. Device nodes, FIFOs, setuid/setgid
//! files and file capabilities are counted as [`SpecialFiles`]: the caller
//! decides (see `restore --allow-special-files`).
//!
//! The checker is fed the stream in chunks of any size and keeps only one
//! header block, at most [`MAX_EXTENSION`] bytes of extended header, and a
//! 16-byte keyed hash plus a kind per path: sizes read from headers are
//! counted down, never allocated.
//!
//! Asked for ([`Scanner::with_listing`]), it also sums up what the stream
//! holds as a [`Contents`]: two streams of the same volume contents give the
//! same one whatever order the engine read the entries in and whichever
//! name of a hard-linked file came first (`berth move` compares the copy
//! with its source this way).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::archive::CARRIER_ROOT;

/// Largest extended header (PAX record set, GNU long name) accepted; Go's
/// reader has the same bound.
pub const MAX_EXTENSION: u64 = 1 << 20;
/// Longest path the engine can create under the carrier's mount.
const MAX_PATH: usize = 4095;
/// Longest path component (NAME_MAX).
const MAX_COMPONENT: usize = 255;

/// Entries the engine would create with more than ordinary privileges, by
/// kind. Recorded in the manifest at backup time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialFiles {
    /// Character and block devices.
    #[serde(default)]
    pub devices: u64,
    #[serde(default)]
    pub fifos: u64,
    /// Files (and hard links) with the setuid or setgid bit.
    #[serde(default)]
    pub setid: u64,
    /// Entries carrying file capabilities (`security.capability`).
    #[serde(default)]
    pub capabilities: u64,
}

impl SpecialFiles {
    pub fn is_empty(&self) -> bool {
        *self == SpecialFiles::default()
    }
}

impl std::fmt::Display for SpecialFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (n, what) in [
            (self.devices, "device node"),
            (self.fifos, "FIFO"),
            (self.setid, "setuid/setgid file"),
            (self.capabilities, "file with capabilities"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}{}", if n == 1 { "" } else { "s" }));
            }
        }
        if parts.is_empty() {
            write!(f, "none")
        } else {
            write!(f, "{}", parts.join(", "))
        }
    }
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    /// The entry's path as written (escaped, shortened), or `None` for a
    /// problem with the stream itself.
    pub entry: Option<String>,
    pub problem: String,
}

impl std::fmt::Display for EntryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.entry {
            Some(e) => write!(f, "entry {e}: {}", self.problem),
            None => write!(f, "{}", self.problem),
        }
    }
}

/// Whether paths are tracked (restore) or entries only classified (backup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Verify,
    Classify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    /// A parent the engine creates because an entry lies below it.
    ImplicitDir,
    Symlink,
    /// Anything else: a file, hard link, device or FIFO.
    Other,
}

/// Extended headers waiting for the entry they apply to.
#[derive(Debug, Default)]
struct Pending {
    pax: Option<Pax>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    capability: bool,
    /// Raw values, only read for a [`Contents`].
    uid: Option<Vec<u8>>,
    gid: Option<Vec<u8>>,
    mtime: Option<Vec<u8>>,
    capability_value: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    Pax,
    LongName,
    LongLink,
}

/// The checker; see the module documentation.
pub struct Scanner {
    mode: Mode,
    block: Vec<u8>,
    /// Data (and padding) of the current entry still to pass over.
    skip: u64,
    /// An extended header being read: its kind, bytes still to read, and
    /// the padding after it.
    ext: Option<(Ext, u64, u64)>,
    ext_data: Vec<u8>,
    pending: Pending,
    zero_blocks: u8,
    ended: bool,
    started: bool,
    paths: HashMap<u128, Kind>,
    keys: (RandomState, RandomState),
    special: SpecialFiles,
    first_special: Option<String>,
    entries: u64,
    listing: Option<Box<Listing>>,
}

/// What a volume's tar stream holds, summed up so that two streams of the
/// same contents compare equal: every path with its type, mode (setuid and
/// setgid bits included), owner, group, modification time (seconds),
/// device numbers, symlink target, file capabilities and content, and
/// which paths are hard links of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contents {
    /// Entries, the volume's root included.
    pub entries: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Hex sha256 over the sorted per-path records.
    pub digest: String,
}

/// A path's key in a [`Listing`]: sha256 of the path, cut to 16 bytes.
/// Unlike [`Scanner`]'s own keys these must be the same in two scanners.
type PathKey = [u8; 16];

/// [`Contents`] being made: per path, the digest of its record; the hard
/// links, resolved into groups only at the end, once every name is known.
#[derive(Default)]
struct Listing {
    records: HashMap<PathKey, [u8; 32]>,
    /// (link, target) of every hard link entry.
    links: Vec<(PathKey, PathKey)>,
    /// The regular file whose data is passing: its key, its record so far.
    current: Option<(PathKey, Sha256)>,
    /// Bytes of the current file's data still to hash (its padding follows).
    data_left: u64,
    bytes: u64,
}

fn path_key(path: &[u8]) -> PathKey {
    let d = Sha256::digest(path);
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

impl Listing {
    fn close_current(&mut self) {
        if let Some((key, h)) = self.current.take() {
            self.records.insert(key, h.finalize().into());
        }
    }

    fn summary(mut self, entries: u64) -> Contents {
        self.close_current();
        // Each hard link stands for its file: same record, and every name
        // of the file is marked with the group's smallest key, so that
        // which name the stream gave the data to does not matter.
        let mut target_of: HashMap<PathKey, PathKey> = HashMap::new();
        for &(link, target) in &self.links {
            target_of.insert(link, target);
        }
        let root = |mut k: PathKey| {
            // A link to a link (never written by the engine) is followed;
            // the scanner refused cycles, as every link names an earlier entry.
            for _ in 0..target_of.len() + 1 {
                match target_of.get(&k) {
                    Some(&t) if t != k => k = t,
                    _ => break,
                }
            }
            k
        };
        let mut group_min: HashMap<PathKey, PathKey> = HashMap::new();
        for &(link, _) in &self.links {
            let r = root(link);
            for member in [link, r] {
                let m = group_min.entry(r).or_insert(member);
                if member < *m {
                    *m = member;
                }
            }
        }
        let mut rows: Vec<(PathKey, [u8; 32], PathKey)> = Vec::with_capacity(self.records.len());
        for (&key, record) in &self.records {
            let r = root(key);
            let record = if r != key {
                self.records.get(&r).copied().unwrap_or(*record)
            } else {
                *record
            };
            let group = group_min.get(&r).copied().unwrap_or([0; 16]);
            rows.push((key, record, group));
        }
        rows.sort_unstable();
        let mut h = Sha256::new();
        for (key, record, group) in &rows {
            h.update(key);
            h.update(record);
            h.update(group);
        }
        Contents {
            entries,
            bytes: self.bytes,
            digest: super::format::hex(&h.finalize()),
        }
    }
}

/// A numeric header field, as [`numeric`] reads it (0 if malformed: the
/// header was checked before).
fn field(block: &[u8], range: std::ops::Range<usize>) -> i64 {
    numeric(&block[range]).unwrap_or(0)
}

/// A PAX decimal value's whole seconds or number, if given.
fn pax_number(v: &Option<Vec<u8>>) -> Option<i64> {
    let v = v.as_ref()?;
    let whole = v.split(|&c| c == b'.').next().unwrap_or(&[]);
    std::str::from_utf8(whole).ok()?.parse().ok()
}

fn err(entry: Option<&[u8]>, problem: impl Into<String>) -> EntryError {
    EntryError {
        entry: entry.map(show),
        problem: problem.into(),
    }
}

/// A path for messages: control characters and invalid UTF-8 escaped, at
/// most 200 characters.
pub fn show(path: &[u8]) -> String {
    let text = String::from_utf8_lossy(path);
    let mut out: String = text.chars().take(200).collect::<String>();
    if text.chars().count() > 200 {
        out.push_str("...");
    }
    format!("{out:?}")
}

/// Go's `parseString`: up to the first NUL.
fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// Go's `parseNumeric`: base-256 when the top bit is set, else octal with
/// spaces and NULs trimmed. `None` where Go fails the header.
fn numeric(b: &[u8]) -> Option<i64> {
    if b.first().is_some_and(|c| c & 0x80 != 0) {
        // Base-256, two's complement; berth takes non-negative values only.
        if b[0] == 0xff {
            return None;
        }
        let mut v: u64 = u64::from(b[0] & 0x7f);
        for &c in &b[1..] {
            if v >> 56 != 0 {
                return None;
            }
            v = (v << 8) | u64::from(c);
        }
        return i64::try_from(v).ok();
    }
    let s = std::str::from_utf8(b).ok()?;
    let s = s.trim_matches(|c| c == ' ' || c == '\0');
    if s.is_empty() {
        return Some(0);
    }
    if !s.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
        return None;
    }
    i64::from_str_radix(s, 8).ok()
}

fn checksum_ok(block: &[u8]) -> bool {
    let Some(stored) = numeric(&block[148..156]) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &c) in block.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += i64::from(c);
        signed += i64::from(c as i8);
    }
    stored == unsigned || stored == signed
}

/// Compressed streams the engine would unpack before reading the tar.
const COMPRESSED: &[&[u8]] = &[
    &[0x1f, 0x8b],
    b"BZh",
    &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00],
    &[0x28, 0xb5, 0x2f, 0xfd],
];

impl Scanner {
    pub fn new(mode: Mode) -> Self {
        Scanner {
            mode,
            block: Vec::with_capacity(512),
            skip: 0,
            ext: None,
            ext_data: Vec::new(),
            pending: Pending::default(),
            zero_blocks: 0,
            ended: false,
            started: false,
            paths: HashMap::new(),
            keys: (RandomState::new(), RandomState::new()),
            special: SpecialFiles::default(),
            first_special: None,
            entries: 0,
            listing: None,
        }
    }

    /// A scanner that also sums up the stream's [`Contents`]
    /// ([`Scanner::contents`]).
    pub fn with_listing(mode: Mode) -> Self {
        let mut s = Scanner::new(mode);
        s.listing = Some(Box::default());
        s
    }

    /// The end of the stream, for a scanner [`Scanner::with_listing`]: what
    /// it holds.
    pub fn contents(self) -> Result<Contents, EntryError> {
        let entries = self.entries;
        let mut scanner = self;
        let listing = scanner.listing.take();
        scanner.finish()?;
        Ok(listing.map(|l| l.summary(entries)).unwrap_or(Contents {
            entries,
            bytes: 0,
            digest: String::new(),
        }))
    }

    /// The next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), EntryError> {
        while !data.is_empty() {
            if self.ended {
                // Go's reader stops at the end marker; what follows is never read.
                return Ok(());
            }
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                if let Some(l) = self.listing.as_mut().filter(|l| l.data_left > 0) {
                    let m = usize::try_from(l.data_left).unwrap_or(usize::MAX).min(n);
                    if let Some((_, h)) = l.current.as_mut() {
                        h.update(&data[..m]);
                    }
                    l.data_left -= m as u64;
                    l.bytes += m as u64;
                }
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            if let Some((kind, left, pad)) = self.ext {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                self.ext_data.extend_from_slice(&data[..n]);
                data = &data[n..];
                let left = left - n as u64;
                if left == 0 {
                    self.ext = None;
                    self.skip = pad;
                    let ext = std::mem::take(&mut self.ext_data);
                    self.extension(kind, ext)?;
                } else {
                    self.ext = Some((kind, left, pad));
                }
                continue;
            }
            let n = (512 - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.block.len() == 512 {
                let block = std::mem::replace(&mut self.block, Vec::with_capacity(512));
                self.header(&block)?;
            }
        }
        Ok(())
    }

    /// The end of the stream: returns what special files it holds.
    pub fn finish(self) -> Result<SpecialFiles, EntryError> {
        let clean = self.block.is_empty()
            && self.skip == 0
            && self.ext.is_none()
            && self.pending.pax.is_none()
            && self.pending.long_name.is_none()
            && self.pending.long_link.is_none();
        if !self.ended && !clean {
            return Err(err(
                None,
                "the volume's tar stream ends in the middle of an entry",
            ));
        }
        Ok(self.special)
    }

    /// Special files seen so far, and the first of them.
    pub fn special(&self) -> (SpecialFiles, Option<&str>) {
        (self.special, self.first_special.as_deref())
    }

    fn header(&mut self, block: &[u8]) -> Result<(), EntryError> {
        if !self.started {
            self.started = true;
            if COMPRESSED.iter().any(|m| block.starts_with(m)) {
                return Err(err(
                    None,
                    "the volume's data is a compressed stream, not the tar stream berth writes",
                ));
            }
        }
        if block.iter().all(|&b| b == 0) {
            self.zero_blocks += 1;
            if self.zero_blocks == 2 {
                if self.pending.pax.is_some()
                    || self.pending.long_name.is_some()
                    || self.pending.long_link.is_some()
                {
                    return Err(err(None, "an extended header is followed by no entry"));
                }
                self.ended = true;
            }
            return Ok(());
        }
        if self.zero_blocks > 0 {
            return Err(err(None, "a zero block in the middle of the tar stream"));
        }
        let name_field = cstr(&block[0..100]);
        if !checksum_ok(block) {
            return Err(err(Some(name_field), "the header's checksum is wrong"));
        }
        let ustar = &block[257..263] == b"ustar\0";
        let gnu = &block[257..263] == b"ustar " && &block[263..265] == b" \0";
        if ustar && &block[508..512] == b"tar\0" {
            return Err(err(
                Some(name_field),
                "star-format headers are not supported",
            ));
        }
        if !ustar && !gnu {
            return Err(err(
                Some(name_field),
                "not a ustar, PAX or GNU tar header (old-style headers are not supported)",
            ));
        }
        // Every numeric field Go's reader parses: one it cannot parse fails
        // the engine's extraction half-way.
        // mode, uid, gid, size, mtime, devmajor, devminor; GNU headers add
        // atime and ctime.
        const FIELDS: [(usize, usize); 9] = [
            (100, 108),
            (108, 116),
            (116, 124),
            (124, 136),
            (136, 148),
            (329, 337),
            (337, 345),
            (345, 357),
            (357, 369),
        ];
        let fields = if gnu { &FIELDS[..] } else { &FIELDS[..7] };
        for &(a, b) in fields {
            if numeric(&block[a..b]).is_none_or(|v| v < 0) {
                return Err(err(Some(name_field), "a numeric header field is malformed"));
            }
        }
        let size = numeric(&block[124..136]).unwrap_or(0) as u64;
        let mode = numeric(&block[100..108]).unwrap_or(0);
        let typeflag = block[156];
        let pad = |n: u64| (512 - n % 512) % 512;
        match typeflag {
            b'x' | b'L' | b'K' => {
                let kind = match typeflag {
                    b'x' => Ext::Pax,
                    b'L' => Ext::LongName,
                    _ => Ext::LongLink,
                };
                let already = match kind {
                    Ext::Pax => self.pending.pax.is_some(),
                    Ext::LongName => self.pending.long_name.is_some(),
                    Ext::LongLink => self.pending.long_link.is_some(),
                };
                if already {
                    return Err(err(
                        Some(name_field),
                        "two extended headers of the same kind for one entry",
                    ));
                }
                if size > MAX_EXTENSION {
                    return Err(err(
                        Some(name_field),
                        format!(
                            "an extended header declares {size} bytes (at most {MAX_EXTENSION})"
                        ),
                    ));
                }
                if size == 0 {
                    return self.extension(kind, Vec::new());
                }
                self.ext = Some((kind, size, pad(size)));
                self.ext_data = Vec::with_capacity(size as usize);
                return Ok(());
            }
            b'g' => {
                return Err(err(
                    Some(name_field),
                    "global extended headers are not supported",
                ));
            }
            _ => {}
        }
        // The entry itself: its path and link as Go's reader resolves them.
        let pending = std::mem::take(&mut self.pending);
        let pax = pending.pax.unwrap_or_default();
        let mut name = cstr(&block[0..100]).to_vec();
        if ustar {
            let prefix = cstr(&block[345..500]);
            if !prefix.is_empty() {
                let mut full = prefix.to_vec();
                full.push(b'/');
                full.extend_from_slice(&name);
                name = full;
            }
        }
        if let Some(p) = pax.path {
            name = p;
        }
        if let Some(p) = pending.long_name {
            name = p;
        }
        let mut link = cstr(&block[157..257]).to_vec();
        if let Some(l) = pax.linkpath {
            link = l;
        }
        if let Some(l) = pending.long_link {
            link = l;
        }
        let size = pax.size.unwrap_or(size);
        // Go reads `\0` entries named with a trailing `/` as directories.
        let typeflag = match typeflag {
            b'\0' if name.ends_with(b"/") => b'5',
            b'\0' => b'0',
            t => t,
        };
        self.entries += 1;
        let setid = mode & 0o6000 != 0;
        let mut special = SpecialFiles::default();
        let (kind, data) = match typeflag {
            b'0' => {
                special.setid = u64::from(setid);
                (Kind::Other, size)
            }
            b'1' => {
                special.setid = u64::from(setid);
                (Kind::Other, 0)
            }
            b'2' => (Kind::Symlink, 0),
            b'3' | b'4' => {
                special.devices = 1;
                (Kind::Other, 0)
            }
            b'5' => (Kind::Dir, 0),
            b'6' => {
                special.fifos = 1;
                (Kind::Other, 0)
            }
            t => {
                return Err(err(
                    Some(&name),
                    format!("entry type {:?} is not supported", t as char),
                ));
            }
        };
        special.capabilities = u64::from(pax.capability);
        if !special.is_empty() {
            self.special.devices += special.devices;
            self.special.fifos += special.fifos;
            self.special.setid += special.setid;
            self.special.capabilities += special.capabilities;
            if self.first_special.is_none() {
                self.first_special = Some(format!("{} ({special})", show(&name)));
            }
        }
        if typeflag == b'2' && link.is_empty() {
            // The engine's symlink() fails on it half-way through.
            return Err(err(Some(&name), "a symlink to nothing"));
        }
        // Only regular files carry data in Go's reader, whatever the
        // header declares for the others.
        self.skip = data + pad(data);
        if self.mode == Mode::Verify {
            self.place(&name, kind, (typeflag == b'1').then_some(&link[..]))?;
        }
        if let Some(l) = self.listing.as_mut() {
            l.close_current();
            let path = name.strip_suffix(b"/").unwrap_or(&name);
            let key = path_key(path);
            if typeflag == b'1' {
                let target = link.strip_suffix(b"/").unwrap_or(&link);
                l.links.push((key, path_key(target)));
                // Its record is its file's (one inode); kept only so that
                // the path is listed.
                l.records.insert(key, [0; 32]);
                return Ok(());
            }
            let mut h = Sha256::new();
            let uid = pax_number(&pax.uid).unwrap_or_else(|| field(block, 108..116));
            let gid = pax_number(&pax.gid).unwrap_or_else(|| field(block, 116..124));
            let mtime = pax_number(&pax.mtime).unwrap_or_else(|| field(block, 136..148));
            h.update([typeflag]);
            for n in [mode, uid, gid, mtime] {
                h.update(n.to_le_bytes());
            }
            if matches!(typeflag, b'3' | b'4') {
                h.update(field(block, 329..337).to_le_bytes());
                h.update(field(block, 337..345).to_le_bytes());
            }
            if typeflag == b'2' {
                h.update(&link);
            }
            if let Some(cap) = &pax.capability_value {
                h.update(b"cap");
                h.update(cap);
            }
            h.update(b"\0");
            if typeflag == b'0' {
                h.update(size.to_le_bytes());
                l.current = Some((key, h));
                l.data_left = data;
            } else {
                l.records.insert(key, h.finalize().into());
            }
        }
        Ok(())
    }

    fn extension(&mut self, kind: Ext, data: Vec<u8>) -> Result<(), EntryError> {
        match kind {
            Ext::LongName => self.pending.long_name = Some(cstr(&data).to_vec()),
            Ext::LongLink => self.pending.long_link = Some(cstr(&data).to_vec()),
            Ext::Pax => self.pending.pax = Some(parse_pax(&data)?),
        }
        Ok(())
    }

    /// Keys of every prefix of `path` ending at a component (the volume
    /// root first, `path` itself last), with where each prefix ends; one
    /// pass over the path, so a deep path costs its length, not its square.
    fn keys(&self, path: &[u8]) -> Vec<(usize, u128)> {
        use std::hash::Hasher;
        let (mut a, mut b) = (self.keys.0.build_hasher(), self.keys.1.build_hasher());
        let mut out = Vec::new();
        let mut start = 0;
        for (i, part) in path.split(|&c| c == b'/').enumerate() {
            if i > 0 {
                a.write(b"/");
                b.write(b"/");
            }
            a.write(part);
            b.write(part);
            start += part.len() + usize::from(i > 0);
            out.push((
                start,
                (u128::from(a.clone().finish()) << 64) | u128::from(b.clone().finish()),
            ));
        }
        out
    }

    fn key(&self, path: &[u8]) -> u128 {
        self.keys(path).last().map(|k| k.1).unwrap_or_default()
    }

    /// Check where an entry goes and record it.
    fn place(&mut self, raw: &[u8], kind: Kind, link: Option<&[u8]>) -> Result<(), EntryError> {
        let path = clean_path(raw)?;
        let is_root = path.len() == CARRIER_ROOT.len();
        if is_root && kind != Kind::Dir {
            return Err(err(Some(raw), "the volume's root must be a directory"));
        }
        self.check_parents(raw, path)?;
        if let Some(target) = link {
            let t = clean_path(target)
                .map_err(|e| err(Some(raw), format!("its hard link target {}", e.problem)))?;
            self.check_parents(raw, t)?;
            match self.paths.get(&self.key(t)) {
                Some(Kind::Other) | Some(Kind::Symlink) => {}
                Some(_) => return Err(err(Some(raw), "a hard link to a directory")),
                None => {
                    return Err(err(
                        Some(raw),
                        format!(
                            "a hard link to {}, which is no earlier entry of the volume",
                            show(target)
                        ),
                    ));
                }
            }
        }
        let key = self.key(path);
        match (self.paths.get(&key), kind) {
            (None, _) => {}
            (Some(Kind::Dir | Kind::ImplicitDir), Kind::Dir) => {}
            (Some(_), _) => {
                return Err(err(
                    Some(raw),
                    "the path appears twice in the volume's stream",
                ));
            }
        }
        self.paths.insert(key, kind);
        Ok(())
    }

    /// Every parent must be a directory (or not yet defined: the engine
    /// creates it), never a symlink or a file.
    fn check_parents(&mut self, raw: &[u8], path: &[u8]) -> Result<(), EntryError> {
        let keys = self.keys(path);
        for &(end, key) in &keys[..keys.len().saturating_sub(1)] {
            let parent = &path[..end];
            match self.paths.get(&key) {
                None => {
                    self.paths.insert(key, Kind::ImplicitDir);
                }
                Some(Kind::Dir | Kind::ImplicitDir) => {}
                Some(Kind::Symlink) => {
                    return Err(err(
                        Some(raw),
                        format!("it lies below {}, a symlink of the archive", show(parent)),
                    ));
                }
                Some(Kind::Other) => {
                    return Err(err(
                        Some(raw),
                        format!("it lies below {}, which is not a directory", show(parent)),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The path without a trailing `/`, if it stays inside the volume.
fn clean_path(raw: &[u8]) -> Result<&[u8], EntryError> {
    let path = raw.strip_suffix(b"/").unwrap_or(raw);
    if raw.starts_with(b"/") {
        return Err(err(Some(raw), "an absolute path"));
    }
    if raw.len() > MAX_PATH {
        return Err(err(
            Some(raw),
            format!("a path longer than {MAX_PATH} bytes"),
        ));
    }
    let mut parts = path.split(|&c| c == b'/');
    if parts.next() != Some(CARRIER_ROOT.as_bytes()) {
        return Err(err(
            Some(raw),
            format!("a path outside the volume (every path starts with {CARRIER_ROOT}/)"),
        ));
    }
    for part in parts {
        match part {
            b".." => return Err(err(Some(raw), "a path with `..`")),
            b"." | b"" => return Err(err(Some(raw), "a path with an empty or `.` component")),
            p if p.len() > MAX_COMPONENT => {
                return Err(err(
                    Some(raw),
                    format!("a path component longer than {MAX_COMPONENT} bytes"),
                ));
            }
            _ => {}
        }
    }
    Ok(path)
}

fn decimal(v: &[u8], fraction: bool) -> bool {
    let v = v.strip_prefix(b"-").unwrap_or(v);
    let (int, frac) = match v.iter().position(|&c| c == b'.') {
        Some(i) if fraction => (&v[..i], Some(&v[i + 1..])),
        _ => (v, None),
    };
    !int.is_empty()
        && int.len() <= 18
        && int.iter().all(u8::is_ascii_digit)
        && frac.is_none_or(|f| f.iter().all(u8::is_ascii_digit))
}

/// PAX records (`<len> <key>=<value>\n`), only the keys Go's writer (and so
/// the engine's backups) uses.
fn parse_pax(mut data: &[u8]) -> Result<Pax, EntryError> {
    let bad = |what: &str| err(None, format!("malformed extended header ({what})"));
    let mut pax = Pax::default();
    let mut seen: Vec<Vec<u8>> = Vec::new();
    while !data.is_empty() {
        let sp = data
            .iter()
            .position(|&c| c == b' ')
            .ok_or_else(|| bad("no length"))?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .filter(|s| {
                !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) && !s.starts_with('0')
            })
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad length"))?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(bad("bad length"));
        }
        let record = &data[sp + 1..len - 1];
        data = &data[len..];
        let eq = record
            .iter()
            .position(|&c| c == b'=')
            .ok_or_else(|| bad("no `=`"))?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        if seen.iter().any(|k| k == key) {
            return Err(bad("a key appears twice"));
        }
        seen.push(key.to_vec());
        let ok = match key {
            b"path" | b"linkpath" | b"uname" | b"gname" => !value.contains(&0),
            b"size" | b"uid" | b"gid" => decimal(value, false) && !value.starts_with(b"-"),
            b"mtime" | b"atime" | b"ctime" => decimal(value, true),
            b"SCHILY.xattr.security.capability" => true,
            _ => {
                return Err(err(
                    None,
                    format!("extended header field {} is not supported", show(key)),
                ));
            }
        };
        if !ok {
            return Err(err(
                None,
                format!("extended header field {} is malformed", show(key)),
            ));
        }
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.linkpath = Some(value.to_vec()),
            b"size" => {
                pax.size = Some(
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .map(|v| v as u64)
                        .ok_or_else(|| bad("size"))?,
                )
            }
            b"SCHILY.xattr.security.capability" => {
                pax.capability = true;
                pax.capability_value = Some(value.to_vec());
            }
            b"uid" => pax.uid = Some(value.to_vec()),
            b"gid" => pax.gid = Some(value.to_vec()),
            b"mtime" => pax.mtime = Some(value.to_vec()),
            _ => {}
        }
    }
    Ok(pax)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ustar header block; `name` may be longer than 100 bytes (then a
    /// PAX header carrying it comes first).
    fn header(name: &[u8], typeflag: u8, size: u64, mode: u32, link: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut short = name;
        if name.len() > 100 {
            let rec = pax_record(b"path", name);
            out.extend(raw_header(
                b"PaxHeaders/x",
                b'x',
                rec.len() as u64,
                0o644,
                b"",
            ));
            out.extend(padded(&rec));
            short = &name[..100];
        }
        out.extend(raw_header(short, typeflag, size, mode, link));
        out
    }

    fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
        let body = key.len() + value.len() + 3;
        let mut len = body + body.to_string().len();
        if len.to_string().len() != body.to_string().len() {
            len += 1;
        }
        let mut r = format!("{len} ").into_bytes();
        r.extend_from_slice(key);
        r.push(b'=');
        r.extend_from_slice(value);
        r.push(b'\n');
        r
    }

    fn padded(data: &[u8]) -> Vec<u8> {
        let mut v = data.to_vec();
        v.resize(data.len().div_ceil(512) * 512, 0);
        v
    }

    fn raw_header(name: &[u8], typeflag: u8, size: u64, mode: u32, link: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[..name.len()].copy_from_slice(name);
        b[100..107].copy_from_slice(format!("{mode:07o}").as_bytes());
        b[108..115].copy_from_slice(b"0000000");
        b[116..123].copy_from_slice(b"0000000");
        if size < 1 << 33 {
            b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        } else {
            // Base-256, as Go writes sizes of 8 GiB and more.
            b[124] = 0x80;
            b[128..136].copy_from_slice(&size.to_be_bytes());
        }
        b[136..147].copy_from_slice(b"00000000000");
        b[156] = typeflag;
        b[157..157 + link.len()].copy_from_slice(link);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        b[148..156].copy_from_slice(b"        ");
        let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
        b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        b
    }

    enum E<'a> {
        Dir(&'a str),
        File(&'a str, &'a [u8]),
        Mode(&'a str, u32),
        Sym(&'a str, &'a str),
        Hard(&'a str, &'a str),
        Raw(u8, &'a str),
    }

    fn stream(entries: &[E]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in entries {
            match e {
                E::Dir(n) => out.extend(header(n.as_bytes(), b'5', 0, 0o755, b"")),
                E::File(n, d) => {
                    out.extend(header(n.as_bytes(), b'0', d.len() as u64, 0o644, b""));
                    out.extend(padded(d));
                }
                E::Mode(n, m) => out.extend(header(n.as_bytes(), b'0', 0, *m, b"")),
                E::Sym(n, t) => out.extend(header(n.as_bytes(), b'2', 0, 0o777, t.as_bytes())),
                E::Hard(n, t) => out.extend(header(n.as_bytes(), b'1', 0, 0o644, t.as_bytes())),
                E::Raw(t, n) => out.extend(header(n.as_bytes(), *t, 0, 0o644, b"")),
            }
        }
        out.extend([0u8; 1024]);
        out
    }

    fn contents(data: &[u8], chunk: usize) -> Contents {
        let mut s = Scanner::with_listing(Mode::Verify);
        for c in data.chunks(chunk) {
            s.feed(c).expect("accepted");
        }
        s.contents().expect("complete")
    }

    #[test]
    fn contents_ignore_entry_order_and_which_hard_link_comes_first() {
        let a = stream(&[
            E::Dir("berth-volume/"),
            E::File("berth-volume/x", b"same inode"),
            E::Dir("berth-volume/d/"),
            E::Hard("berth-volume/d/y", "berth-volume/x"),
            E::Sym("berth-volume/l", "x"),
            E::File("berth-volume/new\nline", b"odd"),
        ]);
        let b = stream(&[
            E::Dir("berth-volume/"),
            E::File("berth-volume/new\nline", b"odd"),
            E::Dir("berth-volume/d/"),
            E::File("berth-volume/d/y", b"same inode"),
            E::Sym("berth-volume/l", "x"),
            E::Hard("berth-volume/x", "berth-volume/d/y"),
        ]);
        let ca = contents(&a, 7);
        assert_eq!(ca, contents(&b, 512));
        assert_eq!((ca.entries, ca.bytes), (6, 13));
        // Each difference shows: content, a link that is a copy, a symlink's
        // target, a mode, a missing entry.
        for other in [
            vec![
                E::Dir("berth-volume/"),
                E::File("berth-volume/x", b"same inodE"),
                E::Dir("berth-volume/d/"),
                E::Hard("berth-volume/d/y", "berth-volume/x"),
                E::Sym("berth-volume/l", "x"),
                E::File("berth-volume/new\nline", b"odd"),
            ],
            vec![
                E::Dir("berth-volume/"),
                E::File("berth-volume/x", b"same inode"),
                E::Dir("berth-volume/d/"),
                E::File("berth-volume/d/y", b"same inode"),
                E::Sym("berth-volume/l", "x"),
                E::File("berth-volume/new\nline", b"odd"),
            ],
            vec![
                E::Dir("berth-volume/"),
                E::File("berth-volume/x", b"same inode"),
                E::Dir("berth-volume/d/"),
                E::Hard("berth-volume/d/y", "berth-volume/x"),
                E::Sym("berth-volume/l", "d"),
                E::File("berth-volume/new\nline", b"odd"),
            ],
            vec![
                E::Dir("berth-volume/"),
                E::File("berth-volume/x", b"same inode"),
                E::Dir("berth-volume/d/"),
                E::Hard("berth-volume/d/y", "berth-volume/x"),
                E::Sym("berth-volume/l", "x"),
                E::Mode("berth-volume/new\nline", 0o4644),
            ],
            vec![
                E::Dir("berth-volume/"),
                E::File("berth-volume/x", b"same inode"),
                E::Hard("berth-volume/d/y", "berth-volume/x"),
                E::Sym("berth-volume/l", "x"),
                E::File("berth-volume/new\nline", b"odd"),
            ],
        ] {
            assert_ne!(contents(&stream(&other), 512).digest, ca.digest);
        }
    }

    fn scan(data: &[u8], chunk: usize) -> Result<SpecialFiles, EntryError> {
        let mut s = Scanner::new(Mode::Verify);
        for c in data.chunks(chunk.max(1)) {
            s.feed(c)?;
        }
        s.finish()
    }

    #[test]
    fn ordinary_volumes_pass_in_any_chunking() {
        let long = format!("berth-volume/{}/f", "d".repeat(150));
        let data = stream(&[
            E::Dir("berth-volume/"),
            E::File("berth-volume/a", b"hello"),
            E::Dir("berth-volume/dir/"),
            E::File("berth-volume/dir/big", &[7u8; 3000]),
            E::Sym("berth-volume/link", "../../../etc/passwd"),
            E::Sym("berth-volume/abs", "/etc"),
            E::Hard("berth-volume/dir/h", "berth-volume/a"),
            E::Hard("berth-volume/hl", "berth-volume/link"),
            E::File(&long, b"x"),
            E::File("berth-volume/new\nline \u{1b}[31m", b""),
        ]);
        for chunk in [1, 7, 511, 512, 513, 4096, data.len()] {
            assert_eq!(
                scan(&data, chunk),
                Ok(SpecialFiles::default()),
                "chunk {chunk}"
            );
        }
        assert_eq!(scan(&[], 1), Ok(SpecialFiles::default()));
    }

    #[test]
    fn paths_outside_the_volume_are_refused() {
        for bad in [
            "berth-volume/../x",
            "berth-volume/a/../../x",
            "/etc/passwd",
            "etc/passwd",
            "berth-volumex/a",
            "berth-volume/./a",
            "berth-volume//a",
            "..",
        ] {
            let data = stream(&[E::Dir("berth-volume/"), E::File(bad, b"x")]);
            let e = scan(&data, 512).expect_err(bad);
            assert!(e.entry.is_some(), "{bad}: {e}");
        }
        let deep = format!("berth-volume/{}", "a/".repeat(2100));
        assert!(scan(&stream(&[E::File(&deep, b"")]), 512).is_err());
        let wide = format!("berth-volume/{}", "a".repeat(256));
        assert!(scan(&stream(&[E::File(&wide, b"")]), 512).is_err());
    }

    #[test]
    fn writes_through_symlinks_and_bad_links_are_refused() {
        let cases: Vec<(&str, Vec<E>)> = vec![
            (
                "file below a symlink",
                vec![
                    E::Sym("berth-volume/l", "/etc"),
                    E::File("berth-volume/l/passwd", b"x"),
                ],
            ),
            (
                "dir below a symlink",
                vec![E::Sym("berth-volume/l", "/"), E::Dir("berth-volume/l/etc/")],
            ),
            (
                "symlink replaces a directory",
                vec![E::Dir("berth-volume/d/"), E::Sym("berth-volume/d", "/etc")],
            ),
            (
                "symlink replaces an implicit directory",
                vec![
                    E::File("berth-volume/d/f", b""),
                    E::Sym("berth-volume/d", "/etc"),
                ],
            ),
            (
                "file twice",
                vec![
                    E::File("berth-volume/f", b""),
                    E::File("berth-volume/f", b""),
                ],
            ),
            (
                "below a file",
                vec![
                    E::File("berth-volume/f", b""),
                    E::File("berth-volume/f/g", b""),
                ],
            ),
            (
                "hard link out",
                vec![E::Hard("berth-volume/h", "etc/shadow")],
            ),
            (
                "hard link up",
                vec![E::Hard("berth-volume/h", "berth-volume/../x")],
            ),
            (
                "hard link absolute",
                vec![E::Hard("berth-volume/h", "/etc/shadow")],
            ),
            (
                "hard link forward",
                vec![
                    E::Hard("berth-volume/h", "berth-volume/later"),
                    E::File("berth-volume/later", b""),
                ],
            ),
            (
                "hard link to dir",
                vec![
                    E::Dir("berth-volume/d/"),
                    E::Hard("berth-volume/h", "berth-volume/d"),
                ],
            ),
            (
                "hard link through a symlink",
                vec![
                    E::Sym("berth-volume/l", "/etc"),
                    E::Hard("berth-volume/h", "berth-volume/l/shadow"),
                ],
            ),
            ("root is a symlink", vec![E::Sym("berth-volume", "/etc")]),
            ("empty symlink", vec![E::Sym("berth-volume/s", "")]),
            ("root is a file", vec![E::File("berth-volume", b"")]),
            ("unknown type", vec![E::Raw(b'S', "berth-volume/sparse")]),
            ("contiguous", vec![E::Raw(b'7', "berth-volume/c")]),
            ("global header", vec![E::Raw(b'g', "berth-volume/g")]),
        ];
        for (what, entries) in cases {
            let e = scan(&stream(&entries), 100).expect_err(what);
            assert!(!e.problem.is_empty(), "{what}");
        }
    }

    #[test]
    fn special_files_are_counted() {
        let data = stream(&[
            E::Dir("berth-volume/"),
            E::Raw(b'3', "berth-volume/null"),
            E::Raw(b'4', "berth-volume/sda"),
            E::Raw(b'6', "berth-volume/fifo"),
            E::Mode("berth-volume/suid", 0o4755),
            E::Mode("berth-volume/sgid", 0o2755),
            E::Mode("berth-volume/plain", 0o1777),
            E::Hard("berth-volume/x", "berth-volume/plain"),
        ]);
        let got = scan(&data, 512).unwrap();
        assert_eq!(
            got,
            SpecialFiles {
                devices: 2,
                fifos: 1,
                setid: 2,
                capabilities: 0
            }
        );
        // A hard link that sets the bits on an ordinary file counts too.
        let mut data = stream(&[E::Mode("berth-volume/plain", 0o755)]);
        data.truncate(data.len() - 1024);
        data.extend(header(
            b"berth-volume/h",
            b'1',
            0,
            0o4755,
            b"berth-volume/plain",
        ));
        data.extend([0u8; 1024]);
        assert_eq!(scan(&data, 512).unwrap().setid, 1);
        // File capabilities.
        let rec = pax_record(b"SCHILY.xattr.security.capability", b"\x01\x00\x00\x02");
        let mut data = raw_header(b"PaxHeaders/c", b'x', rec.len() as u64, 0o644, b"");
        data.extend(padded(&rec));
        data.extend(header(b"berth-volume/ping", b'0', 0, 0o755, b""));
        data.extend([0u8; 1024]);
        assert_eq!(scan(&data, 512).unwrap().capabilities, 1);
    }

    #[test]
    fn header_only_types_carry_no_data_whatever_they_declare() {
        // A symlink declaring 512 bytes: Go reads none, so the next block
        // is the next header (here one outside the volume, which must be
        // seen and refused, not skipped as data).
        let mut data = header(b"berth-volume/l", b'2', 512, 0o777, b"x");
        data.extend(header(b"etc/passwd", b'0', 0, 0o644, b""));
        data.extend([0u8; 1024]);
        let e = scan(&data, 512).unwrap_err();
        assert!(
            e.entry.as_deref().is_some_and(|p| p.contains("etc/passwd")),
            "{e}"
        );
    }

    #[test]
    fn headers_are_bounded_and_malformed_ones_refused() {
        // A header declaring a huge extended header: refused without reading it.
        let data = raw_header(b"x", b'x', 64 << 30, 0o644, b"");
        let e = scan(&data, 512).unwrap_err();
        assert!(e.problem.contains("extended header"), "{e}");
        // A file declaring 64 GiB with little data: counted, not allocated;
        // the stream then ends in the middle of the entry.
        let mut data = raw_header(b"berth-volume/big", b'0', 0o777_7777_7777, 0o644, b"");
        data.extend([0u8; 4096]);
        assert!(scan(&data, 512).is_err());
        // Bad checksum.
        let mut data = stream(&[E::File("berth-volume/f", b"x")]);
        data[0] ^= 1;
        assert!(scan(&data, 512).unwrap_err().problem.contains("checksum"));
        // Unknown PAX key, duplicate key, sparse.
        for rec in [
            pax_record(b"GNU.sparse.name", b"berth-volume/x"),
            [
                pax_record(b"path", b"berth-volume/a"),
                pax_record(b"path", b"etc/b"),
            ]
            .concat(),
            pax_record(b"SCHILY.xattr.user.x", b"1"),
            pax_record(b"size", b"-1"),
            b"5 a=b\n".to_vec(),
        ] {
            let mut data = raw_header(b"p", b'x', rec.len() as u64, 0o644, b"");
            data.extend(padded(&rec));
            data.extend(header(b"berth-volume/f", b'0', 0, 0o644, b""));
            data.extend([0u8; 1024]);
            assert!(
                scan(&data, 512).is_err(),
                "{:?}",
                String::from_utf8_lossy(&rec)
            );
        }
        // A PAX path takes precedence over the header name, as in Go.
        let rec = pax_record(b"path", b"etc/cron.d/x");
        let mut data = raw_header(b"p", b'x', rec.len() as u64, 0o644, b"");
        data.extend(padded(&rec));
        data.extend(header(b"berth-volume/innocent", b'0', 0, 0o644, b""));
        data.extend([0u8; 1024]);
        assert!(
            scan(&data, 512)
                .unwrap_err()
                .entry
                .unwrap()
                .contains("etc/cron.d")
        );
        // A compressed stream the engine would unpack first.
        let mut gz = vec![0x1f, 0x8b, 0x08];
        gz.resize(1024, 0);
        assert!(scan(&gz, 512).is_err());
        // A zero block then data.
        let mut data = vec![0u8; 512];
        data.extend(header(b"berth-volume/f", b'0', 0, 0o644, b""));
        assert!(scan(&data, 512).is_err());
        // Old-style (v7) headers.
        let mut data = stream(&[E::File("berth-volume/f", b"")]);
        data[257..265].copy_from_slice(&[0; 8]);
        let sum: u32 = data[..512]
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(c)
                }
            })
            .sum();
        data[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        assert!(scan(&data, 512).unwrap_err().problem.contains("ustar"));
    }

    #[test]
    fn classify_mode_counts_without_tracking_paths() {
        let data = stream(&[
            E::Raw(b'6', "berth-volume/f"),
            E::File("berth-volume/f", b""),
        ]);
        let mut s = Scanner::new(Mode::Classify);
        s.feed(&data).unwrap();
        assert_eq!(s.finish().unwrap().fifos, 1);
    }
}
