//! A prepared data directory in memory, and nanoGPT's batch sampling over it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::prepare::{TRAIN_BIN, VAL_BIN};
use super::tokenizer::Tokenizer;
use super::vocab::{META_PKL, VOCAB_FILE};
use crate::error::{Error, Result};
use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Val,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug)]
pub struct Dataset {
    pub train: Vec<u16>,
    pub val: Vec<u16>,
    pub tokenizer: Tokenizer,
    pub dir: PathBuf,
}

impl Dataset {
    /// Load `dir/{train.bin, val.bin}` and the tokenizer, checking every id against the vocabulary.
    pub fn open(dir: &Path) -> Result<Dataset> {
        let tokenizer = Tokenizer::load(dir)?;
        let train = read_bin(&dir.join(TRAIN_BIN), tokenizer.vocab_size())?;
        let val = read_bin(&dir.join(VAL_BIN), tokenizer.vocab_size())?;
        if tokenizer == Tokenizer::Gpt2 && !dir.join(VOCAB_FILE).exists() && !dir.join(META_PKL).exists() {
            // Not an error (nanoGPT's GPT-2 data directories have no vocabulary file), but not silent either.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                eprintln!(
                    "note: {} has no {VOCAB_FILE} or {META_PKL}: its token ids are read as GPT-2 BPE (as nanoGPT \
                     does); `quietgpt prepare` writes the vocabulary of a char-level directory",
                    dir.display()
                )
            });
        }
        Ok(Dataset { train, val, tokenizer, dir: dir.to_path_buf() })
    }

    pub fn tokens(&self, split: Split) -> &[u16] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }

    /// A sample of block_size inputs needs block_size + 1 tokens (the targets are shifted by one).
    pub fn check_block_size(&self, block_size: usize) -> Result<()> {
        for split in [Split::Train, Split::Val] {
            let n = self.tokens(split).len();
            if n < block_size + 1 {
                return Err(Error::Data(format!(
                    "the {split} split has {n} tokens, but block_size {block_size} needs at least {}; \
                     use a smaller block_size or more data",
                    block_size + 1
                )));
            }
        }
        Ok(())
    }

    /// nanoGPT's `get_batch`: `batch` offsets i uniform in [0, len - block), then
    /// x[b, t] = data[i + t], y[b, t] = data[i + t + 1]; `x` and `y` are row-major batch × block.
    /// Requires `check_block_size(block)` to have passed.
    pub fn get_batch(&self, split: Split, batch: usize, block: usize, rng: &mut Rng, x: &mut [u32], y: &mut [u32]) {
        let data = self.tokens(split);
        assert!(
            data.len() > block,
            "get_batch: {split} has {} tokens, block {block} (call check_block_size)",
            data.len()
        );
        assert!(x.len() == batch * block && y.len() == batch * block, "get_batch: x, y must hold batch * block ids");
        let hi = (data.len() - block) as u64;
        for (xr, yr) in x.chunks_exact_mut(block.max(1)).zip(y.chunks_exact_mut(block.max(1))).take(batch) {
            let i = rng.below(hi) as usize;
            fill(&data[i..i + block + 1], xr, yr);
        }
    }

    /// The `index`-th non-overlapping window (start = index * block) for a fixed evaluation pass;
    /// false (x, y untouched) once the window and its shifted target no longer fit.
    /// `x` and `y` hold `block` ids each.
    pub fn window(&self, split: Split, index: usize, block: usize, x: &mut [u32], y: &mut [u32]) -> bool {
        let data = self.tokens(split);
        assert!(x.len() == block && y.len() == block, "window: x, y must hold block ids");
        let Some(start) = index.checked_mul(block) else { return false };
        match start.checked_add(block + 1) {
            Some(end) if end <= data.len() && block > 0 => {
                fill(&data[start..end], x, y);
                true
            }
            _ => false,
        }
    }
}

/// `src` holds block + 1 tokens: x gets the first block, y the last block.
#[inline]
fn fill(src: &[u16], x: &mut [u32], y: &mut [u32]) {
    for (t, (xv, yv)) in x.iter_mut().zip(y.iter_mut()).enumerate() {
        *xv = src[t] as u32;
        *yv = src[t + 1] as u32;
    }
}

fn read_bin(path: &Path, vocab_size: usize) -> Result<Vec<u16>> {
    let bytes = std::fs::read(path).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::NotFound { " (run `quietgpt prepare` to create it)" } else { "" };
        Error::io(path, io::Error::new(e.kind(), format!("{e}{hint}")))
    })?;
    if bytes.len() % 2 != 0 {
        return Err(Error::Data(format!(
            "{}: {} bytes is not a whole number of u16 tokens; the file is truncated",
            path.display(),
            bytes.len()
        )));
    }
    let ids: Vec<u16> = bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
    if let Some((pos, &id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab_size) {
        return Err(Error::Data(format!(
            "{}: token id {id} at position {pos} is outside the vocabulary of {vocab_size} tokens",
            path.display()
        )));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(train: Vec<u16>, val: Vec<u16>) -> Dataset {
        Dataset { train, val, tokenizer: Tokenizer::gpt2(), dir: PathBuf::new() }
    }

    #[test]
    fn windows_tile_the_split() {
        let d = ds((0..10).collect(), (100..107).collect());
        let (mut x, mut y) = ([0u32; 3], [0u32; 3]);
        assert!(d.window(Split::Val, 0, 3, &mut x, &mut y));
        assert_eq!((x, y), ([100, 101, 102], [101, 102, 103]));
        assert!(d.window(Split::Val, 1, 3, &mut x, &mut y));
        assert_eq!((x, y), ([103, 104, 105], [104, 105, 106]));
        assert!(!d.window(Split::Val, 2, 3, &mut x, &mut y));
        assert!(!d.window(Split::Val, usize::MAX, 3, &mut x, &mut y));
    }

    #[test]
    fn batch_offsets_cover_the_allowed_range() {
        // len 6, block 4: offsets in [0, 2), so x[0] is 0 or 1 and the last target is never past the end.
        let d = ds((0..6).collect(), (0..6).collect());
        let mut rng = Rng::new(3, 0);
        let (mut x, mut y) = (vec![0u32; 4 * 8], vec![0u32; 4 * 8]);
        let mut seen = [false; 2];
        for _ in 0..20 {
            d.get_batch(Split::Train, 8, 4, &mut rng, &mut x, &mut y);
            for row in x.chunks(4) {
                seen[row[0] as usize] = true;
            }
        }
        assert_eq!(seen, [true, true]);
        assert!(d.check_block_size(5).is_ok() && d.check_block_size(6).is_err());
    }
}
