//! Time spent per kind of kernel, accumulated across calls; read by `quietgpt bench`.
//! Taking an `Instant` costs tens of nanoseconds against kernels of tens of microseconds or more.

use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Encoder,
    LayerNorm,
    Matmul,
    Attention,
    Gelu,
    /// The residual add fused with the LayerNorm after it.
    Residual,
    CrossEntropy,
    Dropout,
}

impl Op {
    pub const ALL: [Op; 8] =
        [Op::Encoder, Op::LayerNorm, Op::Matmul, Op::Attention, Op::Gelu, Op::Residual, Op::CrossEntropy, Op::Dropout];

    pub fn name(self) -> &'static str {
        match self {
            Op::Encoder => "encoder",
            Op::LayerNorm => "layernorm",
            Op::Matmul => "matmul",
            Op::Attention => "attention",
            Op::Gelu => "gelu",
            Op::Residual => "residual+layernorm",
            Op::CrossEntropy => "crossentropy",
            Op::Dropout => "dropout",
        }
    }
}

/// Seconds per (forward | backward, op).
#[derive(Clone, Debug, Default)]
pub struct Profile {
    pub forward: [f64; 8],
    pub backward: [f64; 8],
}

impl Profile {
    /// Runs a forward kernel, adding its wall time to `op`.
    #[inline]
    pub fn fwd<R>(&mut self, op: Op, kernel: impl FnOnce() -> R) -> R {
        let t0 = Instant::now();
        let r = kernel();
        self.forward[op as usize] += t0.elapsed().as_secs_f64();
        r
    }

    /// Runs a backward kernel, adding its wall time to `op`.
    #[inline]
    pub fn bwd<R>(&mut self, op: Op, kernel: impl FnOnce() -> R) -> R {
        let t0 = Instant::now();
        let r = kernel();
        self.backward[op as usize] += t0.elapsed().as_secs_f64();
        r
    }

    /// Adds another profile's times to this one.
    pub fn merge(&mut self, other: &Profile) {
        for (a, b) in self.forward.iter_mut().zip(&other.forward).chain(self.backward.iter_mut().zip(&other.backward)) {
            *a += b;
        }
    }

    pub fn reset(&mut self) {
        *self = Profile::default();
    }
}
