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
    #[inline]
    pub fn add(&mut self, backward: bool, op: Op, since: Instant) {
        let s = since.elapsed().as_secs_f64();
        if backward {
            self.backward[op as usize] += s;
        } else {
            self.forward[op as usize] += s;
        }
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

/// `timed!(profile, backward?, Op, expr)`: evaluate `expr`, adding its wall time to the profile.
#[macro_export]
macro_rules! timed {
    ($prof:expr, $bwd:expr, $op:expr, $e:expr) => {{
        let t0 = std::time::Instant::now();
        let r = $e;
        $prof.add($bwd, $op, t0);
        r
    }};
}
