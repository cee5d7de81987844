//! The fixed, deterministic evaluation windows that analyze, quantize-eval and the experiment's
//! histograms run the model on: windows 0, 1, .. of a split (`Dataset::window`: window i holds the
//! tokens [i·block, (i+1)·block] and its targets are shifted by one), in batches of up to `batch`
//! windows, the last batch possibly shorter.

use crate::data::{Dataset, Split};

/// Non-overlapping windows of `block` inputs (+1 target) in a split: window i covers [i·block, (i+1)·block].
pub fn count_windows(data: &Dataset, split: Split, block: usize) -> usize {
    data.num_windows(split, block)
}

/// Windows 0..`count` of a split in batches; `next_batch` lends each batch's inputs and targets.
pub struct Windows<'a> {
    data: &'a Dataset,
    split: Split,
    block: usize,
    batch: usize,
    count: usize,
    next: usize,
    x: Vec<u32>,
    y: Vec<u32>,
}

/// One batch of `n` windows: `x` and `y` are row-major (n, block).
pub struct WindowBatch<'b> {
    pub x: &'b [u32],
    pub y: &'b [u32],
    pub n: usize,
}

impl<'a> Windows<'a> {
    /// The first `limit` windows of `split` (fewer when the split is shorter), `batch` (at least 1) at a
    /// time.
    pub fn new(data: &'a Dataset, split: Split, block: usize, batch: usize, limit: usize) -> Self {
        let batch = batch.max(1);
        let count = count_windows(data, split, block).min(limit);
        let buf = vec![0u32; batch * block];
        Windows { data, split, block, batch, count, next: 0, x: buf.clone(), y: buf }
    }

    /// How many windows the batches hold in all.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The next batch, or None after the last.
    pub fn next_batch(&mut self) -> Option<WindowBatch<'_>> {
        let (t, k) = (self.block, self.next);
        let n = self.batch.min(self.count - k);
        if n == 0 {
            return None;
        }
        for (i, (xr, yr)) in self.x.chunks_exact_mut(t).zip(self.y.chunks_exact_mut(t)).take(n).enumerate() {
            let fits = self.data.window(self.split, k + i, t, xr, yr);
            debug_assert!(fits, "window {} of {} is counted but does not fit", k + i, self.split);
        }
        self.next += n;
        Some(WindowBatch { x: &self.x[..n * t], y: &self.y[..n * t], n })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Tokenizer;
    use std::path::Path;

    #[test]
    fn batches_cover_the_counted_windows_in_order() {
        // 12 val tokens, block 2: windows 0..5 ((12 − 1) / 2), in batches of 2, 2, 1.
        let d = Dataset::from_tokens(vec![], (0..12).collect(), Tokenizer::gpt2(), Path::new(""));
        let mut w = Windows::new(&d, Split::Val, 2, 2, usize::MAX);
        assert_eq!(w.count(), 5);
        let mut seen = vec![];
        while let Some(b) = w.next_batch() {
            seen.push((b.n, b.x.to_vec(), b.y.to_vec()));
        }
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0], (2, vec![0, 1, 2, 3], vec![1, 2, 3, 4]));
        assert_eq!(seen[2], (1, vec![8, 9], vec![9, 10]));
        assert_eq!(Windows::new(&d, Split::Val, 2, 8, 3).count(), 3);
        assert!(Windows::new(&d, Split::Train, 2, 8, 3).next_batch().is_none());
    }
}
