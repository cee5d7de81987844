//! Streaming statistics of tensors: moments up to the fourth, max |x|, outlier counts, and the
//! per-channel infinity norm. Pure maths, no model code; `analyze` strings them together.
//!
//! `Moments` keeps, in f64, the count n, the mean μ and the central power sums
//! M_k = Σ (x − μ)^k for k = 2, 3, 4. A slice is cut into fixed chunks; each chunk is summed in two
//! passes (mean first, then deviations), which avoids the cancellation of raw power sums
//! (Σx⁴/n − 4μΣx³/n + … loses every digit when |μ| ≫ σ, e.g. LayerNorm weights ≈ 1 ± 0.01).
//! Chunks and batches are combined with the exact pairwise update of Chan et al. / Pébay (2008):
//! for A ∪ B with n = n_a + n_b and δ = μ_b − μ_a,
//!
//!   μ  = μ_a + δ n_b / n
//!   M2 = M2_a + M2_b + δ² n_a n_b / n
//!   M3 = M3_a + M3_b + δ³ n_a n_b (n_a − n_b) / n² + 3δ (n_a M2_b − n_b M2_a) / n
//!   M4 = M4_a + M4_b + δ⁴ n_a n_b (n_a² − n_a n_b + n_b²) / n³
//!        + 6δ² (n_a² M2_b + n_b² M2_a) / n² + 4δ (n_a M3_b − n_b M3_a) / n
//!
//! so streaming over batches gives the moments of all elements at once, up to rounding. The chunk
//! results are merged in a fixed order, so the result does not depend on the number of threads.
//!
//! Population moments throughout: σ² = M2 / n (not n − 1), as in golden/README.md's stats.json.
//! Non-finite values (NaN, ±inf) are counted apart and left out of every other statistic, so one bad
//! activation cannot turn the whole report into NaN.

use crate::{Error, Result};
use rayon::prelude::*;

/// LLM.int8()'s outlier threshold (Dettmers et al. 2022): activations with |x| > 6.
pub const LLM_INT8_THRESHOLD: f64 = 6.0;

/// Elements per chunk: each chunk is one rayon task and one two-pass sum.
const CHUNK: usize = 1 << 15;

/// Streaming moments of a set of numbers, plus max |x| and the count of |x| > threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Moments {
    n: u64,
    mean: f64,
    m2: f64,
    m3: f64,
    m4: f64,
    min: f64,
    max: f64,
    max_abs: f64,
    threshold: f64,
    above: u64,
    nonfinite: u64,
}

impl Default for Moments {
    fn default() -> Self {
        Moments::new(LLM_INT8_THRESHOLD)
    }
}

impl Moments {
    /// Empty; `outliers()` will count |x| > `threshold`.
    pub fn new(threshold: f64) -> Self {
        Moments {
            n: 0,
            mean: 0.0,
            m2: 0.0,
            m3: 0.0,
            m4: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            max_abs: 0.0,
            threshold,
            above: 0,
            nonfinite: 0,
        }
    }

    /// The moments of `x` alone.
    pub fn of<T: Copy + Into<f64> + Sync>(x: &[T], threshold: f64) -> Self {
        let mut m = Moments::new(threshold);
        m.push(x);
        m
    }

    /// Adds every element of `x` (chunks in parallel, merged in order).
    pub fn push<T: Copy + Into<f64> + Sync>(&mut self, x: &[T]) {
        let th = self.threshold;
        if x.len() <= CHUNK {
            self.merge(&chunk(x, th));
            return;
        }
        let parts: Vec<Moments> = x.par_chunks(CHUNK).map(|c| chunk(c, th)).collect();
        for p in &parts {
            self.merge(p);
        }
    }

    /// Adds the elements that `other` has seen (Pébay's pairwise update, see the module docs). The
    /// outlier count of `other` is taken as it is: both should use the same threshold.
    pub fn merge(&mut self, other: &Moments) {
        self.nonfinite += other.nonfinite;
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            let (th, nf) = (self.threshold, self.nonfinite);
            *self = other.clone();
            self.threshold = th;
            self.nonfinite = nf;
            return;
        }
        let (na, nb) = (self.n as f64, other.n as f64);
        let n = na + nb;
        let d = other.mean - self.mean;
        let (d2, d3, d4) = (d * d, d * d * d, d * d * d * d);
        let m2 = self.m2 + other.m2 + d2 * na * nb / n;
        let m3 = self.m3 + other.m3 + d3 * na * nb * (na - nb) / (n * n) + 3.0 * d * (na * other.m2 - nb * self.m2) / n;
        let m4 = self.m4
            + other.m4
            + d4 * na * nb * (na * na - na * nb + nb * nb) / (n * n * n)
            + 6.0 * d2 * (na * na * other.m2 + nb * nb * self.m2) / (n * n)
            + 4.0 * d * (na * other.m3 - nb * self.m3) / n;
        self.mean += d * nb / n;
        (self.m2, self.m3, self.m4) = (m2, m3, m4);
        self.n += other.n;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.max_abs = self.max_abs.max(other.max_abs);
        self.above += other.above;
    }

    /// Finite elements seen.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// NaN / ±inf elements seen (excluded from everything else).
    pub fn nonfinite(&self) -> u64 {
        self.nonfinite
    }

    /// μ (0 when empty).
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// True when all finite elements are equal (or there are none): the spread is exactly 0, even if
    /// rounding made the computed M2 a few ulps above 0.
    fn constant(&self) -> bool {
        self.n == 0 || self.min == self.max
    }

    /// Population variance σ² = M2 / n.
    pub fn var(&self) -> f64 {
        if self.constant() {
            0.0
        } else {
            self.m2 / self.n as f64
        }
    }

    /// Population standard deviation σ.
    pub fn std(&self) -> f64 {
        self.var().sqrt()
    }

    /// Pearson's (raw, non-excess) kurtosis E[(x−μ)⁴] / σ⁴ = n M4 / M2²; 3 for a Gaussian, 1.8 for a
    /// uniform, and large when a few values dominate. `None` when σ = 0 (undefined).
    pub fn kurtosis(&self) -> Option<f64> {
        if self.constant() || self.m2 <= 0.0 {
            return None;
        }
        Some(self.n as f64 * self.m4 / (self.m2 * self.m2))
    }

    /// Excess kurtosis E[(x−μ)⁴] / σ⁴ − 3 (0 for a Gaussian). `None` when σ = 0.
    pub fn excess_kurtosis(&self) -> Option<f64> {
        self.kurtosis().map(|k| k - 3.0)
    }

    /// max |x| (0 when empty).
    pub fn max_abs(&self) -> f64 {
        self.max_abs
    }

    /// Count of |x| > threshold.
    pub fn outliers(&self) -> u64 {
        self.above
    }

    /// outliers / count (0 when empty).
    pub fn outlier_fraction(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.above as f64 / self.n as f64
        }
    }
}

/// One chunk, two passes: the mean, then the central power sums.
fn chunk<T: Copy + Into<f64>>(x: &[T], threshold: f64) -> Moments {
    let mut m = Moments::new(threshold);
    let mut sum = 0.0;
    for &v in x {
        let v: f64 = v.into();
        if !v.is_finite() {
            m.nonfinite += 1;
            continue;
        }
        m.n += 1;
        sum += v;
        m.min = m.min.min(v);
        m.max = m.max.max(v);
        m.max_abs = m.max_abs.max(v.abs());
        m.above += (v.abs() > threshold) as u64;
    }
    if m.n == 0 {
        return m;
    }
    m.mean = sum / m.n as f64;
    for &v in x {
        let v: f64 = v.into();
        if v.is_finite() {
            let d = v - m.mean;
            let d2 = d * d;
            m.m2 += d2;
            m.m3 += d2 * d;
            m.m4 += d2 * d2;
        }
    }
    m
}

/// Count of finite elements with |x − mean| > k·std (the "beyond kσ" count of weight tensors). 0 when
/// std is 0 or not finite.
pub fn count_beyond_sigmas<T: Copy + Into<f64> + Sync>(x: &[T], mean: f64, std: f64, k: f64) -> u64 {
    if !(std > 0.0 && std.is_finite()) {
        return 0;
    }
    let lim = k * std;
    x.par_chunks(CHUNK).map(|c| c.iter().filter(|&&v| (v.into() - mean).abs() > lim).count() as u64).sum()
}

/// The per-channel infinity norm ‖x[.., c]‖_∞ = max over all rows of |x[row, c]|, for row-major data
/// whose last dimension is the channel (B·T rows of C, or 4C for the MLP hidden). Non-finite values
/// are skipped (the `Moments` of the same data count them).
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelMaxAbs {
    max: Vec<f32>,
}

impl ChannelMaxAbs {
    pub fn new(channels: usize) -> Self {
        ChannelMaxAbs { max: vec![0.0; channels] }
    }

    pub fn channels(&self) -> usize {
        self.max.len()
    }

    /// Adds rows of `channels()` values; `x.len()` must be a multiple of it.
    pub fn push(&mut self, x: &[f32]) -> Result<()> {
        let c = self.max.len();
        if c == 0 || !x.len().is_multiple_of(c) {
            return Err(Error::Data(format!("{} values are not whole rows of {c} channels", x.len())));
        }
        let rows_per_task = (CHUNK / c).max(1);
        let parts: Vec<Vec<f32>> = x
            .par_chunks(rows_per_task * c)
            .map(|block| {
                let mut m = vec![0f32; c];
                for row in block.chunks_exact(c) {
                    for (m, &v) in m.iter_mut().zip(row) {
                        if v.is_finite() && v.abs() > *m {
                            *m = v.abs();
                        }
                    }
                }
                m
            })
            .collect();
        for p in parts {
            for (m, v) in self.max.iter_mut().zip(p) {
                *m = m.max(v);
            }
        }
        Ok(())
    }

    /// The norms, one per channel.
    pub fn values(&self) -> &[f32] {
        &self.max
    }

    /// The `k` channels with the largest |x|, largest first (ties: lower index first).
    pub fn top_k(&self, k: usize) -> Vec<(usize, f32)> {
        let mut idx: Vec<usize> = (0..self.max.len()).collect();
        idx.sort_by(|&a, &b| self.max[b].total_cmp(&self.max[a]).then(a.cmp(&b)));
        idx.into_iter().take(k).map(|i| (i, self.max[i])).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn one_two_three_four_by_hand() {
        // μ = 2.5; deviations ±0.5, ±1.5; σ² = (0.25+2.25)·2/4 = 1.25;
        // E[(x−μ)⁴] = (0.0625+5.0625)·2/4 = 2.5625; kurtosis = 2.5625/1.5625 = 1.64.
        let m = Moments::of(&[1f32, 2., 3., 4.], 3.5);
        assert_eq!(m.count(), 4);
        assert!(close(m.mean(), 2.5, 1e-15));
        assert!(close(m.var(), 1.25, 1e-15));
        assert!(close(m.kurtosis().unwrap(), 1.64, 1e-14));
        assert!(close(m.excess_kurtosis().unwrap(), -1.36, 1e-14));
        assert_eq!((m.max_abs(), m.outliers(), m.outlier_fraction()), (4.0, 1, 0.25));
    }

    #[test]
    fn constant_tensor_has_no_kurtosis() {
        let m = Moments::of(&vec![0.1f32; 100_000], 6.0);
        assert_eq!(m.var(), 0.0);
        assert_eq!(m.kurtosis(), None);
        assert_eq!(m.excess_kurtosis(), None);
        assert!(close(m.mean(), 0.1f32 as f64, 1e-12));
        let e = Moments::new(6.0);
        assert_eq!((e.count(), e.mean(), e.var(), e.kurtosis(), e.max_abs()), (0, 0.0, 0.0, None, 0.0));
    }

    #[test]
    fn streaming_in_chunks_equals_all_at_once() {
        // Skewed, heavy-tailed and offset data, long enough to span several parallel chunks.
        let mut rng = Rng::new(7, 0);
        let x: Vec<f64> = (0..200_003).map(|_| 3.0 + rng.normal().powi(3) * 0.5).collect();
        let all = Moments::of(&x, 6.0);
        let mut s = Moments::new(6.0);
        for piece in x.chunks(997) {
            s.push(piece);
        }
        // Reference by two passes over everything.
        let n = x.len() as f64;
        let mu = x.iter().sum::<f64>() / n;
        let c = |k: i32| x.iter().map(|v| (v - mu).powi(k)).sum::<f64>() / n;
        let kurt = c(4) / (c(2) * c(2));
        for m in [&all, &s] {
            assert!(close(m.mean(), mu, 1e-12) && close(m.var(), c(2), 1e-12));
            assert!(close(m.kurtosis().unwrap(), kurt, 1e-10), "{} vs {kurt}", m.kurtosis().unwrap());
            assert_eq!(m.max_abs(), x.iter().fold(0.0f64, |a, v| a.max(v.abs())));
            assert_eq!(m.outliers(), x.iter().filter(|v| v.abs() > 6.0).count() as u64);
        }
        assert_eq!(s.count(), all.count());
    }

    #[test]
    fn non_finite_values_are_counted_apart() {
        let m = Moments::of(&[1f32, f32::NAN, 2., f32::INFINITY, 3., 4.], 6.0);
        assert_eq!((m.count(), m.nonfinite()), (4, 2));
        assert!(close(m.kurtosis().unwrap(), 1.64, 1e-14));
        let mut c = ChannelMaxAbs::new(2);
        c.push(&[1.0, f32::NAN, -3.0, 2.0]).unwrap();
        assert_eq!(c.values(), &[3.0, 2.0]);
    }

    #[test]
    fn channel_inf_norm_and_top_k() {
        let mut c = ChannelMaxAbs::new(3);
        c.push(&[1.0, -5.0, 0.5, -2.0, 1.0, 0.5]).unwrap();
        c.push(&[0.0, 0.0, 0.25]).unwrap();
        assert_eq!(c.values(), &[2.0, 5.0, 0.5]);
        assert_eq!(c.top_k(2), vec![(1, 5.0), (0, 2.0)]);
        assert_eq!(c.top_k(10).len(), 3);
        assert!(c.push(&[1.0, 2.0]).is_err());
        assert!(ChannelMaxAbs::new(0).push(&[]).is_err());
    }

    #[test]
    fn beyond_sigmas() {
        let x = [0f32, 0., 0., 0., 10.];
        let m = Moments::of(&x, 6.0);
        assert_eq!(count_beyond_sigmas(&x, m.mean(), m.std(), 1.0), 1);
        assert_eq!(count_beyond_sigmas(&x, m.mean(), m.std(), 6.0), 0);
        assert_eq!(count_beyond_sigmas(&x, 0.0, 0.0, 6.0), 0);
    }
}
