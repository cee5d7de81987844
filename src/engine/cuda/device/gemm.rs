//! A `GemmDesc` (cuBLAS column-major conventions) as cuBLASLt describes it: one matrix layout per
//! operand (element type, stored rows and columns, leading dimension, batch count and stride), the
//! matmul descriptor's attributes (transposes, epilogue, bias type), the pointers' alignments, and the
//! key under which the chosen algorithm is cached. Pure functions with no CUDA call, so that the
//! mapping is tested on the CPU; `blas` applies it.

use super::super::plan::{Dtype, GemmDesc, Precision, Trans, View};
use crate::{Error, Result};
use cudarc::cublaslt::sys::{
    cublasLtEpilogue_t as Epilogue, cublasLtMatmulDescAttributes_t as DescAttr,
    cublasLtMatrixLayoutAttribute_t as LayoutAttr, cudaDataType as DataType,
};

/// An element type cuBLASLt reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Elem {
    F32,
    Bf16,
}

impl Elem {
    /// A buffer's element type in `precision`: X is bf16 in `Precision::Bf16`, f32 otherwise; a U32
    /// buffer cannot be a GEMM operand.
    pub fn of(dtype: Dtype, precision: Precision) -> Option<Elem> {
        match (dtype, precision) {
            (Dtype::X, Precision::Bf16) => Some(Elem::Bf16),
            (Dtype::X, Precision::F32) | (Dtype::F32, _) => Some(Elem::F32),
            (Dtype::U32, _) => None,
        }
    }

    pub fn data_type(self) -> DataType {
        match self {
            Elem::F32 => DataType::CUDA_R_32F,
            Elem::Bf16 => DataType::CUDA_R_16BF,
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::Bf16 => 2,
        }
    }
}

/// A value of a cuBLASLt attribute, in the C type the attribute takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    I32(i32),
    U32(u32),
    I64(i64),
}

/// One operand's matrix layout: the stored (column-major) matrix, before `op`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    pub elem: Elem,
    pub rows: u64,
    pub cols: u64,
    pub ld: i64,
    pub batch: i32,
    /// Elements from one batch's first element to the next's.
    pub stride: i64,
}

impl Layout {
    /// The attributes set after `cublasLtMatrixLayoutCreate(elem, rows, cols, ld)`, in order: the batch
    /// count, then the strided batch offset (llm.c's order).
    pub fn attributes(&self) -> [(LayoutAttr, Value); 2] {
        [
            (LayoutAttr::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, Value::I32(self.batch)),
            (LayoutAttr::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, Value::I64(self.stride)),
        ]
    }
}

/// Everything of a GEMM that chooses its algorithm: the cache key of `blas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub transa: Trans,
    pub transb: Trans,
    pub a: Layout,
    pub b: Layout,
    /// C and D (C is D: D = alpha·op(A)·op(B) + beta·D).
    pub d: Layout,
    /// The bias's element type when there is one (BIAS epilogue).
    pub bias: Option<Elem>,
    /// The alignment in bytes (at most 256) of A, B, C and D's first elements.
    pub align: [u32; 4],
}

/// The largest power of two (at most 256) dividing a device address: cuBLASLt's heuristic assumes
/// 256-byte aligned operands unless told otherwise, and a view at an offset may be less aligned.
pub fn alignment(addr: u64) -> u32 {
    if addr == 0 {
        return 256;
    }
    (1u64 << addr.trailing_zeros().min(8)) as u32
}

fn layout(elem: Elem, t: Trans, rows: usize, cols: usize, ld: usize, batch: usize, stride: usize) -> Layout {
    // The stored matrix of op(X) = rows × cols: X itself is rows × cols (N) or cols × rows (T).
    let (r, c) = if t == Trans::N { (rows, cols) } else { (cols, rows) };
    Layout { elem, rows: r as u64, cols: c as u64, ld: ld as i64, batch: batch as i32, stride: stride as i64 }
}

fn describe(g: &GemmDesc) -> String {
    format!("GEMM {:?}{:?} m={} n={} k={} batch={}", g.transa, g.transb, g.m, g.n, g.k, g.batch)
}

/// The cuBLASLt shape of `g`, whose buffers' types `dtype` gives, at the operands' device addresses
/// `addr` (A, B, D); an error naming the GEMM when the descriptor is inconsistent (`GemmDesc::check`)
/// or its types are a combination cuBLASLt does not run (A and B of different types, f32 inputs
/// with a bf16 output, a U32 operand).
pub fn shape(g: &GemmDesc, dtype: impl Fn(View) -> Dtype, precision: Precision, addr: [u64; 3]) -> Result<Shape> {
    g.check().map_err(|m| Error::Device(format!("{}: {m}", describe(g))))?;
    if g.batch == 0 || g.m == 0 || g.n == 0 || g.k == 0 {
        return Err(Error::Device(format!("{}: an empty GEMM", describe(g))));
    }
    let elem = |name: &str, v: View| {
        Elem::of(dtype(v), precision)
            .ok_or_else(|| Error::Device(format!("{}: operand {name} is a U32 buffer", describe(g))))
    };
    let (ea, eb, ed) = (elem("A", g.a)?, elem("B", g.b)?, elem("D", g.d)?);
    if ea != eb || (ea == Elem::F32 && ed == Elem::Bf16) {
        return Err(Error::Device(format!(
            "{}: A {ea:?}, B {eb:?}, D {ed:?} is not a type combination of cuBLASLt (A and B alike; D bf16 only \
             with bf16 inputs)",
            describe(g)
        )));
    }
    let bias = match g.bias {
        Some(v) => Some(elem("bias", v)?),
        None => None,
    };
    let a = layout(ea, g.transa, g.m, g.k, g.lda, g.batch, g.stride_a);
    let b = layout(eb, g.transb, g.k, g.n, g.ldb, g.batch, g.stride_b);
    let d = layout(ed, Trans::N, g.m, g.n, g.ldd, g.batch, g.stride_d);
    let [pa, pb, pd] = addr.map(alignment);
    Ok(Shape { transa: g.transa, transb: g.transb, a, b, d, bias, align: [pa, pb, pd, pd] })
}

fn op(t: Trans) -> i32 {
    // cublasOperation_t: CUBLAS_OP_N = 0, CUBLAS_OP_T = 1
    match t {
        Trans::N => 0,
        Trans::T => 1,
    }
}

impl Shape {
    /// The matmul descriptor's attributes, in order, after `cublasLtMatmulDescCreate(CUBLAS_COMPUTE_32F,
    /// CUDA_R_32F)`: the transposes, the epilogue (BIAS when there is a bias) and, when the bias's type
    /// differs from D's (cuBLASLt's default), the bias type. The bias pointer itself is set per call.
    pub fn desc_attributes(&self) -> Vec<(DescAttr, Value)> {
        let mut v = vec![
            (DescAttr::CUBLASLT_MATMUL_DESC_TRANSA, Value::I32(op(self.transa))),
            (DescAttr::CUBLASLT_MATMUL_DESC_TRANSB, Value::I32(op(self.transb))),
        ];
        let epilogue =
            if self.bias.is_some() { Epilogue::CUBLASLT_EPILOGUE_BIAS } else { Epilogue::CUBLASLT_EPILOGUE_DEFAULT };
        v.push((DescAttr::CUBLASLT_MATMUL_DESC_EPILOGUE, Value::U32(epilogue as u32)));
        if let Some(b) = self.bias {
            if b != self.d.elem {
                v.push((DescAttr::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, Value::I32(b.data_type() as i32)));
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::plan::{BufId, Plan};
    use super::*;

    fn view(plan: &mut Plan, name: &str, dtype: Dtype, len: usize) -> View {
        plan.buffer(name, dtype, len)
    }

    /// A Linear layer's GEMM (`GemmDesc::linear`) over new buffers.
    fn linear(plan: &mut Plan, n: usize, c: usize, oc: usize, bias: bool) -> GemmDesc {
        let x = view(plan, "x", Dtype::X, n * c);
        let w = view(plan, "w", Dtype::X, oc * c);
        let out = view(plan, "out", Dtype::X, n * oc);
        let bias = bias.then(|| view(plan, "b", Dtype::X, oc));
        GemmDesc::linear(out, x, w, bias, n, c, oc)
    }

    fn types(plan: &Plan) -> impl Fn(View) -> Dtype + '_ {
        |v: View| plan.spec(v.buf).dtype
    }

    #[test]
    fn a_linear_layer_maps_to_its_layouts() {
        let mut p = Plan::default();
        let g = linear(&mut p, 6, 8, 24, true);
        let s = shape(&g, types(&p), Precision::Bf16, [0x1000, 0x2000, 0x3000]).unwrap();
        // A = W: stored C × OC (read transposed to OC × C), ld C.
        assert_eq!((s.a.rows, s.a.cols, s.a.ld, s.a.elem), (8, 24, 8, Elem::Bf16));
        // B = x^T: stored C × N, ld C.
        assert_eq!((s.b.rows, s.b.cols, s.b.ld), (8, 6, 8));
        // D = out^T: OC × N, ld OC.
        assert_eq!((s.d.rows, s.d.cols, s.d.ld), (24, 6, 24));
        assert_eq!(s.bias, Some(Elem::Bf16));
        assert_eq!(
            s.desc_attributes(),
            vec![
                (DescAttr::CUBLASLT_MATMUL_DESC_TRANSA, Value::I32(1)),
                (DescAttr::CUBLASLT_MATMUL_DESC_TRANSB, Value::I32(0)),
                (DescAttr::CUBLASLT_MATMUL_DESC_EPILOGUE, Value::U32(Epilogue::CUBLASLT_EPILOGUE_BIAS as u32)),
            ]
        );
        // f32: the same layouts in f32; no bias: the default epilogue.
        let g = linear(&mut p, 6, 8, 24, false);
        let s = shape(&g, types(&p), Precision::F32, [0; 3]).unwrap();
        assert_eq!((s.a.elem, s.b.elem, s.d.elem, s.bias), (Elem::F32, Elem::F32, Elem::F32, None));
        assert_eq!(s.desc_attributes()[2].1, Value::U32(Epilogue::CUBLASLT_EPILOGUE_DEFAULT as u32));
        assert_eq!(Elem::Bf16.data_type(), DataType::CUDA_R_16BF);
    }

    /// Attention's QKᵀ, batched over (B·NH): q, k (BH, T, HS) row-major; preatt (BH, T, T) row-major
    /// = column-major preatt^T = k · q^T per batch, strides T·HS for the inputs and T·T for D.
    #[test]
    fn a_strided_batch_sets_count_and_stride_on_every_layout_in_order() {
        let (bh, t, hs) = (6, 5, 4);
        let mut p = Plan::default();
        let q = view(&mut p, "q", Dtype::X, bh * t * hs);
        let k = view(&mut p, "k", Dtype::X, bh * t * hs);
        let att = view(&mut p, "preatt", Dtype::X, bh * t * t);
        let g = GemmDesc {
            transa: Trans::T,
            transb: Trans::N,
            m: t,
            n: t,
            k: hs,
            alpha: 0.5,
            beta: 0.0,
            a: k,
            lda: hs,
            stride_a: t * hs,
            b: q,
            ldb: hs,
            stride_b: t * hs,
            d: att,
            ldd: t,
            stride_d: t * t,
            batch: bh,
            bias: None,
        };
        let s = shape(&g, types(&p), Precision::Bf16, [0; 3]).unwrap();
        assert_eq!((s.a.rows, s.a.cols, s.a.ld), (4, 5, 4));
        for (l, stride) in [(s.a, 20), (s.b, 20), (s.d, 25)] {
            assert_eq!(
                l.attributes(),
                [
                    (LayoutAttr::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, Value::I32(6)),
                    (LayoutAttr::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, Value::I64(stride)),
                ]
            );
        }
    }

    #[test]
    fn mixed_types_and_bad_descriptors_are_errors_naming_the_gemm() {
        let mut p = Plan::default();
        // Parameter gradient: bf16 inputs, f32 output (allowed).
        let mut g = linear(&mut p, 6, 8, 24, false);
        g.d = view(&mut p, "dw", Dtype::F32, 6 * 24);
        let s = shape(&g, types(&p), Precision::Bf16, [0; 3]).unwrap();
        assert_eq!((s.a.elem, s.d.elem), (Elem::Bf16, Elem::F32));
        // An f32 bias with a bf16 output names its type; the same type is cuBLASLt's default.
        g.bias = Some(view(&mut p, "b32", Dtype::F32, 24));
        g.d = view(&mut p, "o", Dtype::X, 6 * 24);
        let s = shape(&g, types(&p), Precision::Bf16, [0; 3]).unwrap();
        assert_eq!(
            s.desc_attributes()[3],
            (DescAttr::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, Value::I32(DataType::CUDA_R_32F as i32))
        );
        // f32 A with bf16 B, f32 inputs with a bf16 output, a U32 operand: refused.
        let mut h = linear(&mut p, 6, 8, 24, false);
        h.a = view(&mut p, "w32", Dtype::F32, 24 * 8);
        let e = shape(&h, types(&p), Precision::Bf16, [0; 3]).unwrap_err().to_string();
        assert!(e.contains("GEMM TN m=24 n=6 k=8") && e.contains("not a type combination"), "{e}");
        h.b = view(&mut p, "x32", Dtype::F32, 6 * 8);
        assert!(shape(&h, types(&p), Precision::Bf16, [0; 3]).is_err());
        assert!(shape(&h, types(&p), Precision::F32, [0; 3]).is_ok());
        h.b = view(&mut p, "tok", Dtype::U32, 6 * 8);
        let e = shape(&h, types(&p), Precision::F32, [0; 3]).unwrap_err().to_string();
        assert!(e.contains("operand B is a U32 buffer"), "{e}");
        // GemmDesc::check's message, with the GEMM named.
        let mut bad = linear(&mut p, 6, 8, 24, false);
        bad.lda = 7;
        let e = shape(&bad, types(&p), Precision::F32, [0; 3]).unwrap_err().to_string();
        assert!(e.contains("A: leading dimension 7 < 8 rows") && e.starts_with("device error: GEMM"), "{e}");
        bad.lda = 8;
        bad.d = View { buf: bad.b.buf, offset: 0, len: 6 * 24 };
        let e = shape(&bad, types(&p), Precision::F32, [0; 3]).unwrap_err().to_string();
        assert!(e.contains("D overlaps an input"), "{e}");
        let _ = BufId(0);
    }

    #[test]
    fn alignment_and_cache_key() {
        assert_eq!(alignment(0x7f00_0000_0000), 256);
        assert_eq!(alignment(0x7f00_0000_0102), 2);
        assert_eq!(alignment(0x7f00_0000_0110), 16);
        let mut p = Plan::default();
        let g = linear(&mut p, 6, 8, 24, false);
        let s1 = shape(&g, types(&p), Precision::Bf16, [0x100, 0x200, 0x300]).unwrap();
        let s2 = shape(&g, types(&p), Precision::Bf16, [0x1100, 0x1200, 0x1300]).unwrap();
        let s3 = shape(&g, types(&p), Precision::Bf16, [0x102, 0x200, 0x300]).unwrap();
        assert_eq!(s1, s2);
        assert_ne!(s1, s3);
        assert_eq!(s3.align, [2, 256, 256, 256]);
    }
}
