//! Writing files so that a reader never sees a half-written one: everything goes to a temporary file
//! beside the target first, which is synced and then renamed over it (a rename within a directory is
//! atomic), and the directory is synced after the rename so that the new name survives a power loss.
//! A failed write removes the temporary file and leaves the target as it was.
//!
//! `DirLock`: one process at a time in an output directory (a lock file made with `create_new`).

use crate::error::{Error, Result};
use serde::Serialize;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `<path>.tmp`: where `write_atomic` writes first.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Write `path` via `<path>.tmp` + rename, so a reader never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let res = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    rename(&tmp, path)
}

/// `write_atomic` for a file written in pieces (a streamed `train.bin`): the pieces go to `<path>.tmp`,
/// which `commit` syncs and renames over `path`. Dropped without `commit` (an error on the way), the
/// temporary file is removed and `path` is left as it was.
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<fs::File>>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<AtomicFile> {
        let tmp = tmp_path(path);
        let file = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(AtomicFile { path: path.to_path_buf(), tmp, file: Some(std::io::BufWriter::with_capacity(1 << 20, file)) })
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let f = self.file.as_mut().expect("AtomicFile is written only before commit");
        f.write_all(bytes).map_err(|e| Error::io(&self.tmp, e))
    }

    /// Flush, sync and rename into place.
    pub fn commit(mut self) -> Result<()> {
        let f = self.file.take().expect("AtomicFile is committed once");
        let res = f.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all());
        if let Err(e) = res {
            let _ = fs::remove_file(&self.tmp);
            return Err(Error::io(&self.tmp, e));
        }
        rename(&self.tmp, &self.path)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// `value` as pretty JSON with a final newline, written atomically.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Data(format!("{}: {e}", path.display())))? + "\n";
    write_atomic(path, text.as_bytes())
}

/// For writers that insist on a path of their own (an image encoder that picks the format from the
/// extension): `make` writes `tmp`, a sibling of `path`, which is then synced and renamed to `path`.
/// `tmp` is removed if anything fails.
pub fn create_atomic(path: &Path, tmp: &Path, make: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let res = make(tmp).and_then(|()| fs::File::open(tmp).and_then(|f| f.sync_all()).map_err(|e| Error::io(tmp, e)));
    if let Err(e) = res {
        let _ = fs::remove_file(tmp);
        return Err(e);
    }
    rename(tmp, path)
}

fn rename(tmp: &Path, path: &Path) -> Result<()> {
    fs::rename(tmp, path).map_err(|e| {
        let _ = fs::remove_file(tmp);
        Error::io(path, e)
    })?;
    sync_dir(path)
}

/// Sync the directory holding `path`, so that a rename into it is durable (a no-op where a directory
/// cannot be opened as a file).
fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    #[cfg(unix)]
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The lock file that `DirLock` creates in the directory it guards.
pub const LOCK_FILE: &str = ".quietgpt.lock";

/// An exclusive lock on an output directory: `<dir>/.quietgpt.lock`, created with `create_new` (so two
/// processes cannot both make it) and holding the holder's pid and command line. Removed on drop. A
/// lock whose pid is no longer alive (a killed process; checked in /proc on Linux) is stale and taken over
/// with a note on stderr.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
}

impl DirLock {
    /// Lock `dir` (created if needed) for `command` (what the holder is doing, shown to the next comer).
    pub fn acquire(dir: &Path, command: &str) -> Result<DirLock> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let text = format!("pid {}\ncommand {}\n", std::process::id(), command.replace('\n', " "));
        for _ in 0..3 {
            match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| {
                        let _ = fs::remove_file(&path);
                        Error::io(&path, e)
                    })?;
                    return Ok(DirLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
            // Held, or left behind: read who holds it.
            let held = match fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // just released
                Err(e) => return Err(Error::io(&path, e)),
            };
            let pid = held.lines().find_map(|l| l.strip_prefix("pid ")).and_then(|p| p.trim().parse::<u32>().ok());
            let command = held.lines().find_map(|l| l.strip_prefix("command ")).unwrap_or("?").trim().to_string();
            match pid {
                Some(pid) if !pid_alive(pid) => {
                    eprintln!(
                        "note: {} was left by process {pid} ({command}), which is no longer running; taking it over",
                        path.display()
                    );
                    match fs::remove_file(&path) {
                        Ok(()) => continue,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(Error::io(&path, e)),
                    }
                }
                _ => {
                    let who = pid.map_or("an unknown process".to_string(), |p| format!("process {p}"));
                    return Err(Error::Locked(format!(
                        "{} is in use by {who} ({command}); wait for it to finish, or use another directory \
                         (if that process is gone, delete {})",
                        dir.display(),
                        path.display()
                    )));
                }
            }
        }
        Err(Error::Locked(format!("{}: could not take the lock {} (contended)", dir.display(), path.display())))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Whether process `pid` is running (on Linux, /proc/<pid> exists; elsewhere always assumed alive).
fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_file_replaces_only_on_commit() {
        let dir = std::env::temp_dir().join(format!("quietgpt-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("train.bin");
        fs::write(&path, b"old").unwrap();
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"new, ").unwrap();
        assert!(tmp_path(&path).exists());
        drop(f); // an error on the way: the old file stays, the temporary one goes
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert!(!tmp_path(&path).exists());
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"new, ").unwrap();
        f.write_all(b"in pieces").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"old");
        f.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new, in pieces");
        assert!(!tmp_path(&path).exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
