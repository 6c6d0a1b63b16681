//! Reading a file `egressd run` is given (the policy, the proxy credential, the inspection CA and
//! roots, brokered credentials' `value_file`s, the host's resolver configuration): regular files
//! only, opened without blocking.
//!
//! A FIFO nobody writes blocks `open(2)` for read (and then `read(2)`) for ever: the sidecar would
//! hang before its readiness line with no message. So the file is opened with `O_NONBLOCK` (a FIFO
//! then opens at once; a socket path fails) and refused unless what was opened is a regular file.
//! The check is on the open descriptor, not on the path, so a path swapped for a FIFO between a
//! check and the open cannot slip through. On a regular file `O_NONBLOCK` changes nothing.
//!
//! Not for `check`, `explain` and the firewall commands: they are run by hand and keep reading
//! whatever they are given (`egressd check <(...)` reads a pipe).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The text of the regular file at `path`. A FIFO, a directory, a device or a socket is an
/// `InvalidInput` error saying what it is; a file that is not UTF-8 is `InvalidData`.
pub fn read_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read(path)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// The bytes of the regular file at `path`; see [`read_to_string`].
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = open(path)?;
    let file_type = file.metadata()?.file_type();
    if !file_type.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file ({})", describe(file_type)),
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(unix)]
fn open(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
}

/// Without Unix FIFOs there is nothing an open could block on.
#[cfg(not(unix))]
fn open(path: &Path) -> io::Result<File> {
    File::open(path)
}

#[cfg(unix)]
fn describe(file_type: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

#[cfg(not(unix))]
fn describe(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "line\n").unwrap();
        assert_eq!(read_to_string(&path).unwrap(), "line\n");
    }

    #[test]
    fn a_directory_is_refused_saying_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let error = read(dir.path()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(error.to_string(), "not a regular file (a directory)");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_nobody_writes_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // Without O_NONBLOCK this call would never return.
        let error = read(&path).unwrap_err();
        assert_eq!(error.to_string(), "not a regular file (a FIFO)");
    }

    #[cfg(unix)]
    #[test]
    fn a_character_device_is_refused() {
        let error = read(Path::new("/dev/null")).unwrap_err();
        assert_eq!(error.to_string(), "not a regular file (a character device)");
    }
}
