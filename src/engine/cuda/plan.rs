//! The GPU engine's plan: what runs, in order, over which buffers, with no CUDA in it. A step of the
//! GPU engine is a list of `Op`s (GEMM descriptors in cuBLAS's column-major conventions, kernel launches
//! with their arguments, memsets) over buffers named by `BufId`. Two executors run a plan: the CUDA one
//! (`device`: cuBLASLt and the NVRTC-compiled kernels of `kernels/*.cu`) and the CPU one (`replay`: the
//! `gemm` crate and the CPU reference kernels), so that the plan — every transpose, leading dimension,
//! stride, offset and aliasing choice — is tested by `cargo test` on a machine with no GPU.

use super::kernel::Kernel;

/// The element type of a buffer. `X` is the plan's activation type ("floatX" as llm.c calls it):
/// bf16 in `Precision::Bf16`, f32 in `Precision::F32`. Master weights, gradients of the parameters,
/// optimizer state, LayerNorm statistics and losses are always f32; token ids are u32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    F32,
    X,
    U32,
}

/// The arithmetic of a GPU engine: bf16 GEMM inputs and activations with f32 accumulation and f32
/// master weights (llm.c's mixed precision, for speed), or f32 throughout with TF32 off (for tight
/// comparison with the CPU reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    F32,
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Bytes of one element of `dtype` in this precision.
    pub fn size_of(self, dtype: Dtype) -> usize {
        match (dtype, self) {
            (Dtype::X, Precision::Bf16) => 2,
            _ => 4,
        }
    }
}

/// A buffer of the plan (an index into `Plan::bufs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(pub u32);

/// A buffer: its name (for messages and the self-test), element type and length in elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufSpec {
    pub name: String,
    pub dtype: Dtype,
    pub len: usize,
}

/// A range of a buffer, in elements: where a kernel argument or GEMM operand points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct View {
    pub buf: BufId,
    pub offset: usize,
    pub len: usize,
}

impl View {
    /// The part [start, start + len) of this view.
    pub fn sub(self, start: usize, len: usize) -> View {
        assert!(start + len <= self.len, "view {start}+{len} outside a view of {}", self.len);
        View { buf: self.buf, offset: self.offset + start, len }
    }

    /// Whether two views share an element.
    pub fn overlaps(&self, other: &View) -> bool {
        self.buf == other.buf && self.offset < other.offset + other.len && other.offset < self.offset + self.len
    }
}

/// A kernel argument, in the order of the kernel's C signature (see `Kernel`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arg {
    /// A device pointer to the first element of the view (its dtype is the buffer's).
    Ptr(View),
    /// A null pointer (an absent optional tensor, e.g. the bias of a bias-free model).
    Null,
    I32(i32),
    U64(u64),
    F32(f32),
}

/// cuBLAS's `op`: whether an operand is read transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trans {
    N,
    T,
}

/// One (strided-batched) GEMM in cuBLAS's column-major conventions:
///   D_i = alpha · op(A_i) · op(B_i) + beta · D_i   (+ bias, broadcast over columns),  i < batch
/// op(A_i) is m×k, op(B_i) k×n, D_i m×n; element (r, c) of a column-major matrix with leading dimension
/// ld is at r + c·ld; batch i starts `stride_*` elements after batch i − 1. `bias` (m) is added to
/// every column of D (cuBLASLt's BIAS epilogue; only with beta = 0). A and B are in the plan's `X`
/// type or f32 (the buffer says); D may be f32 while A and B are bf16 (parameter gradients).
#[derive(Clone, Debug, PartialEq)]
pub struct GemmDesc {
    pub transa: Trans,
    pub transb: Trans,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub beta: f32,
    pub a: View,
    pub lda: usize,
    pub stride_a: usize,
    pub b: View,
    pub ldb: usize,
    pub stride_b: usize,
    pub d: View,
    pub ldd: usize,
    pub stride_d: usize,
    pub batch: usize,
    pub bias: Option<View>,
}

impl GemmDesc {
    /// A Linear layer's forward, nanoGPT's `x @ W.T (+ b)` for x (N, C) and W (OC, C), both row-major: in
    /// column-major terms outᵀ (OC × N) = op(W) · xᵀ, W's stored (C × OC) read transposed, xᵀ stored
    /// (C × N), as llm.c's matmul_forward.
    pub fn linear(out: View, x: View, w: View, bias: Option<View>, n: usize, c: usize, oc: usize) -> GemmDesc {
        GemmDesc {
            transa: Trans::T,
            transb: Trans::N,
            m: oc,
            n,
            k: c,
            alpha: 1.0,
            beta: 0.0,
            a: w,
            lda: c,
            stride_a: 0,
            b: x,
            ldb: c,
            stride_b: 0,
            d: out,
            ldd: oc,
            stride_d: 0,
            batch: 1,
            bias,
        }
    }

    /// Elements of an operand the descriptor reads, from its first: (rows, cols) of the stored
    /// column-major matrix and the batch stride.
    fn extent(rows: usize, cols: usize, ld: usize, stride: usize, batch: usize) -> usize {
        if rows == 0 || cols == 0 || batch == 0 {
            return 0;
        }
        (batch - 1) * stride + (cols - 1) * ld + rows
    }

    /// Checks shapes against the views: every element the GEMM touches lies inside its view, leading
    /// dimensions are at least the stored rows, and D overlaps neither A nor B. Returns what is wrong.
    pub fn check(&self) -> Result<(), String> {
        let stored = |t: Trans, r: usize, c: usize| if t == Trans::N { (r, c) } else { (c, r) };
        let (ar, ac) = stored(self.transa, self.m, self.k);
        let (br, bc) = stored(self.transb, self.k, self.n);
        for (name, rows, cols, ld, stride, view) in [
            ("A", ar, ac, self.lda, self.stride_a, self.a),
            ("B", br, bc, self.ldb, self.stride_b, self.b),
            ("D", self.m, self.n, self.ldd, self.stride_d, self.d),
        ] {
            if ld < rows.max(1) {
                return Err(format!("{name}: leading dimension {ld} < {rows} rows"));
            }
            let need = Self::extent(rows, cols, ld, stride, self.batch);
            if need > view.len {
                return Err(format!("{name}: needs {need} elements, the view has {}", view.len));
            }
        }
        if self.d.overlaps(&self.a) || self.d.overlaps(&self.b) {
            return Err("D overlaps an input".into());
        }
        if let Some(bias) = self.bias {
            if bias.len < self.m || self.beta != 0.0 {
                return Err(format!("bias of {} for m = {} (beta must be 0)", bias.len, self.m));
            }
        }
        Ok(())
    }
}

/// A kernel launch: the kernel, its arguments in signature order, and its geometry.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    pub kernel: Kernel,
    pub args: Vec<Arg>,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub shared_bytes: u32,
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Gemm(GemmDesc),
    Launch(Launch),
    /// Sets every element of the view to zero.
    Zero(View),
}

/// The buffers a plan's ops run over (allocated once; the ops of each call are built by `build`).
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub bufs: Vec<BufSpec>,
}

impl Plan {
    /// A new buffer of `len` elements.
    pub fn buffer(&mut self, name: &str, dtype: Dtype, len: usize) -> View {
        let id = BufId(self.bufs.len() as u32);
        self.bufs.push(BufSpec { name: name.to_string(), dtype, len });
        View { buf: id, offset: 0, len }
    }

    pub fn spec(&self, id: BufId) -> &BufSpec {
        &self.bufs[id.0 as usize]
    }

    /// Bytes of every buffer in `precision`.
    pub fn bytes(&self, precision: Precision) -> u64 {
        self.bufs.iter().map(|b| (b.len * precision.size_of(b.dtype)) as u64).sum()
    }
}
