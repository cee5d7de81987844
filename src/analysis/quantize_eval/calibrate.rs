//! Calibration and fake quantization of the Linear inputs, as probes on the forward pass: min-max
//! ranges, percentile histograms, and the quantizer that rounds each input to its calibrated grid.

use super::site;
use crate::analysis::quant::QuantParams;
use crate::engine::cpu::{Linear, Probe};

/// Records the min and max of every Linear input (leaves them unchanged).
pub(super) struct MinMaxProbe {
    pub(super) ranges: Vec<(f32, f32)>,
}

impl Probe for MinMaxProbe {
    fn linear_input(&mut self, layer: usize, linear: Linear, x: &mut [f32]) {
        if let Some(r) = self.ranges.get_mut(site(layer, linear)) {
            *r = x.iter().filter(|v| v.is_finite()).fold(*r, |(lo, hi), &v| (lo.min(v), hi.max(v)));
        }
    }
}

/// Fixed-size histograms of every Linear input over its calibrated [min, max].
pub(super) struct HistogramProbe {
    pub(super) hists: Vec<Histogram>,
}

impl Probe for HistogramProbe {
    fn linear_input(&mut self, layer: usize, linear: Linear, x: &mut [f32]) {
        if let Some(h) = self.hists.get_mut(site(layer, linear)) {
            h.add(x);
        }
    }
}

/// Fake-quantizes every Linear input with its calibrated parameters.
pub(super) struct FakeQuantProbe {
    pub(super) params: Vec<QuantParams>,
}

impl Probe for FakeQuantProbe {
    fn linear_input(&mut self, layer: usize, linear: Linear, x: &mut [f32]) {
        if let Some(p) = self.params.get(site(layer, linear)) {
            x.iter_mut().for_each(|v| *v = p.apply(*v));
        }
    }
}

/// 2^15 equal bins over [lo, hi]: 256 KiB per site whatever the calibration size. A percentile is
/// located to within one bin, (hi − lo)/32768, far below the 8-bit step (hi − lo)/255 of even the
/// unclipped range.
#[derive(Clone, Debug)]
pub struct Histogram {
    lo: f32,
    hi: f32,
    counts: Vec<u64>,
}

const BINS: usize = 1 << 15;

impl Histogram {
    pub fn new(lo: f32, hi: f32) -> Self {
        Histogram { lo, hi, counts: vec![0; BINS] }
    }

    /// Count the finite values of x; values outside [lo, hi] go to the end bins.
    pub fn add(&mut self, x: &[f32]) {
        let (lo, span) = (self.lo as f64, self.hi as f64 - self.lo as f64);
        let per = if span > 0.0 { BINS as f64 / span } else { 0.0 };
        for &v in x.iter().filter(|v| v.is_finite()) {
            let i = ((v as f64 - lo) * per).max(0.0) as usize;
            self.counts[i.min(BINS - 1)] += 1;
        }
    }

    /// [lo_p, hi_p] with at most ⌊(1 − p/100)·n⌋ of the n values below lo_p and as many above hi_p:
    /// hi_p is the upper edge of the bin where the top tail first exceeds that count (lo_p the lower
    /// edge, from below), so the range errs on the wide side by under one bin. p = 100 gives [lo, hi].
    pub fn percentile_range(&self, p: f64) -> (f32, f32) {
        let n: u64 = self.counts.iter().sum();
        let tail = ((1.0 - p / 100.0).max(0.0) * n as f64).floor() as u64;
        let width = (self.hi as f64 - self.lo as f64) / BINS as f64;
        let edge = |i: usize| (self.lo as f64 + i as f64 * width) as f32;
        let first = |mut it: Box<dyn Iterator<Item = usize> + '_>| {
            let mut cum = 0;
            it.find(|&i| {
                cum += self.counts[i];
                cum > tail
            })
        };
        match (first(Box::new(0..BINS)), first(Box::new((0..BINS).rev()))) {
            (Some(a), Some(b)) if n > 0 => (edge(a).max(self.lo), edge(b + 1).min(self.hi)),
            _ => (self.lo, self.hi),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles() {
        // 0..9999 and one outlier at 1e6: p99.99 clips only the outlier, p100 keeps it.
        let mut x: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
        x.push(1e6);
        let mut h = Histogram::new(0.0, 1e6);
        h.add(&x);
        let (lo, hi) = h.percentile_range(99.99);
        assert_eq!(lo, 0.0);
        assert!((9_999.0..9_999.0 + 1e6 / BINS as f32 + 1.0).contains(&hi), "{hi}");
        assert_eq!(h.percentile_range(100.0), (0.0, 1e6));
        // a constant input: the range collapses to the point and stays finite
        let mut h = Histogram::new(2.0, 2.0);
        h.add(&[2.0; 10]);
        assert_eq!(h.percentile_range(99.0), (2.0, 2.0));
    }
}
