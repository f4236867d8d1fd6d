//! A directory used only through the handle opened (and checked) once: every file is
//! created, opened, renamed, removed and listed relative to that handle (`openat`,
//! `renameat`, `unlinkat`, `fstatat`, `fdopendir`), so replacing the directory's path
//! afterwards (by a symlink to somewhere else) changes nothing for us. Names are single
//! path components; no call follows a symlink, and files are opened only if they are
//! regular files.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::Path;

/// An entry of a listed directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirEntry {
    pub name: String,
    /// A regular file (not a symlink, FIFO, socket, device or directory).
    pub is_file: bool,
}

/// An open directory. Dropping it closes the handle.
#[derive(Debug)]
pub(crate) struct DirHandle {
    file: File,
}

fn c_name(name: &str) -> io::Result<CString> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not a file name")));
    }
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file name holds a NUL byte"))
}

/// The result of a libc call that returns -1 and sets errno on failure.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn not_a_regular_file(name: &str) -> io::Error {
    io::Error::other(format!("{name} is not a regular file"))
}

impl DirHandle {
    /// Opens `path`, refusing a symlink in its last component (`ELOOP`) or a non-directory
    /// (`ENOTDIR`).
    pub(crate) fn open(path: &Path) -> io::Result<DirHandle> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        Ok(DirHandle { file })
    }

    /// The directory's own metadata (`fstat` of the handle).
    pub(crate) fn metadata(&self) -> io::Result<std::fs::Metadata> {
        self.file.metadata()
    }

    /// `fchmod` of the directory itself.
    pub(crate) fn set_mode(&self, mode: libc::mode_t) -> io::Result<()> {
        // SAFETY: a valid open descriptor.
        check(unsafe { libc::fchmod(self.fd(), mode) }).map(|_| ())
    }

    /// fsync of the directory (makes renames and removals in it durable).
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Opens `name` with `flags` (plus `O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK`: no symlink is
    /// followed and a FIFO cannot hang the open) and `mode` for a file it creates. Fails
    /// unless the result is a regular file.
    pub(crate) fn open_file(&self, name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<File> {
        let c = c_name(name)?;
        let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
        // SAFETY: a valid descriptor and NUL-terminated name; the mode is passed as the
        // variadic argument openat expects.
        let fd = check(unsafe { libc::openat(self.fd(), c.as_ptr(), flags, libc::c_uint::from(mode)) })?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        if !file.metadata()?.is_file() {
            return Err(not_a_regular_file(name));
        }
        Ok(file)
    }

    /// Renames `from` to `to`, both in this directory. A symlink is renamed, not followed.
    pub(crate) fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        // SAFETY: valid descriptors and NUL-terminated names.
        check(unsafe { libc::renameat(self.fd(), from.as_ptr(), self.fd(), to.as_ptr()) }).map(|_| ())
    }

    /// Removes `name` (not a directory). A symlink is removed, not followed.
    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        let c = c_name(name)?;
        // SAFETY: a valid descriptor and NUL-terminated name.
        check(unsafe { libc::unlinkat(self.fd(), c.as_ptr(), 0) }).map(|_| ())
    }

    /// The size of `name` if it is a regular file; `None` for anything else. Does not
    /// follow a symlink.
    pub(crate) fn file_len(&self, name: &str) -> io::Result<Option<u64>> {
        let c = c_name(name)?;
        // SAFETY: all-zero is a valid `stat`; fstatat fills it in.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor, NUL-terminated name and a writable `stat`.
        check(unsafe { libc::fstatat(self.fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
        Ok((st.st_mode & libc::S_IFMT == libc::S_IFREG).then_some(st.st_size as u64))
    }

    /// The entries of the directory (not `.` and `..`; names that are not UTF-8 are not
    /// ours and are left out).
    pub(crate) fn list(&self) -> io::Result<Vec<DirEntry>> {
        // A new open of the same directory (`.` relative to the handle, not the path):
        // fdopendir takes it over, and its read position is its own.
        // SAFETY: a valid descriptor and a NUL-terminated name.
        let fd = check(unsafe {
            libc::openat(
                self.fd(),
                c".".as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })?;
        let stream = DirStream::new(fd)?;
        let mut entries = Vec::new();
        while let Some((name, d_type)) = stream.next()? {
            let Ok(name) = name.into_string() else { continue };
            if name == "." || name == ".." {
                continue;
            }
            let is_file = match d_type {
                libc::DT_REG => true,
                // Some file systems do not say: ask, without following a symlink.
                libc::DT_UNKNOWN => matches!(self.file_len(&name), Ok(Some(_))),
                _ => false,
            };
            entries.push(DirEntry { name, is_file });
        }
        Ok(entries)
    }
}

/// A `DIR*` stream, closed on drop.
struct DirStream(*mut libc::DIR);

impl DirStream {
    /// Takes over `fd` (closed on failure too).
    fn new(fd: RawFd) -> io::Result<DirStream> {
        // SAFETY: `fd` is an open directory descriptor that we own.
        let stream = unsafe { libc::fdopendir(fd) };
        if stream.is_null() {
            let err = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so `fd` is still ours to close.
            unsafe { libc::close(fd) };
            return Err(err);
        }
        Ok(DirStream(stream))
    }

    /// The next entry's name and `d_type`, or `None` at the end.
    fn next(&self) -> io::Result<Option<(std::ffi::OsString, u8)>> {
        use std::os::unix::ffi::OsStrExt;
        // readdir returns NULL both at the end and on error; errno tells them apart.
        // SAFETY: errno is thread-local.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: a valid, open stream used by this thread only.
        let entry = unsafe { libc::readdir(self.0) };
        if entry.is_null() {
            let err = io::Error::last_os_error();
            return if err.raw_os_error() == Some(0) { Ok(None) } else { Err(err) };
        }
        // SAFETY: readdir returned a valid entry, alive until the next call on this stream.
        let (name, d_type) = unsafe { (CStr::from_ptr((*entry).d_name.as_ptr()), (*entry).d_type) };
        Ok(Some((std::ffi::OsStr::from_bytes(name.to_bytes()).to_owned(), d_type)))
    }
}

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: the stream is open and closed only here.
        unsafe { libc::closedir(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn everything_goes_through_the_handle() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        fs::create_dir(&real).unwrap();
        let dir = DirHandle::open(&real).unwrap();
        let other = root.path().join("other");
        fs::create_dir(&other).unwrap();
        // The path now names another directory; the handle still names the first.
        fs::rename(&real, root.path().join("moved")).unwrap();
        symlink(&other, &real).unwrap();

        let mut file = dir.open_file("a", libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600).unwrap();
        io::Write::write_all(&mut file, b"x").unwrap();
        dir.rename("a", "b").unwrap();
        assert_eq!(dir.file_len("b").unwrap(), Some(1));
        assert_eq!(dir.list().unwrap(), [DirEntry { name: "b".into(), is_file: true }]);
        assert_eq!(fs::read(root.path().join("moved/b")).unwrap(), b"x");
        assert_eq!(fs::read_dir(&other).unwrap().count(), 0, "nothing reached the symlink's target");
        dir.remove("b").unwrap();
        assert!(dir.list().unwrap().is_empty());
    }

    #[test]
    fn never_follows_or_opens_what_is_not_a_regular_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = DirHandle::open(root.path()).unwrap();
        fs::write(root.path().join("target"), b"secret").unwrap();
        symlink(root.path().join("target"), root.path().join("link")).unwrap();
        fs::create_dir(root.path().join("sub")).unwrap();
        let fifo = CString::new(root.path().join("fifo").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);

        for name in ["link", "sub", "fifo"] {
            assert!(dir.open_file(name, libc::O_RDONLY, 0).is_err(), "{name}");
            assert!(dir.open_file(name, libc::O_WRONLY | libc::O_APPEND, 0).is_err(), "{name}");
            assert_eq!(dir.file_len(name).unwrap(), None, "{name}");
        }
        let mut listed = dir.list().unwrap();
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        let kinds: Vec<(&str, bool)> = listed.iter().map(|e| (e.name.as_str(), e.is_file)).collect();
        assert_eq!(kinds, [("fifo", false), ("link", false), ("sub", false), ("target", true)]);
        dir.remove("link").unwrap();
        assert_eq!(fs::read(root.path().join("target")).unwrap(), b"secret", "the link went, not its target");
        for bad in ["", ".", "..", "a/b", "../target", "nul\0"] {
            assert_eq!(dir.open_file(bad, libc::O_RDONLY, 0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        }
    }
}
