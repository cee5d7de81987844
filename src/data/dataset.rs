//! A prepared data directory (its `.bin` files memory-mapped, see `Tokens`), and nanoGPT's batch sampling
//! over it; or the synthetic Bigram-Backcopy task (`backcopy`), generated on the fly behind the same
//! interface.
//!
//! A start token. With `bos` (the config key; always for backcopy) every window starts with a BOS
//! token, id = the tokenizer's vocabulary size (one past the text's ids, so the model's vocabulary is
//! one larger): the inputs are BOS and the first T − 1 tokens of the window, the targets its T tokens,
//! so the first target is the text's first token predicted from BOS alone (Gu et al. 2024, "When
//! Attention Sink Emerges in Language Models": with a fixed first token most heads sink on it).

use std::fmt;
use std::path::{Path, PathBuf};

use super::backcopy::{Backcopy, TRAIN_WINDOWS, VAL_SEQUENCES};
use super::prepare::{TINY_SHAKESPEARE, TRAIN_BIN, VAL_BIN};
use super::tokenizer::Tokenizer;
use super::tokens::Tokens;
use super::vocab::{META_PKL, VOCAB_FILE};
use crate::config::{Config, DataKind};
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
    /// The text's token ids (memory-mapped when opened from a directory; empty for the backcopy task).
    pub train: Tokens,
    pub val: Tokens,
    pub tokenizer: Tokenizer,
    /// Where the data came from (named in messages).
    pub dir: PathBuf,
    /// The BOS id when every window starts with one (text with `bos`, and backcopy).
    pub bos: Option<u32>,
    /// The synthetic task, when the data is generated rather than read.
    pub task: Option<Backcopy>,
}

impl Dataset {
    /// Map `dir/{train.bin, val.bin}` and load the tokenizer, checking every id against the vocabulary.
    pub fn open(dir: &Path) -> Result<Dataset> {
        let tokenizer = Tokenizer::load(dir)?;
        let train = Tokens::open(&dir.join(TRAIN_BIN), tokenizer.vocab_size())?;
        let val = Tokens::open(&dir.join(VAL_BIN), tokenizer.vocab_size())?;
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
        Ok(Dataset { train, val, tokenizer, dir: dir.to_path_buf(), bos: None, task: None })
    }

    /// The data a config asks for: the task for `data = "backcopy"`; otherwise the prepared text in `dir`
    /// (the config's `data_dir`, or another directory holding the same vocabulary), with a BOS token in
    /// front of every window when `bos` is set.
    pub fn for_config(config: &Config, dir: &Path) -> Result<Dataset> {
        match config.data {
            DataKind::Backcopy => Dataset::backcopy(config.triggers),
            DataKind::Text => Ok(Dataset::open(dir)?.bos_if(config.bos)),
        }
    }

    /// `with_bos` when `bos`.
    pub fn bos_if(self, bos: bool) -> Dataset {
        if bos {
            self.with_bos()
        } else {
            self
        }
    }

    /// Text already in memory (no BOS).
    pub fn from_tokens(train: Vec<u16>, val: Vec<u16>, tokenizer: Tokenizer, dir: &Path) -> Dataset {
        Dataset { train: train.into(), val: val.into(), tokenizer, dir: dir.to_path_buf(), bos: None, task: None }
    }

    /// The Bigram-Backcopy task over Tiny Shakespeare's characters with `triggers` trigger tokens.
    pub fn backcopy(triggers: usize) -> Result<Dataset> {
        let tokenizer = Tokenizer::char_from_text(TINY_SHAKESPEARE);
        let ids = tokenizer.encode(TINY_SHAKESPEARE)?;
        let task = Backcopy::from_ids(&ids, tokenizer.vocab_size(), triggers)?;
        Ok(Dataset {
            train: Tokens::default(),
            val: Tokens::default(),
            bos: Some(task.bos()),
            tokenizer,
            dir: PathBuf::from("(backcopy task)"),
            task: Some(task),
        })
    }

    /// Every window starts with a BOS token (id = the tokenizer's vocabulary size).
    pub fn with_bos(mut self) -> Dataset {
        self.bos = Some(self.tokenizer.vocab_size() as u32);
        self
    }

    /// The model's vocabulary for this data: the tokenizer's, plus BOS when there is one.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.vocab_size() + usize::from(self.bos.is_some())
    }

    /// Text tokens a window of `block` inputs reads (its targets included).
    fn span(&self, block: usize) -> usize {
        if self.bos.is_some() {
            block
        } else {
            block + 1
        }
    }

    /// Non-overlapping fixed windows of `block` inputs in a split (`window(split, i, ..)` for i below it).
    pub fn num_windows(&self, split: Split, block: usize) -> usize {
        if block == 0 {
            return 0;
        }
        if self.task.is_some() {
            return match split {
                Split::Train => TRAIN_WINDOWS,
                Split::Val => VAL_SEQUENCES,
            };
        }
        let n = self.tokens(split).len();
        if n < self.span(block) {
            0
        } else {
            (n - self.span(block)) / block + 1
        }
    }

    pub fn tokens(&self, split: Split) -> &[u16] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }

    /// A sample of block_size inputs needs block_size + 1 tokens (the targets are shifted by one), or
    /// block_size with a BOS token in front.
    pub fn check_block_size(&self, block_size: usize) -> Result<()> {
        if self.task.is_some() {
            return Ok(());
        }
        for split in [Split::Train, Split::Val] {
            let n = self.tokens(split).len();
            if n < self.span(block_size) {
                return Err(Error::Data(format!(
                    "the {split} split has {n} tokens, but block_size {block_size} needs at least {}; \
                     use a smaller block_size or more data",
                    self.span(block_size)
                )));
            }
        }
        Ok(())
    }

    /// nanoGPT's `get_batch`: `batch` offsets i uniform in [0, len - block), then
    /// x[b, t] = data[i + t], y[b, t] = data[i + t + 1]; `x` and `y` are row-major batch × block.
    /// With a BOS token, x[b] = [BOS, data[i..i + block − 1]] and y[b] = data[i..i + block], i in
    /// [0, len − block]. For backcopy, training batches are fresh sequences from `rng`, and val
    /// batches are sequences of the fixed val set chosen by `rng`.
    /// Requires `check_block_size(block)` to have passed.
    pub fn get_batch(&self, split: Split, batch: usize, block: usize, rng: &mut Rng, x: &mut [u32], y: &mut [u32]) {
        assert!(x.len() == batch * block && y.len() == batch * block, "get_batch: x, y must hold batch * block ids");
        let rows = x.chunks_exact_mut(block.max(1)).zip(y.chunks_exact_mut(block.max(1))).take(batch);
        if let Some(task) = &self.task {
            let mut seq = vec![0u32; block + 1];
            for (xr, yr) in rows {
                match split {
                    Split::Train => task.fill(rng, &mut seq),
                    Split::Val => task.fixed(true, rng.below(VAL_SEQUENCES as u64) as usize, &mut seq),
                }
                xr.copy_from_slice(&seq[..block]);
                yr.copy_from_slice(&seq[1..]);
            }
            return;
        }
        let data = self.tokens(split);
        let span = self.span(block);
        assert!(
            data.len() >= span && data.len() > block,
            "get_batch: {split} has {} tokens, block {block} (call check_block_size)",
            data.len()
        );
        let hi = (data.len() - span + 1) as u64; // nanoGPT: [0, len − block)
        for (xr, yr) in rows {
            let i = rng.below(hi) as usize;
            self.fill(&data[i..i + span], xr, yr);
        }
    }

    /// The `index`-th non-overlapping window (start = index * block) for a fixed evaluation pass;
    /// false (x, y untouched) once the window and its shifted target no longer fit. For backcopy,
    /// sequence `index` of the split's fixed set. `x` and `y` hold `block` ids each.
    pub fn window(&self, split: Split, index: usize, block: usize, x: &mut [u32], y: &mut [u32]) -> bool {
        assert!(x.len() == block && y.len() == block, "window: x, y must hold block ids");
        if index >= self.num_windows(split, block) {
            return false;
        }
        if let Some(task) = &self.task {
            let mut seq = vec![0u32; block + 1];
            task.fixed(split == Split::Val, index, &mut seq);
            x.copy_from_slice(&seq[..block]);
            y.copy_from_slice(&seq[1..]);
            return true;
        }
        let start = index * block;
        self.fill(&self.tokens(split)[start..start + self.span(block)], x, y);
        true
    }

    /// `src` holds the window's text tokens (block + 1, or block after a BOS): x the inputs, y the targets.
    #[inline]
    fn fill(&self, src: &[u16], x: &mut [u32], y: &mut [u32]) {
        match self.bos {
            Some(bos) => {
                x[0] = bos;
                for t in 1..x.len() {
                    x[t] = src[t - 1] as u32;
                }
                for (yv, &s) in y.iter_mut().zip(src) {
                    *yv = s as u32;
                }
            }
            None => {
                for (t, (xv, yv)) in x.iter_mut().zip(y.iter_mut()).enumerate() {
                    *xv = src[t] as u32;
                    *yv = src[t + 1] as u32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(train: Vec<u16>, val: Vec<u16>) -> Dataset {
        Dataset::from_tokens(train, val, Tokenizer::gpt2(), Path::new(""))
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
