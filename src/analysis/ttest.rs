//! Student-t statistics over seeds (no stats crate; the t quantiles come from a table): the mean with
//! its 95% confidence interval, and the paired t-test of a variant against the baseline. The maths is
//! in `report`'s module docs.

use serde::{Deserialize, Serialize};

/// t_{0.975, df} for df = 1..=30 (two-sided 95%).
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
    2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];
/// Beyond the table: (df, t) at the usual printed points; between them the next smaller df is used,
/// whose t is larger, so the interval errs on the wide (conservative) side.
const T975_TAIL: [(usize, f64); 3] = [(40, 2.021), (60, 2.000), (120, 1.980)];

/// The 0.975 quantile of Student's t with `df` degrees of freedom; None for df = 0.
pub fn t975(df: usize) -> Option<f64> {
    match df {
        0 => None,
        1..=30 => Some(T975[df - 1]),
        _ => Some(T975_TAIL.iter().rev().find(|(d, _)| df >= *d).map_or(T975[29], |&(_, t)| t)),
    }
}

/// Mean and 95% CI of one metric over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// Finite values used.
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n − 1); None for n < 2.
    pub sd: Option<f64>,
    /// t_{0.975, n−1}·s/√n; None for n < 2.
    pub ci_half_width: Option<f64>,
}

/// Mean ± 95% CI of the finite values of `xs`; None when there is none.
pub fn mean_ci(xs: &[f64]) -> Option<Stat> {
    let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n == 0 {
        return None;
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let sd = (n >= 2).then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
    let ci_half_width = sd.zip(t975(n.saturating_sub(1))).map(|(s, t)| t * s / (n as f64).sqrt());
    Some(Stat { n, mean, sd, ci_half_width })
}

/// A paired comparison of a variant with the baseline on one metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// Seeds where both values are finite.
    pub n: usize,
    /// Mean of d_i = variant_i − baseline_i (None without pairs).
    pub mean_diff: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// d̄ / (s_d/√n); None for n < 2 or s_d = 0.
    pub t: Option<f64>,
    /// Whether the 95% CI excludes 0; None when it cannot be assessed (n < 2).
    pub significant: Option<bool>,
}

/// Paired t-test of `variant` against `baseline`, index i of both being the same seed.
pub fn paired(variant: &[Option<f64>], baseline: &[Option<f64>]) -> Paired {
    let d: Vec<f64> = variant
        .iter()
        .zip(baseline)
        .filter_map(|(a, b)| Some(a.as_ref()? - b.as_ref()?))
        .filter(|d| d.is_finite())
        .collect();
    let s = mean_ci(&d);
    let mean_diff = s.as_ref().map(|s| s.mean);
    let hw = s.as_ref().and_then(|s| s.ci_half_width);
    let t = s.as_ref().and_then(|s| {
        let se = s.sd? / (s.n as f64).sqrt();
        (se > 0.0).then(|| s.mean / se)
    });
    let (ci_low, ci_high) = match (mean_diff, hw) {
        (Some(m), Some(h)) => (Some(m - h), Some(m + h)),
        _ => (None, None),
    };
    let significant = ci_low.zip(ci_high).map(|(lo, hi)| lo > 0.0 || hi < 0.0);
    Paired { n: d.len(), mean_diff, ci_low, ci_high, t, significant }
}
