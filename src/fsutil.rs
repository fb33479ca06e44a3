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
