//! bf16 ↔ f32 on the host, as `__float2bfloat16` (round to nearest, ties to even) and
//! `__bfloat162float` do on the device: how `upload` and `download` convert the X buffers of a bf16 plan.

/// f32 → bf16 bits, rounded to nearest with ties to even; NaN stays a (quiet) NaN of the same sign,
/// values beyond bf16's largest finite round to infinity.
pub fn from_f32(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x0040) as u16;
    }
    // Add just under half an ulp of bf16, plus one when the kept part is odd (ties go to even).
    let lsb = (b >> 16) & 1;
    ((b + 0x7fff + lsb) >> 16) as u16
}

/// bf16 bits → f32 (exact).
pub fn to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Converts a slice (the lengths must match).
pub fn encode(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len());
    for (d, s) in dst.iter_mut().zip(src) {
        *d = from_f32(*s);
    }
}

pub fn decode(src: &[u16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    for (d, s) in dst.iter_mut().zip(src) {
        *d = to_f32(*s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_values_round_trip() {
        for x in [0.0f32, -0.0, 1.0, -2.0, 0.5, 3.0, 1.0 + 1.0 / 128.0, f32::INFINITY, f32::NEG_INFINITY] {
            assert_eq!(to_f32(from_f32(x)).to_bits(), x.to_bits(), "{x}");
        }
        // Every bf16 value survives f32 and back.
        for h in 0..=u16::MAX {
            let x = to_f32(h);
            if !x.is_nan() {
                assert_eq!(from_f32(x), h, "{h:#06x}");
            }
        }
    }

    #[test]
    fn rounds_to_nearest_ties_to_even() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: to even (1); 1 + 3·2^-8 is halfway between
        // 1 + 2^-7 (odd) and 1 + 2^-6: to even (up).
        assert_eq!(to_f32(from_f32(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(to_f32(from_f32(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        // Just above and below the half: to nearest.
        let half_up = f32::from_bits((1.0f32 + 1.0 / 256.0).to_bits() + 1);
        assert_eq!(to_f32(from_f32(half_up)), 1.0 + 1.0 / 128.0);
        let half_down = f32::from_bits((1.0f32 + 1.0 / 256.0).to_bits() - 1);
        assert_eq!(to_f32(from_f32(half_down)), 1.0);
        // Negative values mirror positive ones.
        assert_eq!(to_f32(from_f32(-(1.0 + 3.0 / 256.0))), -(1.0 + 4.0 / 256.0));
        // The largest finite f32 is beyond bf16's largest finite: infinity. bf16's max stays.
        assert_eq!(to_f32(from_f32(f32::MAX)), f32::INFINITY);
        assert_eq!(to_f32(from_f32(to_f32(0x7f7f))), to_f32(0x7f7f));
        // Subnormals round the same way.
        let tiny = f32::from_bits(0x0000_8000); // halfway between bf16 0 and its smallest subnormal
        assert_eq!(from_f32(tiny), 0);
        assert_eq!(from_f32(f32::from_bits(0x0001_8000)), 0x0002);
    }

    #[test]
    fn nan_stays_nan() {
        for bits in [0x7fc0_0000u32, 0x7f80_0001, 0xffc0_0000, 0x7fff_ffff] {
            let x = f32::from_bits(bits);
            let h = from_f32(x);
            assert!(to_f32(h).is_nan(), "{bits:#x} → {h:#x}");
            assert_eq!(h >> 15, (bits >> 31) as u16);
        }
    }

    /// Against the rounding done in f64 arithmetic: the nearest bf16, ties to the even mantissa.
    #[test]
    fn matches_a_reference_rounding() {
        let mut s = 0x9e37_79b9u32;
        for _ in 0..100_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let x = f32::from_bits(s);
            if !x.is_finite() || x.abs() >= to_f32(0x7f7f) {
                continue;
            }
            let h = from_f32(x);
            let (lo, hi) = (h & 0x7fff, (h & 0x7fff) + 1);
            let (below, above) = ((h & 0x8000) | (lo.saturating_sub(1)), (h & 0x8000) | hi);
            let d = |c: u16| (to_f32(c) as f64 - x as f64).abs();
            assert!(d(h) <= d(below) && d(h) <= d(above), "{x:e}: {h:#x}");
            if d(h) == d(above) || (lo > 0 && d(h) == d(below)) {
                assert_eq!(h & 1, 0, "a tie must go to even: {x:e}");
            }
        }
    }
}
