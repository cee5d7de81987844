//! Uniform affine fake quantization: x ↦ dequant(quant(x)), in f32, in place.
//!
//! With `b` bits, a scale s > 0 and an integer zero point z, a value is mapped to the grid
//!
//!   q = clamp(round(x / s) + z, q_min, q_max),   x̂ = (q − z) · s
//!
//! Two conventions:
//! * asymmetric (activations): q ∈ [0, 2^b − 1], s = (max − min) / (2^b − 1), z = round(−min / s)
//!   clamped to [0, 2^b − 1]. Zero is exactly representable: x = 0 gives q = z, x̂ = 0 (the padding
//!   and ReLU/GELU zeros stay zero).
//! * symmetric (weights): z = 0 and the *restricted* range q ∈ [−(2^(b−1) − 1), 2^(b−1) − 1]
//!   (−127..127 for 8 bits, −7..7 for 4 bits), s = max|x| / (2^(b−1) − 1). The restricted range gives up
//!   the level −2^(b−1) so that the grid is symmetric about 0 (as in most int8 GEMM libraries).
//!
//! The range is always widened to include 0 (min ≤ 0 ≤ max). Rounding is half-to-even, as
//! `torch.fake_quantize_per_tensor_affine`. Inside the range the error is at most s/2; outside it the
//! value is clipped to the nearest end of the grid.
//!
//! A degenerate range [0, 0] (an all-zero tensor or row) has s = 0: its grid is the single point 0,
//! so every value becomes 0 — the limit of clipping to an empty range, with no division by zero and no
//! NaN. Any non-zero constant c gives a proper range ([0, c] or [c, 0]) and c lands on the end level,
//! reproduced up to f32 rounding of (q − z) · s (a relative error of a few ulp, documented in tests).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// How a tensor is quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantScheme {
    /// Bits per value, 2..=16.
    pub bits: u32,
    /// Symmetric (z = 0, restricted range) or asymmetric (unsigned levels with a zero point).
    pub symmetric: bool,
    /// One (scale, zero point) per output channel: per row of an (OC, C) weight matrix.
    pub per_channel: bool,
}

impl QuantScheme {
    /// Symmetric per-tensor weights.
    pub fn weights(bits: u32) -> Self {
        QuantScheme { bits, symmetric: true, per_channel: false }
    }

    /// Symmetric per-output-channel weights.
    pub fn weights_per_channel(bits: u32) -> Self {
        QuantScheme { bits, symmetric: true, per_channel: true }
    }

    /// Asymmetric per-tensor activations.
    pub fn activations(bits: u32) -> Self {
        QuantScheme { bits, symmetric: false, per_channel: false }
    }

    pub fn validate(&self) -> Result<()> {
        if !(2..=16).contains(&self.bits) {
            return Err(Error::Config(format!("quantization needs 2 to 16 bits, got {}", self.bits)));
        }
        Ok(())
    }

    /// The integer levels [q_min, q_max].
    pub fn levels(&self) -> (i32, i32) {
        if self.symmetric {
            let m = (1i32 << (self.bits - 1)) - 1;
            (-m, m)
        } else {
            (0, (1i32 << self.bits) - 1)
        }
    }

    /// Scale and zero point for values in [min, max] (widened to include 0).
    pub fn params(&self, min: f32, max: f32) -> Result<QuantParams> {
        self.validate()?;
        if !min.is_finite() || !max.is_finite() || min > max {
            return Err(Error::Data(format!("cannot quantize the range [{min}, {max}]")));
        }
        let (lo, hi) = (min.min(0.0), max.max(0.0));
        let (qmin, qmax) = self.levels();
        if self.symmetric {
            let scale = lo.abs().max(hi) / qmax as f32;
            return Ok(QuantParams { scale, zero_point: 0, qmin, qmax });
        }
        // f64 for the span: hi − lo can overflow f32 when both ends are near ±f32::MAX.
        let scale = ((hi as f64 - lo as f64) / qmax as f64) as f32;
        let zero_point = if scale > 0.0 { ((-lo / scale).round_ties_even() as i32).clamp(qmin, qmax) } else { 0 };
        Ok(QuantParams { scale, zero_point, qmin, qmax })
    }

    /// Fake-quantize `x`, seen as `rows` rows (output channels) when per-channel, with its own range
    /// (min-max of the tensor or of each row; the symmetric range is ±max|x|).
    pub fn fake_quantize_minmax(&self, x: &mut [f32], rows: usize) -> Result<()> {
        if !self.per_channel {
            let (min, max) = min_max(x);
            return fake_quantize(x, &self.params(min, max)?);
        }
        if rows == 0 || !x.len().is_multiple_of(rows) {
            return Err(Error::Data(format!("cannot split {} values into {rows} channels", x.len())));
        }
        for row in x.chunks_exact_mut(x.len() / rows) {
            let (min, max) = min_max(row);
            fake_quantize(row, &self.params(min, max)?)?;
        }
        Ok(())
    }
}

/// Scale, zero point and integer levels of one quantizer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantParams {
    pub scale: f32,
    pub zero_point: i32,
    pub qmin: i32,
    pub qmax: i32,
}

impl QuantParams {
    /// The representable range [(q_min − z)·s, (q_max − z)·s].
    pub fn range(&self) -> (f32, f32) {
        ((self.qmin - self.zero_point) as f32 * self.scale, (self.qmax - self.zero_point) as f32 * self.scale)
    }

    /// dequant(quant(x)) of one value.
    #[inline]
    pub fn apply(&self, x: f32) -> f32 {
        if self.scale == 0.0 {
            return 0.0; // the grid is {0}
        }
        let z = self.zero_point as f32;
        // x / s may be ±inf for a tiny scale: the clamp maps it to the end level. NaN stays NaN.
        let q = ((x / self.scale).round_ties_even() + z).clamp(self.qmin as f32, self.qmax as f32);
        (q - z) * self.scale
    }
}

/// x ← dequant(quant(x)) with one set of parameters; rejects parameters that no scheme produces.
pub fn fake_quantize(x: &mut [f32], p: &QuantParams) -> Result<()> {
    if !(p.scale >= 0.0 && p.scale.is_finite()) || p.qmin > p.qmax || !(p.qmin..=p.qmax).contains(&p.zero_point) {
        return Err(Error::Config(format!("invalid quantization parameters {p:?}")));
    }
    x.iter_mut().for_each(|v| *v = p.apply(*v));
    Ok(())
}

/// (min, max) of the finite values of x; (0, 0) when there are none.
pub fn min_max(x: &[f32]) -> (f32, f32) {
    let (lo, hi) = x
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if lo > hi {
        (0.0, 0.0)
    } else {
        (lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(scheme: QuantScheme, x: &[f32]) -> Vec<f32> {
        let mut y = x.to_vec();
        scheme.fake_quantize_minmax(&mut y, 1).unwrap();
        y
    }

    #[test]
    fn levels_and_params() {
        assert_eq!(QuantScheme::weights(8).levels(), (-127, 127));
        assert_eq!(QuantScheme::weights(4).levels(), (-7, 7));
        assert_eq!(QuantScheme::activations(8).levels(), (0, 255));
        let p = QuantScheme::activations(8).params(-1.0, 3.0).unwrap();
        assert_eq!((p.scale, p.zero_point), (4.0 / 255.0, 64)); // round(1 / (4/255)) = round(63.75)
        let p = QuantScheme::weights(8).params(-2.0, 1.0).unwrap();
        assert_eq!((p.scale, p.zero_point), (2.0 / 127.0, 0));
        // an all-positive range is widened to [0, max]: z = 0
        let p = QuantScheme::activations(8).params(2.0, 5.0).unwrap();
        assert_eq!((p.scale, p.zero_point), (5.0 / 255.0, 0));
        let p = QuantScheme::activations(8).params(-5.0, -2.0).unwrap();
        assert_eq!(p.zero_point, 255);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(QuantScheme::activations(1).params(0.0, 1.0).is_err());
        assert!(QuantScheme::activations(17).params(0.0, 1.0).is_err());
        assert!(QuantScheme::activations(8).params(f32::NAN, 1.0).is_err());
        assert!(QuantScheme::activations(8).params(2.0, 1.0).is_err());
        let bad = QuantParams { scale: f32::NAN, zero_point: 0, qmin: 0, qmax: 255 };
        assert!(fake_quantize(&mut [1.0], &bad).is_err());
        assert!(QuantScheme::weights_per_channel(8).fake_quantize_minmax(&mut [1.0; 5], 2).is_err());
        assert!(QuantScheme::weights_per_channel(8).fake_quantize_minmax(&mut [1.0; 5], 0).is_err());
    }

    #[test]
    fn zero_and_constants() {
        for s in [QuantScheme::activations(8), QuantScheme::weights(8), QuantScheme::weights(4)] {
            assert_eq!(q(s, &[0.0; 4]), vec![0.0; 4]);
            for c in [3.0f32, -0.7, 1e-30, 1e30] {
                for v in q(s, &[c; 4]) {
                    assert!((v - c).abs() <= 4.0 * f32::EPSILON * c.abs(), "{s:?} {c} -> {v}");
                }
            }
        }
        // the single-point grid of a degenerate range sends everything to 0
        let p = QuantScheme::activations(8).params(0.0, 0.0).unwrap();
        assert_eq!((p.apply(5.0), p.apply(-1.0)), (0.0, 0.0));
        // extreme ranges stay finite
        let p = QuantScheme::activations(8).params(-f32::MAX, f32::MAX).unwrap();
        assert!(p.scale.is_finite() && p.apply(1e38).is_finite());
    }
}
