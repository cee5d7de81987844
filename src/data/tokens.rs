//! A split's token ids, either owned (generated data, tests, `Dataset::from_tokens`) or a read-only memory
//! map of a prepared `.bin` file, so that a large split (OpenWebText's train.bin is 17 GB) is paged in by
//! the kernel as batches touch it instead of being read into memory at open. Both read as `&[u16]`.
//!
//! On disk the ids are little-endian u16 (nanoGPT's `np.uint16` on x86 and ARM). On a little-endian host
//! the mapped bytes are the ids; on a big-endian one the file is read and converted instead (as before
//! mapping existed), so the data is the same on every host.
//!
//! Every id is checked against the vocabulary at open: a maximum (vectorised; 0.3 s per 10⁹ tokens on one
//! core once the file is in the page cache, so a few seconds for OpenWebText's 9·10⁹; from disk the read
//! dominates), and only when that is out of range a search for the first offending position to name in the
//! error. It runs on the calling thread, not on rayon's pool: `quietgpt train` opens the data before it
//! sizes that pool from the config, which it can only do while the pool has not started.

use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{Error, Result};

/// Token ids of one split; `Deref`s to `[u16]`.
#[derive(Clone, Default)]
pub struct Tokens(Storage);

#[derive(Clone)]
enum Storage {
    Owned(Vec<u16>),
    /// A whole `.bin` file mapped read-only: even length and u16-aligned start, both checked at open.
    Mapped(Arc<Mmap>),
}

impl Default for Storage {
    fn default() -> Self {
        Storage::Owned(Vec::new())
    }
}

impl Tokens {
    /// The ids of a prepared `.bin` file (memory-mapped on a little-endian host), each checked to be below
    /// `vocab_size`. An odd length (a truncated file) and an out-of-range id are `Error::Data` naming the file.
    ///
    /// The file must not be rewritten in place while it is mapped; `quietgpt prepare` never does (it writes
    /// a temporary file and renames it over the old one, so a running reader keeps the old contents).
    pub fn open(path: &Path, vocab_size: usize) -> Result<Tokens> {
        let file = File::open(path).map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::NotFound { " (run `quietgpt prepare` to create it)" } else { "" };
            Error::io(path, io::Error::new(e.kind(), format!("{e}{hint}")))
        })?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len % 2 != 0 {
            return Err(Error::Data(format!(
                "{}: {len} bytes is not a whole number of u16 tokens; the file is truncated",
                path.display()
            )));
        }
        let tokens = if len == 0 {
            Tokens::default()
        } else if cfg!(target_endian = "little") {
            // SAFETY: `Mmap::map` requires that the file is not modified while mapped; the map is read-only
            // and `prepare` replaces files by rename (see above).
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
            if map.len() as u64 != len || map.as_ptr().align_offset(std::mem::align_of::<u16>()) != 0 {
                return Err(Error::Data(format!(
                    "{}: the file changed size while being opened, or was mapped misaligned; open it again",
                    path.display()
                )));
            }
            Tokens(Storage::Mapped(Arc::new(map)))
        } else {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            Tokens::from(bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect::<Vec<u16>>())
        };
        check_ids(&tokens, vocab_size, path)?;
        Ok(tokens)
    }

    pub fn as_slice(&self) -> &[u16] {
        self
    }

    /// Whether the ids are a memory map of a file (false: owned in memory).
    pub fn is_mapped(&self) -> bool {
        matches!(self.0, Storage::Mapped(_))
    }
}

impl Deref for Tokens {
    type Target = [u16];
    fn deref(&self) -> &[u16] {
        match &self.0 {
            Storage::Owned(v) => v,
            Storage::Mapped(m) => {
                let bytes: &[u8] = m;
                // SAFETY: `open` maps only on a little-endian host and checked that the start is aligned
                // for u16 and the length even; every bit pattern is a valid u16, and the map lives as long
                // as `self`.
                unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<u16>(), bytes.len() / 2) }
            }
        }
    }
}

impl From<Vec<u16>> for Tokens {
    fn from(ids: Vec<u16>) -> Tokens {
        Tokens(Storage::Owned(ids))
    }
}

impl PartialEq for Tokens {
    fn eq(&self, other: &Tokens) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Tokens {}

impl PartialEq<[u16]> for Tokens {
    fn eq(&self, other: &[u16]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Vec<u16>> for Tokens {
    fn eq(&self, other: &Vec<u16>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

/// Short: a split can hold billions of ids.
impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_mapped() { "mapped" } else { "owned" };
        if self.len() <= 16 {
            write!(f, "Tokens({kind}, {:?})", self.as_slice())
        } else {
            write!(f, "Tokens({kind}, {} ids: {:?} ...)", self.len(), &self[..16])
        }
    }
}

/// Every id below `vocab_size`, or `Error::Data` naming the first that is not (its position and value).
fn check_ids(ids: &[u16], vocab_size: usize, path: &Path) -> Result<()> {
    match ids.iter().copied().max() {
        Some(m) if usize::from(m) >= vocab_size => {}
        _ => return Ok(()),
    }
    let pos = ids.iter().position(|&id| usize::from(id) >= vocab_size).unwrap_or(0);
    Err(Error::Data(format!(
        "{}: token id {} at position {pos} is outside the vocabulary of {vocab_size} tokens",
        path.display(),
        ids[pos]
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_and_the_first_bad_one_named() {
        let p = Path::new("x.bin");
        let mut ids: Vec<u16> = (0..3_000_000u32).map(|i| (i % 50) as u16).collect();
        check_ids(&ids, 50, p).unwrap();
        ids[2_500_000] = 60;
        ids[2_700_000] = 70;
        let e = check_ids(&ids, 50, p).unwrap_err().to_string();
        assert!(e.contains("token id 60 at position 2500000") && e.contains("50 tokens"), "{e}");
        check_ids(&[], 1, p).unwrap();
        assert!(check_ids(&[0], 0, p).is_err());
    }

    #[test]
    fn owned_tokens_compare_and_print_short() {
        let t = Tokens::from(vec![1, 2, 3]);
        assert_eq!(t, vec![1u16, 2, 3]);
        assert!(!t.is_mapped() && t.len() == 3 && t[1] == 2);
        assert_eq!(format!("{t:?}"), "Tokens(owned, [1, 2, 3])");
        let long = Tokens::from(vec![7; 100]);
        assert!(format!("{long:?}").starts_with("Tokens(owned, 100 ids: [7, 7"));
    }
}
