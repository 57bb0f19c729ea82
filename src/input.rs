//! Opening the files berth takes as input: the deployment file, the `.env`
//! beside it, `env_file`s, the Docker client configuration, backup archives.
//! Any of them may name something that is not a file (`/dev/zero` reads
//! forever, a FIFO blocks forever, a directory is not text), so each is
//! opened without blocking, checked on the open handle (not by path, which
//! could change in between), and read only up to a cap.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Largest deployment file read (a real one is a few KiB).
pub const MAX_DEPLOYMENT_FILE: u64 = 8 << 20;
/// Largest `.env` or `env_file` read.
pub const MAX_ENV_FILE: u64 = 1 << 20;
/// Largest config or secret file read (`configs`/`secrets` `file`).
pub const MAX_FILE_CONTENT: u64 = 1 << 20;
/// Largest Docker client configuration (`config.json`) read.
pub const MAX_DOCKER_CONFIG: u64 = 4 << 20;

/// Why an input file was refused.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Not a regular file: a device, FIFO, socket or directory.
    #[error("`{}` is {kind}, not a regular file", .path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    /// Larger than its cap.
    #[error("`{}` is larger than {}", .path.display(), size(*.limit))]
    TooLarge { path: PathBuf, limit: u64 },
    /// It could not be opened or read.
    #[error("`{}`: {}", .path.display(), io_reason(.source))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl InputError {
    /// What is wrong, without the path (for messages that name the file
    /// their own way): "is a FIFO, not a regular file".
    pub fn reason(&self) -> String {
        match self {
            InputError::NotRegular { kind, .. } => format!("is {kind}, not a regular file"),
            InputError::TooLarge { limit, .. } => format!("is larger than {}", size(*limit)),
            InputError::Io { source, .. } => io_reason(source),
        }
    }

    /// The file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, InputError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    /// The file is there but is no input berth accepts (not a transient
    /// failure to read it).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, InputError::Io { .. })
    }
}

/// Whether anything is at `path` (a regular file or not, a symlink even if
/// dangling). Commands that fall back to the applied deployment when there
/// is no deployment file use this, not `is_file()`: a FIFO or device named
/// with `-f` is then refused by [`read_capped`], not silently passed over
/// for some other deployment.
pub fn present(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Open `path` for reading if it is a regular file. What decides is the
/// type of the open handle, so a path swapped after any check by path is
/// still caught; O_NONBLOCK keeps the open of a FIFO from waiting for a
/// writer, O_NOCTTY keeps a terminal from becoming berth's controlling
/// terminal. A look at the path first spares devices the open itself, which
/// can act (`/dev/watchdog` arms on open, a tape rewinds).
pub fn open_regular(path: &Path) -> Result<File, InputError> {
    if let Ok(m) = std::fs::metadata(path)
        && !m.is_file()
    {
        return Err(InputError::NotRegular {
            path: path.to_path_buf(),
            kind: describe(&m.file_type()),
        });
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|source| InputError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    regular(path, file)
}

/// `file` (opened from `path` without blocking) if it is a regular file,
/// switched back to blocking reads: a regular file never blocks anyway, but
/// the handle may be passed to code that expects an ordinary one.
fn regular(path: &Path, file: File) -> Result<File, InputError> {
    let io = |source| InputError::Io {
        path: path.to_path_buf(),
        source,
    };
    let kind = file.metadata().map_err(io)?.file_type();
    if !kind.is_file() {
        return Err(InputError::NotRegular {
            path: path.to_path_buf(),
            kind: describe(&kind),
        });
    }
    let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)
        .map_err(|e| io(std::io::Error::from(e)))?;
    let flags = nix::fcntl::OFlag::from_bits_retain(flags) - nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(flags))
        .map_err(|e| io(std::io::Error::from(e)))?;
    Ok(file)
}

/// The whole content of the regular file `path`, refused past `limit` bytes.
/// The size is checked on the handle first (a quick refusal of a big file)
/// and again while reading (`/proc` files report size 0; a file may grow).
pub fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, InputError> {
    let file = open_regular(path)?;
    let io = |source| InputError::Io {
        path: path.to_path_buf(),
        source,
    };
    let too_large = || InputError::TooLarge {
        path: path.to_path_buf(),
        limit,
    };
    let declared = file.metadata().map_err(io)?.len();
    if declared > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// An I/O error as an operator reads it: "no such file", "permission denied".
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            // Drop the "(os error N)" suffix: it means nothing to an operator.
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}

fn describe(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// A cap in the unit it was chosen in: "8 MiB", "512 KiB", "100 bytes".
pub fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.env");
        std::fs::write(&p, "A=1\n").unwrap();
        assert_eq!(read_capped(&p, 4).unwrap(), b"A=1\n");
    }

    #[test]
    fn files_over_the_cap_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.env");
        std::fs::write(&p, "A=12\n").unwrap();
        let e = read_capped(&p, 4).unwrap_err();
        assert!(e.is_refusal());
        assert_eq!(e.reason(), "is larger than 4 bytes");
        assert_eq!(size(MAX_ENV_FILE), "1 MiB");
        assert_eq!(size(MAX_DEPLOYMENT_FILE), "8 MiB");
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // No writer: a blocking open would never return.
        let e = read_capped(&fifo, MAX_ENV_FILE).unwrap_err();
        assert_eq!(e.reason(), "is a FIFO, not a regular file");
        let e = read_capped(Path::new("/dev/zero"), MAX_ENV_FILE).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`/dev/zero` is a character device, not a regular file"
        );
        let e = read_capped(dir.path(), MAX_ENV_FILE).unwrap_err();
        assert_eq!(e.reason(), "is a directory, not a regular file");
        let e = read_capped(&dir.path().join("nowhere"), MAX_ENV_FILE).unwrap_err();
        assert!(e.is_not_found() && !e.is_refusal());
        assert_eq!(e.reason(), "no such file");
    }

    /// The check by path is a courtesy; the handle decides. A FIFO that
    /// appears under the path after that check is still refused.
    #[test]
    fn the_open_handle_decides() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let handle = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let e = regular(&fifo, handle).unwrap_err();
        assert_eq!(e.reason(), "is a FIFO, not a regular file");
        let p = dir.path().join("x");
        std::fs::write(&p, "x").unwrap();
        let handle = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&p)
            .unwrap();
        let f = regular(&p, handle).unwrap();
        let flags = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert!(
            !nix::fcntl::OFlag::from_bits_retain(flags).contains(nix::fcntl::OFlag::O_NONBLOCK)
        );
    }

    #[test]
    fn opened_files_read_normally() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, "data").unwrap();
        let mut s = String::new();
        open_regular(&p).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "data");
    }
}
