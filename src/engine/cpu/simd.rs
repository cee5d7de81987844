//! Run-time choice of instruction set for the element-wise kernels.
//!
//! `multiversion!` compiles one `#[inline(always)]` body three times: for AVX-512, for AVX2 + FMA and
//! for the x86-64 baseline, and picks the best one the CPU has at run time, so the binary still runs on
//! a CPU without AVX-512. Rust never contracts a·b + c into an FMA on its own and never reorders
//! floating-point sums, so all three give bitwise the same results; reductions that should vectorise
//! are written with an explicit, fixed number of partial sums (`LANES`).

/// Partial sums in reductions: 16 f32 fill one AVX-512 register. Fixed, so results do not depend on the
/// instruction set.
pub const LANES: usize = 16;

/// The `LANES` partials combined pairwise (lane k with lane k + 8, then + 4, + 2, + 1): a fixed order, so
/// the result does not depend on the instruction set, in a few vector steps where a chain of 16 dependent
/// scalar operations would cost more than the vector loop itself on rows of a few dozen elements (the
/// attention rows). Measured slower where LLVM then narrows the main loop's vectors (LayerNorm's rows),
/// so `sum` and `dot` keep the chain.
#[inline(always)]
fn combine<F: Copy>(acc: [F; LANES], op: impl Fn(F, F) -> F) -> F {
    let a: [F; 8] = std::array::from_fn(|k| op(acc[k], acc[k + 8]));
    let a: [F; 4] = std::array::from_fn(|k| op(a[k], a[k + 4]));
    let a: [F; 2] = std::array::from_fn(|k| op(a[k], a[k + 2]));
    op(a[0], a[1])
}

/// Σ a_i·b_i with `LANES` partial sums, combined in a fixed order.
#[inline(always)]
pub fn dot<F: super::Real>(a: &[F], b: &[F]) -> F {
    let n = a.len().min(b.len());
    let mut acc = [F::ZERO; LANES];
    let (ac, bc) = (a[..n].chunks_exact(LANES), b[..n].chunks_exact(LANES));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s = F::ZERO;
    for (x, y) in ar.iter().zip(br) {
        s += *x * *y;
    }
    for v in acc {
        s += v;
    }
    s
}

/// Σ a_i with `LANES` partial sums.
#[inline(always)]
pub fn sum<F: super::Real>(a: &[F]) -> F {
    let mut acc = [F::ZERO; LANES];
    let c = a.chunks_exact(LANES);
    let r = c.remainder();
    for x in c {
        for k in 0..LANES {
            acc[k] += x[k];
        }
    }
    let mut s = F::ZERO;
    for x in r {
        s += *x;
    }
    for v in acc {
        s += v;
    }
    s
}

/// max_i a_i (−∞ for an empty slice) with `LANES` partial maxima: exact in any order, and unlike one chain
/// of `max` it vectorises.
#[inline(always)]
pub fn max<F: super::Real>(a: &[F]) -> F {
    let mut acc = [F::NEG_INFINITY; LANES];
    let c = a.chunks_exact(LANES);
    let r = c.remainder();
    for x in c {
        for k in 0..LANES {
            acc[k] = acc[k].max(x[k]);
        }
    }
    let mut m = combine(acc, |x, y| x.max(y));
    for &x in r {
        m = m.max(x);
    }
    m
}

/// a_i ← f(a_i) in place, returning Σ f(a_i) (partials combined pairwise, unlike `sum`), in the same
/// pass.
#[inline(always)]
pub fn map_sum<F: super::Real>(a: &mut [F], f: impl Fn(F) -> F) -> F {
    let mut acc = [F::ZERO; LANES];
    let mut c = a.chunks_exact_mut(LANES);
    for x in &mut c {
        for k in 0..LANES {
            x[k] = f(x[k]);
            acc[k] += x[k];
        }
    }
    let mut s = combine(acc, |x, y| x + y);
    for x in c.into_remainder() {
        *x = f(*x);
        s += *x;
    }
    s
}

/// `multiversion! { pub fn name<F: Real>(args) { body } }` defines `name`, dispatching at run time to
/// copies of `body` compiled with AVX-512 or AVX2+FMA enabled when the CPU has them.
#[macro_export]
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident <$F:ident : Real> ($($a:ident : $t:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name<$F: $crate::engine::cpu::Real>($($a: $t),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn inner<$F: $crate::engine::cpu::Real>($($a: $t),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v4<$F: $crate::engine::cpu::Real>($($a: $t),*) $(-> $ret)? { inner::<$F>($($a),*) }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v3<$F: $crate::engine::cpu::Real>($($a: $t),*) $(-> $ret)? { inner::<$F>($($a),*) }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                {
                    // SAFETY: the CPU has the features v4 was compiled for.
                    return unsafe { v4::<$F>($($a),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above, for v3.
                    return unsafe { v3::<$F>($($a),*) };
                }
            }
            inner::<$F>($($a),*)
        }
    };
}
