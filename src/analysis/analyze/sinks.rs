//! Attention-sink and massive-activation metrics, as plain accumulators over activation tensors (the
//! recorder feeds them from the probe; tests feed them hand-made tensors with known answers).
//!
//! * `FirstNormAcc` (Guo et al. 2024, arXiv:2410.13835): the L2 norm over channels of the residual
//!   stream at the first position of each window (position 0: the BOS token when the data has one)
//!   against the other positions' norms.
//! * `MassiveAcc` (Sun et al. 2024, "Massive Activations in Large Language Models"): the three largest
//!   |x| of a tensor with their (window, position, channel), and the median |x| they are compared with.
//! * `HeadAcc` (per head, from the attention's q, k, v and c_proj): the attention-logit gap between the
//!   first position and the others, and the "value-state drain" ‖v_0^h W_O^h‖ (Gu et al. 2024, "When
//!   Attention Sink Emerges"; Guo et al. 2024) against the other positions'.
//!
//! Everything is summed in f64. Non-finite values are left out (the activation statistics count them).

use super::types::{FirstNorm, Massive, MassiveValue};

/// How many of the largest |x| `MassiveAcc` keeps.
pub const MASSIVE_TOP: usize = 3;

/// Median of the finite values (the mean of the two middle ones for an even count); None when empty.
pub fn median(values: &mut [f32]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let (lo, mid, _) = values.select_nth_unstable_by(n / 2, f32::total_cmp);
    let upper = *mid as f64;
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = lo.iter().copied().max_by(f32::total_cmp).expect("n ≥ 2") as f64;
    Some(0.5 * (lower + upper))
}

fn l2(row: &[f32]) -> f64 {
    row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt()
}

/// First-position residual norms of one layer over all windows.
#[derive(Clone, Debug, Default)]
pub struct FirstNormAcc {
    /// ‖x_0‖ of each window
    first: Vec<f64>,
    /// ‖x_t‖ of every window and position t ≥ 1
    others: Vec<f32>,
}

impl FirstNormAcc {
    /// x is (B, T, C): B windows of T positions.
    pub fn push(&mut self, x: &[f32], t: usize, c: usize) {
        for window in x.chunks_exact(t * c) {
            let mut rows = window.chunks_exact(c).map(l2);
            self.first.extend(rows.next().filter(|n| n.is_finite()));
            self.others.extend(rows.filter(|n| n.is_finite()).map(|n| n as f32));
        }
    }

    pub fn finish(&mut self) -> FirstNorm {
        let first = (!self.first.is_empty()).then(|| self.first.iter().sum::<f64>() / self.first.len() as f64);
        let n = self.others.len();
        let others_mean = (n > 0).then(|| self.others.iter().map(|&v| v as f64).sum::<f64>() / n as f64);
        let others_median = median(&mut self.others);
        let ratio = |o: Option<f64>| first.zip(o).map(|(f, o)| f / o).filter(|r| r.is_finite());
        let diff = |o: Option<f64>| first.zip(o).map(|(f, o)| f - o);
        FirstNorm {
            first,
            others_mean,
            others_median,
            ratio_mean: ratio(others_mean),
            ratio_median: ratio(others_median),
            diff_mean: diff(others_mean),
            diff_median: diff(others_median),
        }
    }
}

/// The largest |x| of one tensor over all windows, with where they are, and every |x| for the median.
#[derive(Clone, Debug, Default)]
pub struct MassiveAcc {
    /// the largest so far, largest first (ties: the earlier element first)
    top: Vec<MassiveValue>,
    abs: Vec<f32>,
    windows: usize,
}

impl MassiveAcc {
    /// x is (B, T, C), the next B windows (window indices continue from the previous pushes).
    pub fn push(&mut self, x: &[f32], t: usize, c: usize) {
        for window in x.chunks_exact(t * c) {
            for (i, &v) in window.iter().enumerate() {
                let a = v.abs();
                if !a.is_finite() {
                    continue;
                }
                self.abs.push(a);
                let full = self.top.len() == MASSIVE_TOP;
                if full && a <= self.top[MASSIVE_TOP - 1].value.abs() {
                    continue;
                }
                let at = self.top.partition_point(|m| m.value.abs() >= a);
                let m = MassiveValue {
                    value: v,
                    ratio_to_median: None,
                    window: self.windows,
                    position: i / c,
                    channel: i % c,
                };
                self.top.insert(at, m);
                self.top.truncate(MASSIVE_TOP);
            }
            self.windows += 1;
        }
    }

    pub fn finish(&mut self) -> Massive {
        let median_abs = median(&mut self.abs);
        let top = self
            .top
            .iter()
            .map(|m| MassiveValue {
                ratio_to_median: median_abs.map(|med| m.value.abs() as f64 / med).filter(|r| r.is_finite()),
                ..m.clone()
            })
            .collect();
        Massive { median_abs, top }
    }
}

/// One head's sums for the logit gap and the value drain.
#[derive(Clone, Debug, Default)]
pub struct HeadAcc {
    gap_sum: f64,
    gap_rows: u64,
    drain_first_sum: f64,
    drain_first_n: u64,
    drain_others_sum: f64,
    drain_others_n: u64,
}

/// What `HeadAcc` gives (fields of `HeadStats`).
#[derive(Clone, Debug, PartialEq)]
pub struct HeadScores {
    pub logit_gap: Option<f64>,
    pub drain_first: Option<f64>,
    pub drain_others: Option<f64>,
    pub drain_ratio: Option<f64>,
}

impl HeadAcc {
    pub fn finish(&self) -> HeadScores {
        let mean = |s: f64, n: u64| (n > 0).then(|| s / n as f64).filter(|m| m.is_finite());
        let drain_first = mean(self.drain_first_sum, self.drain_first_n);
        let drain_others = mean(self.drain_others_sum, self.drain_others_n);
        HeadScores {
            logit_gap: mean(self.gap_sum, self.gap_rows),
            drain_first,
            drain_others,
            drain_ratio: drain_first.zip(drain_others).map(|(f, o)| f / o).filter(|r| r.is_finite()),
        }
    }
}

/// G_h = W_hᵀ W_h for every head h, where W_h (C, hs) is the slice of c_proj's weight `w_proj`
/// ([out C, in C], nanoGPT's layout) that multiplies head h's channels: ‖v W_hᵀ‖² = vᵀ G_h v.
/// Returns (NH, hs, hs).
pub fn head_grams(w_proj: &[f32], c: usize, nh: usize) -> Vec<f64> {
    let hs = c / nh;
    let mut g = vec![0.0f64; nh * hs * hs];
    for row in w_proj.chunks_exact(c) {
        for h in 0..nh {
            let w = &row[h * hs..(h + 1) * hs];
            let gh = &mut g[h * hs * hs..(h + 1) * hs * hs];
            for (d, &wd) in w.iter().enumerate() {
                for (e, &we) in w.iter().enumerate() {
                    gh[d * hs + e] += wd as f64 * we as f64;
                }
            }
        }
    }
    g
}

/// Adds one batch to every head's sums. qkv is c_attn's output (B, T, 3C): q, k, v, head h in channels
/// h·hs..(h+1)·hs of each; `grams` comes from `head_grams` of the same layer; heads has NH entries.
///
/// Logit gap of a window's row i ≥ 1: s_i0 − mean_{1≤j≤i} s_ij with s_ij = q_i·k_j/√hs, the scaled score
/// before the row normaliser (= q_i·(k_0 − mean_{1≤j≤i} k_j)/√hs, with a running sum of the k_j).
/// Value drain of position t: ‖W_h v_t^h‖₂, c_proj's output of head h's value alone (no bias, no gate).
pub fn push_heads(heads: &mut [HeadAcc], qkv: &[f32], grams: &[f64], t: usize, c: usize) {
    let nh = heads.len();
    let hs = c / nh;
    let scale = 1.0 / (hs as f64).sqrt();
    let at = |w: usize, i: usize, part: usize, h: usize| {
        let o = (w * t + i) * 3 * c + part * c + h * hs;
        &qkv[o..o + hs]
    };
    let dot = |a: &[f32], b: &[f64]| a.iter().zip(b).map(|(&x, &y)| x as f64 * y).sum::<f64>();
    let b = qkv.len() / (t * 3 * c);
    let mut ksum = vec![0.0f64; hs];
    let mut diff = vec![0.0f64; hs];
    let mut gv = vec![0.0f64; hs];
    for (h, acc) in heads.iter_mut().enumerate() {
        let g = &grams[h * hs * hs..(h + 1) * hs * hs];
        for w in 0..b {
            let k0 = at(w, 0, 1, h);
            ksum.fill(0.0);
            for i in 1..t {
                for (s, &k) in ksum.iter_mut().zip(at(w, i, 1, h)) {
                    *s += k as f64;
                }
                for ((d, &k), &s) in diff.iter_mut().zip(k0).zip(&ksum) {
                    *d = k as f64 - s / i as f64;
                }
                let gap = dot(at(w, i, 0, h), &diff) * scale;
                if gap.is_finite() {
                    acc.gap_sum += gap;
                    acc.gap_rows += 1;
                }
            }
            for i in 0..t {
                let v = at(w, i, 2, h);
                for (d, out) in gv.iter_mut().enumerate() {
                    *out = dot(v, &g[d * hs..(d + 1) * hs]);
                }
                let norm = dot(v, &gv).max(0.0).sqrt();
                if !norm.is_finite() {
                    continue;
                }
                if i == 0 {
                    acc.drain_first_sum += norm;
                    acc.drain_first_n += 1;
                } else {
                    acc.drain_others_sum += norm;
                    acc.drain_others_n += 1;
                }
            }
        }
    }
}
