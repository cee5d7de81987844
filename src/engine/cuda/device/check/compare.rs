//! How the self-test compares a GPU result with its reference, and its tolerances.
//!
//! - f32 (TF32 off), one op at a time with identical inputs: max |got − ref| ≤ 1e-4 · max |ref| over
//!   the view (the error relative to the tensor's scale; reduction order and 1-ulp differences of
//!   exp/erf give ~1e-6, a wrong index or a missed term gives O(1)).
//! - bf16 against the f32 reference at the end of a forward and backward, llm.c's `check_tensor` rule
//!   made scale-free: per element |got − ref| ≤ 0.079 · |ref| + 0.05 · max |ref| (0.079: llm.c's "bf16
//!   epsilon"; its absolute thresholds, 4e-3…6e-1 for GPT-2 124M's gradients, become 5 % of each
//!   tensor's largest magnitude here); the loss within 0.05 (llm.c's bf16 loss threshold).
//!
//! In both, a non-finite value where the reference is finite (or the reverse) fails.

use serde::Serialize;

/// f32: the largest difference allowed, relative to the reference's largest magnitude.
pub const F32_REL_TO_MAX: f64 = 1e-4;
/// bf16: the per-element relative part (llm.c's bf16 epsilon).
pub const BF16_REL: f64 = 0.079;
/// bf16: the absolute part, as a fraction of the tensor's largest magnitude.
pub const BF16_ABS_OF_MAX: f64 = 0.05;
/// bf16: the loss.
pub const BF16_LOSS: f64 = 0.05;

/// The comparison of one tensor.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Diff {
    pub what: String,
    pub n: usize,
    pub max_abs: f64,
    /// max |ref|
    pub max_ref: f64,
    /// max_abs / max_ref
    pub rel_to_max: f64,
    /// Where max_abs is, and the two values there.
    pub worst: usize,
    pub got: f64,
    pub want: f64,
    /// Elements that are finite in one and not in the other.
    pub nonfinite: usize,
    /// Elements beyond the tolerance (bf16's per-element rule; for f32, 0 or n).
    pub over: usize,
    pub ok: bool,
}

fn measure(what: &str, got: &[f32], want: &[f32]) -> Diff {
    assert_eq!(got.len(), want.len(), "{what}");
    let mut d = Diff {
        what: what.to_string(),
        n: got.len(),
        max_abs: 0.0,
        max_ref: 0.0,
        rel_to_max: 0.0,
        worst: 0,
        got: 0.0,
        want: 0.0,
        nonfinite: 0,
        over: 0,
        ok: true,
    };
    let mut first_nonfinite = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g as f64, w as f64);
        if g.is_finite() != w.is_finite() || g.is_nan() != w.is_nan() {
            d.nonfinite += 1;
            first_nonfinite.get_or_insert((i, g, w));
            continue;
        }
        if !w.is_finite() {
            continue; // the same infinity or NaN in both
        }
        d.max_ref = d.max_ref.max(w.abs());
        let e = (g - w).abs();
        if e > d.max_abs {
            (d.max_abs, d.worst, d.got, d.want) = (e, i, g, w);
        }
    }
    // The first non-finite disagreement is the one to show.
    if let Some((i, g, w)) = first_nonfinite {
        (d.worst, d.got, d.want) = (i, g, w);
    }
    d.rel_to_max = if d.max_ref > 0.0 {
        d.max_abs / d.max_ref
    } else if d.max_abs > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    d
}

/// f32: ok iff max |got − want| ≤ `F32_REL_TO_MAX` · max |want| and no finiteness differs.
pub fn f32_diff(what: &str, got: &[f32], want: &[f32]) -> Diff {
    let mut d = measure(what, got, want);
    d.ok = d.nonfinite == 0 && d.max_abs <= F32_REL_TO_MAX * d.max_ref;
    if !d.ok {
        d.over = d.n;
    }
    d
}

/// bf16: ok iff every element has |got − want| ≤ `BF16_REL` · |want| + `BF16_ABS_OF_MAX` · max |want|
/// and no finiteness differs.
pub fn bf16_diff(what: &str, got: &[f32], want: &[f32]) -> Diff {
    let mut d = measure(what, got, want);
    let floor = BF16_ABS_OF_MAX * d.max_ref;
    d.over = got
        .iter()
        .zip(want)
        .filter(|(g, w)| {
            w.is_finite() && g.is_finite() && ((**g - **w).abs() as f64) > BF16_REL * (w.abs() as f64) + floor
        })
        .count();
    d.ok = d.nonfinite == 0 && d.over == 0;
    d
}

/// Whether two f32 slices are the same bits (the determinism check).
pub fn bitwise_equal(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_tolerance_is_relative_to_the_tensor_scale() {
        let want = [1.0f32, -2.0, 0.5, 0.0];
        let ok = f32_diff("t", &[1.0, -2.0001, 0.5, 1e-4], &want);
        assert!(ok.ok && (ok.rel_to_max - 5e-5).abs() < 1e-6, "{ok:?}");
        let bad = f32_diff("t", &[1.0, -2.0, 0.5, 1e-3], &want);
        assert!(!bad.ok && bad.worst == 3 && bad.want == 0.0 && (bad.got - 1e-3).abs() < 1e-9, "{bad:?}");
        // NaN where the reference is finite fails even if everything else agrees.
        let nan = f32_diff("t", &[1.0, f32::NAN, 0.5, 0.0], &want);
        assert!(!nan.ok && nan.nonfinite == 1 && nan.worst == 1, "{nan:?}");
        // The same infinity in both is agreement; a zero tensor equals a zero tensor.
        assert!(f32_diff("t", &[f32::INFINITY, 1.0], &[f32::INFINITY, 1.0]).ok);
        assert!(f32_diff("t", &[0.0; 3], &[0.0; 3]).ok);
        assert!(!f32_diff("t", &[0.0, 1e-30], &[0.0; 2]).ok);
    }

    #[test]
    fn bf16_tolerance_is_llmc_check_tensor_scale_free() {
        // max |ref| = 10: floor 0.5; element 1 (ref 1) may be off by 0.079 + 0.5.
        let want = [10.0f32, 1.0, 0.0];
        assert!(bf16_diff("t", &[10.7, 1.57, -0.49], &want).ok);
        let d = bf16_diff("t", &[10.0, 1.6, 0.0], &want);
        assert!(!d.ok && d.over == 1, "{d:?}");
        assert!(!bf16_diff("t", &[f32::NAN, 1.0, 0.0], &want).ok);
    }

    #[test]
    fn bitwise() {
        assert!(bitwise_equal(&[1.0, -0.0], &[1.0, -0.0]));
        assert!(!bitwise_equal(&[0.0], &[-0.0]));
        assert!(!bitwise_equal(&[1.0], &[1.0, 2.0]));
    }
}
