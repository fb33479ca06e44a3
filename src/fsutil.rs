//! Atomic file writes: every output is written to a temporary sibling and renamed into place, so
//! a killed process never leaves a half-written file under its final name.
//!
//! [`Durability::Synced`] also fsyncs before the rename (for files that mark work as done, like
//! `_complete`, where a power loss must not leave a marker without its data);
//! [`Durability::Renamed`] skips the fsync, for derived outputs that any rerun regenerates.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A number no other write of this process uses, for temporary names: two threads writing the
/// same target must not share a temporary file.
fn next_serial() -> u64 {
    static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The temporary sibling used while `path` is being written (`.name.tmp-<pid>-<serial>`, unique
/// per write of the process).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".to_string());
    path.with_file_name(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        next_serial()
    ))
}

/// How far a write must reach before it is renamed into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the data, then rename: survives a power loss.
    Synced,
    /// rename only: survives a killed process (the page cache keeps the data).
    Renamed,
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Writes `bytes` to `path` atomically, fsyncing only for [`Durability::Synced`].
pub fn write_atomic_as(path: &Path, durability: Durability, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with_as(path, durability, |w| w.write_all(bytes))
}

/// Calls `fill` with a buffered writer on a temporary sibling of `path`, then syncs and renames
/// it into place. On error the temporary file is removed and `path` is left untouched.
pub fn write_atomic_with<F>(path: &Path, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    write_atomic_with_as(path, Durability::Synced, fill)
}

/// [`write_atomic_with`] with a choice of [`Durability`].
pub fn write_atomic_with_as<F>(path: &Path, durability: Durability, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            fs::create_dir_all(parent)?;
        }
    }
    let tmp = TempFile::for_target(path);
    let mut w = BufWriter::with_capacity(1 << 20, File::create(tmp.path())?);
    fill(&mut w)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    if durability == Durability::Synced {
        file.sync_all()?;
    }
    drop(file);
    tmp.persist(path)
}

/// The environment variable of the crash-consistency tests (`tests/reliability.rs`): with
/// `DRIVEKIT_TEST_ABORT_AFTER_WRITES=N` the process aborts (as SIGKILL would stop it) right after
/// its N-th atomic write lands, so a test can stop a binary at every write point in turn.
pub const ABORT_AFTER_WRITES_ENV: &str = "DRIVEKIT_TEST_ABORT_AFTER_WRITES";

/// Counts an atomic write that landed; aborts at the one [`ABORT_AFTER_WRITES_ENV`] names.
fn write_point() {
    static LIMIT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    static DONE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let limit = LIMIT.get_or_init(|| {
        std::env::var(ABORT_AFTER_WRITES_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(n) = limit {
        if DONE.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == *n {
            std::process::abort();
        }
    }
}

/// A temporary file that is removed when dropped, unless [`persist`](TempFile::persist) renamed
/// it into place first: an early return never leaves `.name.tmp-<pid>-<serial>` files behind.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    /// Guards the temporary sibling of `target` (see [`temp_path`]).
    pub fn for_target(target: &Path) -> TempFile {
        TempFile {
            path: temp_path(target),
            armed: true,
        }
    }

    /// Guards an explicitly chosen temporary path.
    pub fn at(path: PathBuf) -> TempFile {
        TempFile { path, armed: true }
    }

    /// Guards a temporary sibling of `target` whose name ends like the target's (`.tmp-PID-NAME`),
    /// for writers that pick the format from the extension (the bitmap backend's PNG).
    pub fn keeping_extension(target: &Path) -> TempFile {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        TempFile::at(target.with_file_name(format!(
            ".tmp-{}-{}-{name}",
            std::process::id(),
            next_serial()
        )))
    }

    /// The temporary path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the temporary file to `target`.
    pub fn persist(mut self, target: &Path) -> io::Result<()> {
        fs::rename(&self.path, target)?;
        self.armed = false;
        write_point();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"old").unwrap();
        let err = write_atomic_with(&p, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("boom"))
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file removed"
        );
    }

    #[test]
    fn temp_file_is_removed_unless_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let t = TempFile::for_target(&target);
        fs::write(t.path(), b"x").unwrap();
        drop(t);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let t = TempFile::for_target(&target);
        fs::write(t.path(), b"y").unwrap();
        t.persist(&target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"y");
    }
}

/// Whether process `pid` is alive on this host (`kill(pid, 0)`; a process of another user counts
/// as alive).
pub fn pid_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: signal 0 only checks that the process exists; nothing is sent.
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// The pid in a temporary name: `.name.tmp-<pid>-<serial>` ([`temp_path`]) or `.name.tmp-<pid>`
/// (temporary folders, e.g. aggregate's `.videos.tmp-<pid>`).
fn temp_owner(name: &str) -> Option<u32> {
    name.starts_with('.').then_some(())?;
    if let Some(rest) = name.strip_prefix(".tmp-") {
        // TempFile::keeping_extension: `.tmp-<pid>-<serial>-<name>`.
        let mut it = rest.splitn(3, '-');
        let pid = it.next()?.parse().ok()?;
        it.next()?.parse::<u64>().ok()?;
        return Some(pid);
    }
    let (_, rest) = name.rsplit_once(".tmp-")?;
    let (pid, serial) = rest.split_once('-').unwrap_or((rest, "0"));
    serial.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Removes from `dir` (not recursively) the temporary files and folders left by writers that no
/// longer run (a killed job): those named by [`temp_path`] whose pid is dead. Returns how many.
pub fn remove_stale_temps(dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_owner(&name) else {
            continue;
        };
        if pid == std::process::id() || pid_alive(pid) {
            continue;
        }
        let p = e.path();
        let removed = if p.is_dir() && !p.is_symlink() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        n += usize::from(removed.is_ok());
    }
    n
}

/// An exclusive claim on some work (a shard of a run dir), held while the value lives: a file
/// holding the owner's pid and host, created exclusively. A claim left by a dead process on this
/// host is taken over.
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
}

/// Why a claim could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another live process holds it.
    #[error("{path}: already claimed by pid {pid} on {host} (another process is writing the same shard; wait for it, or remove the file if that process is gone)")]
    Held {
        /// the claim file
        path: PathBuf,
        /// the owner's pid
        pid: u32,
        /// the owner's host
        host: String,
    },
    /// The claim file cannot be written.
    #[error("{path}: {source}")]
    Io {
        /// the claim file
        path: PathBuf,
        /// the cause
        source: io::Error,
    },
}

/// This machine's host name (empty when it cannot be read).
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

impl Claim {
    /// Claims `path` for this process.
    pub fn take(path: &Path) -> Result<Claim, ClaimError> {
        let io_err = |e| ClaimError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        let me = format!("{} {}\n", std::process::id(), hostname());
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut f) => {
                    f.write_all(me.as_bytes()).map_err(io_err)?;
                    return Ok(Claim {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let text = fs::read_to_string(path).unwrap_or_default();
                    let mut it = text.split_whitespace();
                    let pid: u32 = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                    let host = it.next().unwrap_or_default().to_string();
                    let stale = pid == 0 || (host == hostname() && !pid_alive(pid));
                    if !stale {
                        return Err(ClaimError::Held {
                            path: path.to_path_buf(),
                            pid,
                            host,
                        });
                    }
                    // Left by a dead process: take it over (once; a race loses cleanly).
                    let _ = fs::remove_file(path);
                }
                Err(e) => return Err(io_err(e)),
            }
        }
        Err(ClaimError::Held {
            path: path.to_path_buf(),
            pid: 0,
            host: "another process (taken over concurrently)".into(),
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod claim_tests {
    use super::*;

    #[test]
    fn claims_are_exclusive_and_stale_ones_are_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".lock");
        let c = Claim::take(&p).unwrap();
        assert!(matches!(Claim::take(&p), Err(ClaimError::Held { .. })));
        drop(c);
        assert!(!p.exists());
        // A dead owner on this host: taken over.
        fs::write(&p, format!("{} {}\n", 999_999_999, hostname())).unwrap();
        let c = Claim::take(&p).unwrap();
        assert!(fs::read_to_string(&p)
            .unwrap()
            .starts_with(&std::process::id().to_string()));
        drop(c);
        // Stale temporary files of dead writers go; live ones stay.
        let dead = d.path().join(format!(".x.parquet.tmp-{}-0", 999_999_999));
        let dead_dir = d.path().join(".videos.tmp-999999999");
        fs::create_dir_all(dead_dir.join("all")).unwrap();
        let live = temp_path(&d.path().join("y"));
        fs::write(&dead, b"").unwrap();
        fs::write(&live, b"").unwrap();
        assert_eq!(remove_stale_temps(d.path()), 2);
        assert!(!dead.exists() && !dead_dir.exists() && live.exists());
    }
}

/// Puts the directory (or file) `new` where `target` is, replacing whatever `target` was (a
/// directory, a file, or nothing) and removing it. On Linux the two are swapped in one
/// `renameat2(RENAME_EXCHANGE)`, so a reader sees the old or the new, never neither; elsewhere
/// (or on a filesystem without it) the old one is first moved aside, which leaves a moment
/// without `target`.
pub fn replace_dir(new: &Path, target: &Path) -> io::Result<()> {
    let remove = |p: &Path| -> io::Result<()> {
        if p.is_dir() && !p.is_symlink() {
            fs::remove_dir_all(p)
        } else {
            fs::remove_file(p)
        }
    };
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return fs::rename(new, target),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    #[cfg(target_os = "linux")]
    if exchange(new, target).is_ok() {
        // `new` now names the old contents.
        return remove(new);
    }
    let aside = temp_path(target);
    fs::rename(target, &aside)?;
    fs::rename(new, target)?;
    remove(&aside)
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated paths; renameat2 only reads them.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises this process's soft limit on open files to its hard limit (as Go's runtime does):
/// aggregate keeps one descriptor per part file and per partial aggregation it copies from,
/// which can pass the usual soft limit of 1024 on a large array.
pub fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        // SAFETY: getrlimit/setrlimit read and write the plain struct given.
        unsafe {
            let mut lim: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    }
}

#[cfg(test)]
mod replace_tests {
    use super::*;

    #[test]
    fn a_directory_replaces_a_directory_a_file_or_nothing() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("data.parquet");
        for old in ["dir", "file", "none"] {
            let _ = fs::remove_dir_all(&target);
            match old {
                "dir" => {
                    fs::create_dir(&target).unwrap();
                    fs::write(target.join("old"), b"o").unwrap();
                }
                "file" => fs::write(&target, b"o").unwrap(),
                _ => {}
            }
            let new = d.path().join(".next");
            fs::create_dir(&new).unwrap();
            fs::write(new.join("part"), b"n").unwrap();
            replace_dir(&new, &target).unwrap();
            assert_eq!(fs::read(target.join("part")).unwrap(), b"n", "{old}");
            assert!(!target.join("old").exists() && !new.exists(), "{old}");
            let left: Vec<_> = fs::read_dir(d.path()).unwrap().flatten().collect();
            assert_eq!(left.len(), 1, "{old}: only the target is left");
        }
    }
}
