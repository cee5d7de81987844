//! The model's forward, backward and optimizer step as plan ops (`forward`, `backward`, `step`), over
//! the buffers of `bufs`, through the primitives of `Builder`: a launch checked against its kernel's
//! signature, and the GEMMs of a Linear layer and of attention in cuBLAS's column-major terms.
//!
//! Row-major (N, C) in memory is column-major (C × N) with leading dimension C, so out = inp Wᵀ (W of
//! shape (OC, C)) is, for cuBLAS, outᵀ (OC × N) = op(W) · inpᵀ with op = T on W's stored (C × OC).

pub mod backward;
pub mod bufs;
pub mod forward;
pub mod step;

use super::kernel::{geometry, Kernel};
use super::plan::{Arg, GemmDesc, Launch, Op, Trans, View};
use crate::config::ModelConfig;
use crate::engine::params::{Kind, ParamLayout};
pub use bufs::Bufs;

/// What the ops of one call are built from: the model, its buffers and the batch's shape.
pub struct Builder<'a> {
    pub cfg: &'a ModelConfig,
    pub lay: &'a ParamLayout,
    pub bufs: &'a Bufs,
    pub b: usize,
    pub t: usize,
    pub ops: Vec<Op>,
}

/// A pointer argument.
pub fn p(v: View) -> Arg {
    Arg::Ptr(v)
}

/// An optional pointer argument.
pub fn opt(v: Option<View>) -> Arg {
    v.map_or(Arg::Null, Arg::Ptr)
}

/// An int argument (the plan's sizes fit an int: `check_sizes` in the engine).
pub fn int(x: usize) -> Arg {
    Arg::I32(i32::try_from(x).expect("sizes are checked to fit an int"))
}

/// A kernel launch with the geometry `kernel::geometry` gives for its int arguments.
pub fn launch_op(kernel: Kernel, args: Vec<Arg>) -> Op {
    let ints: Vec<i32> = args.iter().filter_map(|a| if let Arg::I32(x) = a { Some(*x) } else { None }).collect();
    let (grid, block, shared_bytes) = geometry(kernel, &ints);
    Op::Launch(Launch { kernel, args, grid, block, shared_bytes })
}

impl<'a> Builder<'a> {
    pub fn new(cfg: &'a ModelConfig, lay: &'a ParamLayout, bufs: &'a Bufs, b: usize, t: usize) -> Self {
        Builder { cfg, lay, bufs, b, t, ops: Vec::new() }
    }

    /// Tokens of the batch.
    pub fn n(&self) -> usize {
        self.b * self.t
    }

    /// A kernel launch with its geometry.
    pub fn launch(&mut self, kernel: Kernel, args: Vec<Arg>) {
        self.ops.push(launch_op(kernel, args));
    }

    pub fn zero(&mut self, v: View) {
        self.ops.push(Op::Zero(v));
    }

    /// A parameter tensor (layer l's instance of a per-layer kind) in the X copy the kernels read.
    pub fn w(&self, kind: Kind, l: usize) -> View {
        let r = if kind.per_layer() { self.lay.layer_range(kind, l, self.cfg.n_layer) } else { self.lay.range(kind) };
        self.bufs.params_x.sub(r.start, r.len())
    }

    /// A bias (None when the model has none).
    pub fn bias(&self, kind: Kind, l: usize) -> Option<View> {
        Some(self.w(kind, l)).filter(|v| v.len > 0)
    }

    /// The gradient of a parameter tensor (f32).
    pub fn g(&self, kind: Kind, l: usize) -> View {
        let r = if kind.per_layer() { self.lay.layer_range(kind, l, self.cfg.n_layer) } else { self.lay.range(kind) };
        self.bufs.grads.sub(r.start, r.len())
    }

    /// out (N, OC) = inp (N, C) Wᵀ (+ bias), W (OC, C).
    pub fn linear_forward(&mut self, out: View, inp: View, w: View, bias: Option<View>, c: usize, oc: usize) {
        self.ops.push(Op::Gemm(GemmDesc::linear(out, inp, w, bias, self.n(), c, oc)));
    }

    /// dinp (N, C) = (or += with `add`) dout (N, OC) W;  dW (OC, C) += doutᵀ inp;  db (OC) += Σ_n dout.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_backward(
        &mut self,
        dinp: View,
        add: bool,
        dw: View,
        db: Option<View>,
        dout: View,
        inp: View,
        w: View,
        c: usize,
        oc: usize,
    ) {
        let n = self.n();
        let gemm = |transb, m, nn, k, a, lda, b, ldb, d, ldd, beta| GemmDesc {
            transa: Trans::N,
            transb,
            m,
            n: nn,
            k,
            alpha: 1.0,
            beta,
            a,
            lda,
            stride_a: 0,
            b,
            ldb,
            stride_b: 0,
            d,
            ldd,
            stride_d: 0,
            batch: 1,
            bias: None,
        };
        // dinpᵀ (C × N) = W's stored (C × OC) · doutᵀ (OC × N)
        self.ops.push(Op::Gemm(gemm(Trans::N, c, n, oc, w, c, dout, oc, dinp, c, if add { 1.0 } else { 0.0 })));
        // dWᵀ (C × OC) += inpᵀ (C × N) · dout (N × OC): dout's stored (OC × N), transposed
        self.ops.push(Op::Gemm(gemm(Trans::T, c, oc, n, inp, c, dout, oc, dw, c, 1.0)));
        if let Some(db) = db {
            self.column_sum(db, dout, oc);
        }
    }

    /// out (W) += Σ_n x (N, W) over the batch's rows, in a fixed order (two launches).
    pub fn column_sum(&mut self, out: View, x: View, width: usize) {
        let (n, parts) = (self.n(), bufs::PARTS);
        let part = self.bufs.col_part.sub(0, parts * width);
        self.launch(Kernel::ColumnSumPartial, vec![p(part), p(x), int(n), int(width), int(parts)]);
        self.launch(Kernel::ColumnSumFinish, vec![p(out), p(part), int(parts), int(width)]);
    }

    /// The batched attention GEMM D_bh = alpha · op(A_bh) · op(B_bh) over the B·NH heads, each operand a
    /// stack of row-major (T, HS) or (T, T) matrices (see `forward` and `backward` for each use).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_gemm(
        &mut self,
        (transa, transb): (Trans, Trans),
        (m, n, k): (usize, usize, usize),
        alpha: f32,
        (a, lda, stride_a): (View, usize, usize),
        (b, ldb, stride_b): (View, usize, usize),
        (d, ldd, stride_d): (View, usize, usize),
    ) {
        let batch = self.b * self.cfg.n_head;
        self.ops.push(Op::Gemm(GemmDesc {
            transa,
            transb,
            m,
            n,
            k,
            alpha,
            beta: 0.0,
            a,
            lda,
            stride_a,
            b,
            ldb,
            stride_b,
            d,
            ldd,
            stride_d,
            batch,
            bias: None,
        }));
    }
}
