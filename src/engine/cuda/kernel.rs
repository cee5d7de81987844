//! The kernels of the GPU engine: one entry per `extern "C" __global__` function of `kernels/*.cu`, with
//! its C signature (the contract between the plan, the CUDA executor that launches it, the CPU replay
//! that stands in for it, and the CUDA source) and its launch geometry. The compile checks
//! (tests/cuda_compile.rs) hold every `.cu` file to these signatures.
//!
//! Conventions. `X` pointers are the plan's activation type (`floatX` in the sources: `__nv_bfloat16`
//! or `float`, chosen by the `-DQG_BF16` define at compile time); `F32` pointers are `float*`, `U32`
//! `unsigned int*`; an `Opt` pointer may be null. Integers are `int`, `U64` `unsigned long long`, `F32`
//! `float`. Outputs come first. "+=" marks an output the kernel adds to.

use crate::config::AttentionKind;

/// How one argument of a kernel is passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    X,
    OptX,
    F32,
    OptF32,
    U32,
    I32,
    U64,
    Float,
}

/// A row normaliser of attention scores (one per distinct rule of the attention variants; the gated
/// variants normalise as softmax).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowKernel {
    Softmax,
    Quiet,
    Sink,
    Clipped,
    Relu,
    Sigmoid,
    Softpick,
}

impl RowKernel {
    pub const ALL: [RowKernel; 7] = [
        RowKernel::Softmax,
        RowKernel::Quiet,
        RowKernel::Sink,
        RowKernel::Clipped,
        RowKernel::Relu,
        RowKernel::Sigmoid,
        RowKernel::Softpick,
    ];

    /// The one switch from the attention variant to its row kernel.
    pub fn of(kind: AttentionKind) -> RowKernel {
        match kind {
            AttentionKind::Softmax | AttentionKind::Gated | AttentionKind::Outgate => RowKernel::Softmax,
            AttentionKind::Quiet => RowKernel::Quiet,
            AttentionKind::Sink => RowKernel::Sink,
            AttentionKind::Clipped => RowKernel::Clipped,
            AttentionKind::Relu => RowKernel::Relu,
            AttentionKind::Sigmoid => RowKernel::Sigmoid,
            AttentionKind::Softpick => RowKernel::Softpick,
        }
    }

    /// The attention variant whose row rule this is (the gated variants' rule is softmax's).
    pub fn kind(self) -> AttentionKind {
        match self {
            RowKernel::Softmax => AttentionKind::Softmax,
            RowKernel::Quiet => AttentionKind::Quiet,
            RowKernel::Sink => AttentionKind::Sink,
            RowKernel::Clipped => AttentionKind::Clipped,
            RowKernel::Relu => AttentionKind::Relu,
            RowKernel::Sigmoid => AttentionKind::Sigmoid,
            RowKernel::Softpick => AttentionKind::Softpick,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RowKernel::Softmax => "softmax",
            RowKernel::Quiet => "quiet",
            RowKernel::Sink => "sink",
            RowKernel::Clipped => "clipped",
            RowKernel::Relu => "relu",
            RowKernel::Sigmoid => "sigmoid",
            RowKernel::Softpick => "softpick",
        }
    }

    /// Whether the backward reads the scores (preatt) as well as the weights (clipped, softpick).
    pub fn needs_scores(self) -> bool {
        matches!(self, RowKernel::Clipped | RowKernel::Softpick)
    }
}

/// The MLP's activation as a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActKernel {
    GeluErf,
    GeluTanh,
    Relu,
}

impl ActKernel {
    pub const ALL: [ActKernel; 3] = [ActKernel::GeluErf, ActKernel::GeluTanh, ActKernel::Relu];

    pub fn name(self) -> &'static str {
        match self {
            ActKernel::GeluErf => "gelu_erf",
            ActKernel::GeluTanh => "gelu_tanh",
            ActKernel::Relu => "relu",
        }
    }
}

/// Every kernel. The doc line of each gives its C arguments in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// (out X (B,T,C), idx U32 (B,T), wte X (V,C), wpe X (maxT,C), B, T, C): out = wte[idx] + wpe[t]
    EncoderForward,
    /// (dwte F32 (V,C) +=, dout X (B·T,C), bucket_start U32 (nb+1), bucket_pos U32 (B·T), bucket_token
    /// U32 (nb), nb, C): for bucket k, dwte[bucket_token[k]] += Σ dout[bucket_pos[j]] over
    /// j ∈ [bucket_start[k], bucket_start[k+1]) in that order (deterministic; the host sorts positions by token)
    EncoderBackwardWte,
    /// (dwpe F32 (maxT,C) +=, dout X (B,T,C), B, T, C): dwpe[t] += Σ_b dout[b,t] in order of b
    EncoderBackwardWpe,
    /// (out X (N,C), mean F32 (N), rstd F32 (N), inp X (N,C), w X (C), b OptX (C), N, C), eps 1e-5
    LayerNormForward,
    /// (res X (N,C), out X (N,C), mean F32, rstd F32, inp1 X, inp2 X, w X, b OptX, N, C):
    /// res = inp1 + inp2; out = layernorm(res)
    ResidualLayerNormForward,
    /// (dinp X (N,C) +=, dw_rows X (N,C) = dout ⊙ x̂, dout X (N,C), inp X (N,C), w X (C), mean F32,
    /// rstd F32, N, C): the weight's gradient per row, summed over rows by `ColumnSumPartial`/`Finish`
    LayerNormBackward,
    /// (partial F32 (R,C), inp X (N,C), N, C, R): partial[r] = Σ of rows [r·⌈N/R⌉, (r+1)·⌈N/R⌉) in order
    ColumnSumPartial,
    /// (out F32 (C) +=, partial F32 (R,C), R, C): out += Σ_r partial[r] in order of r, each partial added
    /// onto out in turn: ((out + p₀) + p₁) + … (as the CPU engine adds its blocks' partials)
    ColumnSumFinish,
    /// (partial F32 (R), x F32 (n), n, R): partial[r] = Σ x² over elements [r·⌈n/R⌉, (r+1)·⌈n/R⌉),
    /// accumulated in f64 and rounded once
    NormSquaredPartial,
    /// (x F32 (n) in place, n, s): x *= s
    ScaleF32,
    /// (out X (n), inp F32 (n), n): out = (floatX) inp
    CastToX,
    /// (out X (n), inp X (n), n): the activation
    ActForward(ActKernel),
    /// (d X (n) in place, inp X (n), n): d *= act'(inp)
    ActBackward(ActKernel),
    /// (q X (B,NH,T,HS), k X, v X, qkv X (B,T,3C), B, T, NH, HS)
    AttentionPermute,
    /// (dqkv X (B,T,3C), dq X (B,NH,T,HS), dk X, dv X, B, T, NH, HS)
    AttentionPermuteBackward,
    /// (out X (B,T,C), y X (B,NH,T,HS), B, T, NH, HS)
    AttentionUnpermute,
    /// (dy X (B,NH,T,HS), dout X (B,T,C), B, T, NH, HS)
    AttentionUnpermuteBackward,
    /// (att X (BH,T,T), preatt X (BH,T,T), sink OptX (NH), BH, T, NH, zeta, gamma): row i of each head
    /// from its scores j ≤ i (already scaled by 1/√hs); att[.., i, j > i] = 0
    AttnRowForward(RowKernel),
    /// (dpreatt X (BH,T,T), dnull OptF32 (BH·T), datt X (BH,T,T), att X, preatt X, sink OptX (NH), BH,
    /// T, NH, zeta, gamma): ∂L/∂scores (j ≤ i; 0 above); dnull[bh·T + i] = the row's ∂L/∂(null logit)
    /// (−p_null·D for quiet and sink, 0 for the others)
    AttnRowBackward(RowKernel),
    /// (dsink F32 (NH) +=, dnull F32 (B,NH,T), B, NH, T): dsink[h] += Σ_b Σ_i dnull[b,h,i]
    SinkBackward,
    /// (out X (N,C), gate X (N,G) logits → σ in place, y X (N,C), N, C, G): out = y ⊙ σ(gate)
    GateForward,
    /// (dy X (N,C) +=, dz X (N,G), dout X (N,C), y X (N,C), gate X (N,G) = σ, N, C, G)
    GateBackward,
    /// (out X (n), inp X (n), n, key, p): out[i] = inp[i]·mask(key, i)/(1−p); out may be inp
    Dropout,
    /// (losses F32 (N), logits X (N,V), targets U32 (N), N, V)
    CrossEntropyForward,
    /// (dlogits X (N,V) in place over the logits, targets U32 (N), dloss, N, V):
    /// dlogits = (softmax(logits) − onehot)·dloss
    CrossEntropyBackward,
    /// (params F32 (n), params_x OptX (n), grads F32, m F32, v F32, n, decay, b1_rest, b2, b2_rest,
    /// bc2_sqrt, eps, step_size): as `cpu::adamw`'s chunk; params_x (when given) = (floatX) params
    AdamW,
    /// (params F32 (n), params_x OptX (n), grads F32, buf F32, n, decay (0/1 int), wd, momentum, neg_lr,
    /// first (0/1 int)): as `cpu::sgd`'s chunk
    Sgd,
}

use ArgKind::*;

impl Kernel {
    /// Every kernel, once (the compile checks walk this list).
    pub fn all() -> Vec<Kernel> {
        let mut v = vec![
            Kernel::EncoderForward,
            Kernel::EncoderBackwardWte,
            Kernel::EncoderBackwardWpe,
            Kernel::LayerNormForward,
            Kernel::ResidualLayerNormForward,
            Kernel::LayerNormBackward,
            Kernel::ColumnSumPartial,
            Kernel::ColumnSumFinish,
            Kernel::NormSquaredPartial,
            Kernel::ScaleF32,
            Kernel::CastToX,
        ];
        for a in ActKernel::ALL {
            v.push(Kernel::ActForward(a));
            v.push(Kernel::ActBackward(a));
        }
        v.extend([
            Kernel::AttentionPermute,
            Kernel::AttentionPermuteBackward,
            Kernel::AttentionUnpermute,
            Kernel::AttentionUnpermuteBackward,
        ]);
        for r in RowKernel::ALL {
            v.push(Kernel::AttnRowForward(r));
            v.push(Kernel::AttnRowBackward(r));
        }
        v.extend([
            Kernel::SinkBackward,
            Kernel::GateForward,
            Kernel::GateBackward,
            Kernel::Dropout,
            Kernel::CrossEntropyForward,
            Kernel::CrossEntropyBackward,
            Kernel::AdamW,
            Kernel::Sgd,
        ]);
        v
    }

    /// The `extern "C"` name in the source.
    pub fn name(self) -> String {
        let s = match self {
            Kernel::EncoderForward => "encoder_forward",
            Kernel::EncoderBackwardWte => "encoder_backward_wte",
            Kernel::EncoderBackwardWpe => "encoder_backward_wpe",
            Kernel::LayerNormForward => "layernorm_forward",
            Kernel::ResidualLayerNormForward => "residual_layernorm_forward",
            Kernel::LayerNormBackward => "layernorm_backward",
            Kernel::ColumnSumPartial => "column_sum_partial",
            Kernel::ColumnSumFinish => "column_sum_finish",
            Kernel::NormSquaredPartial => "norm_squared_partial",
            Kernel::ScaleF32 => "scale_f32",
            Kernel::CastToX => "cast_to_x",
            Kernel::ActForward(a) => return format!("{}_forward", a.name()),
            Kernel::ActBackward(a) => return format!("{}_backward", a.name()),
            Kernel::AttentionPermute => "attention_permute",
            Kernel::AttentionPermuteBackward => "attention_permute_backward",
            Kernel::AttentionUnpermute => "attention_unpermute",
            Kernel::AttentionUnpermuteBackward => "attention_unpermute_backward",
            Kernel::AttnRowForward(r) => return format!("attn_{}_forward", r.name()),
            Kernel::AttnRowBackward(r) => return format!("attn_{}_backward", r.name()),
            Kernel::SinkBackward => "sink_backward",
            Kernel::GateForward => "gate_forward",
            Kernel::GateBackward => "gate_backward",
            Kernel::Dropout => "dropout_forward",
            Kernel::CrossEntropyForward => "crossentropy_forward",
            Kernel::CrossEntropyBackward => "crossentropy_backward",
            Kernel::AdamW => "adamw_update",
            Kernel::Sgd => "sgd_update",
        };
        s.to_string()
    }

    /// The source file (under `src/engine/cuda/kernels/`) that defines the kernel.
    pub fn file(self) -> &'static str {
        match self {
            Kernel::EncoderForward | Kernel::EncoderBackwardWte | Kernel::EncoderBackwardWpe => "encoder.cu",
            Kernel::LayerNormForward | Kernel::ResidualLayerNormForward | Kernel::LayerNormBackward => "layernorm.cu",
            Kernel::ColumnSumPartial
            | Kernel::ColumnSumFinish
            | Kernel::NormSquaredPartial
            | Kernel::ScaleF32
            | Kernel::CastToX => "reduce.cu",
            Kernel::ActForward(_) | Kernel::ActBackward(_) => "activation.cu",
            Kernel::AttentionPermute
            | Kernel::AttentionPermuteBackward
            | Kernel::AttentionUnpermute
            | Kernel::AttentionUnpermuteBackward
            | Kernel::AttnRowForward(_)
            | Kernel::AttnRowBackward(_)
            | Kernel::SinkBackward => "attention.cu",
            Kernel::GateForward | Kernel::GateBackward => "gate.cu",
            Kernel::Dropout => "dropout.cu",
            Kernel::CrossEntropyForward | Kernel::CrossEntropyBackward => "crossentropy.cu",
            Kernel::AdamW | Kernel::Sgd => "optimizer.cu",
        }
    }

    /// The C signature's argument kinds, in order (see each variant's doc).
    pub fn signature(self) -> &'static [ArgKind] {
        match self {
            Kernel::EncoderForward => &[X, U32, X, X, I32, I32, I32],
            Kernel::EncoderBackwardWte => &[F32, X, U32, U32, U32, I32, I32],
            Kernel::EncoderBackwardWpe => &[F32, X, I32, I32, I32],
            Kernel::LayerNormForward => &[X, F32, F32, X, X, OptX, I32, I32],
            Kernel::ResidualLayerNormForward => &[X, X, F32, F32, X, X, X, OptX, I32, I32],
            Kernel::LayerNormBackward => &[X, X, X, X, X, F32, F32, I32, I32],
            Kernel::ColumnSumPartial => &[F32, X, I32, I32, I32],
            Kernel::ColumnSumFinish => &[F32, F32, I32, I32],
            Kernel::NormSquaredPartial => &[F32, F32, I32, I32],
            Kernel::ScaleF32 => &[F32, I32, Float],
            Kernel::CastToX => &[X, F32, I32],
            Kernel::ActForward(_) => &[X, X, I32],
            Kernel::ActBackward(_) => &[X, X, I32],
            Kernel::AttentionPermute => &[X, X, X, X, I32, I32, I32, I32],
            Kernel::AttentionPermuteBackward => &[X, X, X, X, I32, I32, I32, I32],
            Kernel::AttentionUnpermute => &[X, X, I32, I32, I32, I32],
            Kernel::AttentionUnpermuteBackward => &[X, X, I32, I32, I32, I32],
            Kernel::AttnRowForward(_) => &[X, X, OptX, I32, I32, I32, Float, Float],
            Kernel::AttnRowBackward(_) => &[X, OptF32, X, X, X, OptX, I32, I32, I32, Float, Float],
            Kernel::SinkBackward => &[F32, F32, I32, I32, I32],
            Kernel::GateForward => &[X, X, X, I32, I32, I32],
            Kernel::GateBackward => &[X, X, X, X, X, I32, I32, I32],
            Kernel::Dropout => &[X, X, I32, U64, Float],
            Kernel::CrossEntropyForward => &[F32, X, U32, I32, I32],
            Kernel::CrossEntropyBackward => &[X, U32, Float, I32, I32],
            Kernel::AdamW => &[F32, OptX, F32, F32, F32, I32, Float, Float, Float, Float, Float, Float, Float],
            Kernel::Sgd => &[F32, OptX, F32, F32, I32, I32, Float, Float, Float, I32],
        }
    }
}

/// Threads per block of the kernels that do not choose otherwise.
pub const BLOCK: u32 = 256;

/// Rows per block of the kernels that give each row one warp (LayerNorm, the attention rows).
pub const WARP_ROWS: u32 = BLOCK / 32;

/// The launch geometry of `kernel` for its integer arguments `ints` (in signature order): (grid, block,
/// dynamic shared bytes). The sources assume exactly this geometry:
/// - elementwise kernels: a thread per element;
/// - LayerNorm (forward, fused residual, backward) and the attention rows: a warp per row, `WARP_ROWS`
///   rows per block (N rows; BH·T rows);
/// - a block per row: the cross-entropy (N), the gate (N, so that a row's logits are all read before σ
///   replaces them); a block per bucket (the encoder's wte backward), per row chunk (column sums), per
///   part (the norm), per head (the sink's gradient); a thread per column in the column sums' finish.
pub fn geometry(kernel: Kernel, ints: &[i32]) -> ([u32; 3], [u32; 3], u32) {
    let blocks = |n: i64| ((n.max(1) + BLOCK as i64 - 1) / BLOCK as i64) as u32;
    let warp_rows = |n: i64| ((n.max(1) + WARP_ROWS as i64 - 1) / WARP_ROWS as i64) as u32;
    let one = |g: u32| ([g.max(1), 1, 1], [BLOCK, 1, 1], 0);
    let i = |k: usize| ints[k] as i64;
    match kernel {
        // elementwise over n = the product of the shape
        Kernel::EncoderForward => one(blocks(i(0) * i(1) * i(2))),
        Kernel::EncoderBackwardWpe => one(blocks(i(1) * i(2))),
        Kernel::ScaleF32 | Kernel::CastToX | Kernel::ActForward(_) | Kernel::ActBackward(_) => one(blocks(i(0))),
        Kernel::Dropout => one(blocks(i(0))),
        Kernel::AttentionPermute | Kernel::AttentionPermuteBackward => one(blocks(i(0) * i(1) * i(2) * i(3))),
        Kernel::AttentionUnpermute | Kernel::AttentionUnpermuteBackward => one(blocks(i(0) * i(1) * i(2) * i(3))),
        Kernel::AdamW | Kernel::Sgd => one(blocks(i(0))),
        // one block per bucket (token) of the encoder's backward
        Kernel::EncoderBackwardWte => one(i(0) as u32),
        // one warp per row
        Kernel::LayerNormForward | Kernel::ResidualLayerNormForward | Kernel::LayerNormBackward => one(warp_rows(i(0))),
        // one warp per (head, row): BH·T rows
        Kernel::AttnRowForward(_) | Kernel::AttnRowBackward(_) => one(warp_rows(i(0) * i(1))),
        // one block per row
        Kernel::CrossEntropyForward | Kernel::CrossEntropyBackward => one(i(0) as u32),
        Kernel::GateForward | Kernel::GateBackward => one(i(0) as u32),
        // one block per row chunk r, threads over columns
        Kernel::ColumnSumPartial => one(i(2) as u32),
        Kernel::ColumnSumFinish => one(blocks(i(1))),
        Kernel::NormSquaredPartial => one(i(1) as u32),
        // one block per head
        Kernel::SinkBackward => one(i(1) as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The integer arguments of `kernel` in signature order, every one `v` (a shape of v everywhere).
    fn ints(kernel: Kernel, v: i32) -> Vec<i32> {
        kernel.signature().iter().filter(|k| **k == I32).map(|_| v).collect()
    }

    #[test]
    fn geometry_launches_at_least_one_block_of_at_most_1024_threads() {
        for kernel in Kernel::all() {
            for v in [1, 3, 31, 64, 1000, 50257] {
                let (grid, block, shared) = geometry(kernel, &ints(kernel, v));
                let name = kernel.name();
                assert!(grid.iter().all(|&g| g >= 1), "{name}: grid {grid:?} for {v}");
                assert!(
                    block.iter().product::<u32>() <= 1024 && block.iter().all(|&b| b >= 1),
                    "{name}: block {block:?}"
                );
                assert_eq!(block[0] % 32, 0, "{name}: a block of whole warps");
                assert!(shared <= 48 * 1024, "{name}: {shared} bytes of shared memory");
            }
        }
    }

    #[test]
    fn geometry_covers_every_row_and_element() {
        let threads = |(g, b, _): ([u32; 3], [u32; 3], u32)| g[0] as u64 * b[0] as u64;
        let (bh, t, n, c) = (2 * 12, 1000, 4096, 768);
        for r in RowKernel::ALL {
            for k in [Kernel::AttnRowForward(r), Kernel::AttnRowBackward(r)] {
                let mut ints = ints(k, 0);
                (ints[0], ints[1], ints[2]) = (bh, t, 12);
                assert!(threads(geometry(k, &ints)) / 32 >= (bh * t) as u64, "{}", k.name());
            }
        }
        for k in [Kernel::LayerNormForward, Kernel::ResidualLayerNormForward, Kernel::LayerNormBackward] {
            assert!(threads(geometry(k, &[n, c])) / 32 >= n as u64, "{}", k.name());
        }
        assert!(threads(geometry(Kernel::AttentionPermute, &[2, t, 12, 64])) >= (2 * t * 768) as u64);
        assert_eq!(geometry(Kernel::SinkBackward, &[2, 12, t]).0[0], 12);
        assert_eq!(geometry(Kernel::GateForward, &[n, c, 12]).0[0], n as u32);
        assert_eq!(geometry(Kernel::CrossEntropyBackward, &[n, 50257]).0[0], n as u32);
    }
}
