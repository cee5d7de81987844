//! Writing files so that a reader never sees a half-written one: everything goes to a temporary file
//! beside the target first, which is synced and then renamed over it (a rename within a directory is
//! atomic). A failed write removes the temporary file and leaves the target as it was.

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
    })
}
