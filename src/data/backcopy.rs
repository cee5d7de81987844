//! Bigram-Backcopy (BB), the synthetic task of Guo et al. 2024 ("Active-Dormant Attention Heads:
//! Mechanistically Demystifying Extreme-Token Phenomena in LLMs", arXiv 2410.13835; their generator is
//! `bbm.gen_seq` in GuoTianYu2000/Active-Dormant-Attention, BBM/data.py), on which even 1–3-layer
//! models grow an attention sink on the start token and a massive residual norm on it.
//!
//! The vocabulary is the characters of a text (Tiny Shakespeare: 65) plus one BOS token (id 65), and
//! the k most frequent characters of the text (k = 3: ' ', 'e', 't') are the triggers. A sequence of
//! n tokens is
//!   s_0 = BOS,
//!   s_1 ~ the unigram distribution of the text with the triggers removed (renormalised),
//!   s_t = s_{t−2}                 if s_{t−1} is a trigger   (the copy rule: a "copy position"),
//!   s_t ~ P(· | s_{t−1})          otherwise                 (the text's bigram table: a "bigram position").
//! P counts every pair of consecutive characters of the whole text. Since s_1 is no trigger and a
//! trigger is only ever followed by a copy of the token before it, two triggers never follow each
//! other and the copy never reaches back to BOS. A window of block T is one sequence of T + 1 tokens:
//! inputs s_0..s_{T−1}, targets s_1..s_T; target t is a copy when input t is a trigger.
//!
//! Differences from Guo et al.'s code: their vocabulary also holds an unused delimiter token (67
//! tokens, ours 66); their unigram and bigram counts are over the same text and so are ours; a
//! character with no successor in the text (none in Tiny Shakespeare) would draw from the unigram
//! distribution s_1 uses.
//!
//! Streams. Training batches are fresh sequences drawn from the trainer's data RNG (so the seed
//! decides them); the val split is a fixed set of `VAL_SEQUENCES` sequences, sequence i drawn from its
//! own RNG stream (`VAL_KEY`, i), the same for every seed and run; window i of the train split (for
//! analysis) likewise from (`TRAIN_KEY`, i).

use crate::error::{Error, Result};
use crate::rng::Rng;

/// Guo et al.'s k: the number of trigger tokens.
pub const DEFAULT_TRIGGERS: usize = 3;
/// Sequences in the val split (analysis and quantize-eval windows, and the pool that `get_batch`
/// draws val batches from).
pub const VAL_SEQUENCES: usize = 4096;
/// Windows of the train split that analysis may use (training batches are fresh sequences).
pub const TRAIN_WINDOWS: usize = 4096;
const VAL_KEY: u64 = 0x6262_7661_6c00_0001;
const TRAIN_KEY: u64 = 0x6262_7472_6e00_0002;

/// The generator: the bigram table of a text, its BOS id and triggers.
#[derive(Clone, Debug, PartialEq)]
pub struct Backcopy {
    /// The text's vocabulary size V; BOS is token V.
    pub text_vocab: usize,
    /// Trigger ids, most frequent first.
    pub triggers: Vec<u32>,
    /// Cumulative distribution of s_1 (unigrams without the triggers), length V.
    first: Vec<f64>,
    /// Cumulative bigram distribution per previous token, V rows of V.
    next: Vec<Vec<f64>>,
    /// Unnormalised counts, for tests and reports: unigram (V) and bigram (V × V).
    pub unigram: Vec<u64>,
    pub bigram: Vec<Vec<u64>>,
}

impl Backcopy {
    /// The task over `ids`, a text already tokenized into `text_vocab` ids, with the `k` most frequent
    /// ids as triggers (ties to the larger id, as numpy's ascending argsort taken from the end).
    pub fn from_ids(ids: &[u16], text_vocab: usize, k: usize) -> Result<Backcopy> {
        if k == 0 || k >= text_vocab {
            return Err(Error::Config(format!(
                "triggers = {k}: the backcopy task needs at least 1 trigger and fewer than the {text_vocab} tokens"
            )));
        }
        let mut unigram = vec![0u64; text_vocab];
        let mut bigram = vec![vec![0u64; text_vocab]; text_vocab];
        for &i in ids {
            unigram[i as usize] += 1;
        }
        for w in ids.windows(2) {
            bigram[w[0] as usize][w[1] as usize] += 1;
        }
        let mut order: Vec<usize> = (0..text_vocab).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(unigram[i]), std::cmp::Reverse(i)));
        let triggers: Vec<u32> = order[..k].iter().map(|&i| i as u32).collect();
        let mut first_w: Vec<f64> = unigram.iter().map(|&c| c as f64).collect();
        for &t in &triggers {
            first_w[t as usize] = 0.0;
        }
        let first = cdf(&first_w).ok_or_else(|| {
            Error::Data("the backcopy task's text has no token besides the triggers to start a sequence".into())
        })?;
        let next = bigram
            .iter()
            .map(|row| cdf(&row.iter().map(|&c| c as f64).collect::<Vec<_>>()).unwrap_or_else(|| first.clone()))
            .collect();
        Ok(Backcopy { text_vocab, triggers, first, next, unigram, bigram })
    }

    /// The BOS token's id (one past the text's vocabulary).
    pub fn bos(&self) -> u32 {
        self.text_vocab as u32
    }

    /// Vocabulary of the model: the text's plus BOS.
    pub fn vocab_size(&self) -> usize {
        self.text_vocab + 1
    }

    #[inline]
    pub fn is_trigger(&self, id: u32) -> bool {
        self.triggers.contains(&id)
    }

    /// One sequence of `out.len()` tokens (BOS first) from `rng`.
    pub fn fill(&self, rng: &mut Rng, out: &mut [u32]) {
        for t in 0..out.len() {
            out[t] = match t {
                0 => self.bos(),
                1 => sample(&self.first, rng),
                _ if self.is_trigger(out[t - 1]) => out[t - 2],
                _ => sample(&self.next[out[t - 1] as usize], rng),
            };
        }
    }

    /// Sequence `index` of the val (or train-window) stream, of `out.len()` tokens.
    pub fn fixed(&self, val: bool, index: usize, out: &mut [u32]) {
        let mut rng = Rng::new(if val { VAL_KEY } else { TRAIN_KEY }, index as u64);
        self.fill(&mut rng, out);
    }

    /// Which targets are copies: target t (predicted from input t) is one when input t is a trigger.
    pub fn copy_mask(&self, x: &[u32], mask: &mut [bool]) {
        for (m, &id) in mask.iter_mut().zip(x) {
            *m = self.is_trigger(id);
        }
    }

    /// The probability of `next` after `prev` under the bigram table (for tests and reports).
    pub fn bigram_prob(&self, prev: u32, next: u32) -> f64 {
        let row = &self.next[prev as usize];
        let hi = row[next as usize];
        let lo = if next == 0 { 0.0 } else { row[next as usize - 1] };
        hi - lo
    }

    /// A short description that identifies the task (for fingerprints and reports).
    pub fn describe(&self) -> String {
        let h = super::fnv1a(self.bigram.iter().flatten().flat_map(|c| c.to_le_bytes()));
        format!("backcopy vocab {} triggers {:?} bigrams {h:016x}", self.vocab_size(), self.triggers)
    }
}

/// Cumulative sums normalised to end at 1 (None when all weights are 0).
fn cdf(w: &[f64]) -> Option<Vec<f64>> {
    let total: f64 = w.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let mut acc = 0.0;
    let mut c: Vec<f64> = w
        .iter()
        .map(|&x| {
            acc += x;
            acc / total
        })
        .collect();
    // The last id with positive weight ends at exactly 1, so u < 1 always lands on a possible id.
    if let Some(last) = w.iter().rposition(|&x| x > 0.0) {
        for v in &mut c[last..] {
            *v = 1.0;
        }
    }
    Some(c)
}

/// The first id whose cumulative probability exceeds u ~ U[0, 1): an id of weight 0 is never drawn.
#[inline]
fn sample(cdf: &[f64], rng: &mut Rng) -> u32 {
    let u = rng.uniform();
    cdf.partition_point(|&c| c <= u) as u32
}

/// The loss of a model on the backcopy task split by position kind (Guo et al.'s `seperate_loss`):
/// copy positions (the input is a trigger; the target is determined) and bigram positions (the
/// rest, BOS included). Sums of per-position cross-entropies in f64 and counts.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TaskLoss {
    pub copy_sum: f64,
    pub copy_n: usize,
    pub bigram_sum: f64,
    pub bigram_n: usize,
}

impl TaskLoss {
    /// Adds the positions of a batch: inputs `x` and targets `y` (n positions), `logits` (n, V).
    pub fn add(&mut self, task: &Backcopy, x: &[u32], y: &[u32], logits: &[f32]) {
        let v = logits.len() / x.len().max(1);
        for ((&xi, &yi), row) in x.iter().zip(y).zip(logits.chunks_exact(v)) {
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
            let lse = m + row.iter().map(|&l| (l as f64 - m).exp()).sum::<f64>().ln();
            let ce = lse - row[yi as usize] as f64;
            if task.is_trigger(xi) {
                self.copy_sum += ce;
                self.copy_n += 1;
            } else {
                self.bigram_sum += ce;
                self.bigram_n += 1;
            }
        }
    }

    /// Mean loss on copy positions (NaN when there were none).
    pub fn copy(&self) -> f64 {
        self.copy_sum / self.copy_n as f64
    }

    /// Mean loss on bigram positions (NaN when there were none).
    pub fn bigram(&self) -> f64 {
        self.bigram_sum / self.bigram_n as f64
    }
}
