//! GEMMs through cuBLASLt, as llm.c's `matmul_cublaslt`: compute type CUBLAS_COMPUTE_32F with f32
//! scale (in f32 precision this is true f32, no TF32), layouts and descriptor from `gemm::shape`, a
//! 32 MiB workspace, and the heuristic's first algorithm chosen once per shape and cached, so that
//! the same plan runs the same algorithms every step (reproducible, and no heuristic call per GEMM).

use super::super::plan::GemmDesc;
use super::gemm::{Layout, Shape, Value};
use super::libs::describe;
use crate::{Error, Result};
use cudarc::cublaslt::result::{self as lt, CublasError};
use cudarc::cublaslt::sys;
use cudarc::driver::{result as cu, sys::CUdeviceptr, sys::CUstream};
use std::collections::HashMap;
use std::ffi::c_void;

/// The workspace cuBLASLt may use (NVIDIA's recommendation for Hopper; more than enough elsewhere).
pub const WORKSPACE_BYTES: usize = 32 << 20;

struct Prepared {
    desc: sys::cublasLtMatmulDesc_t,
    /// A, B, D (C is D).
    layouts: [sys::cublasLtMatrixLayout_t; 3],
    algo: sys::cublasLtMatmulAlgo_t,
}

pub struct Blas {
    handle: sys::cublasLtHandle_t,
    workspace: CUdeviceptr,
    cache: HashMap<Shape, Prepared>,
}

fn lt_error(what: &str, shape: &Shape, e: CublasError) -> Error {
    Error::Device(format!(
        "cuBLASLt {what} for the GEMM {:?}{:?} A {:?} B {:?} D {:?} bias {:?}: {:?}",
        shape.transa, shape.transb, shape.a, shape.b, shape.d, shape.bias, e.0
    ))
}

/// Sets one attribute through `set(ptr, bytes)` with the value's C type.
unsafe fn set_value(
    v: Value,
    set: impl Fn(*const c_void, usize) -> std::result::Result<(), CublasError>,
) -> std::result::Result<(), CublasError> {
    match v {
        Value::I32(x) => set(&x as *const i32 as *const c_void, 4),
        Value::U32(x) => set(&x as *const u32 as *const c_void, 4),
        Value::I64(x) => set(&x as *const i64 as *const c_void, 8),
    }
}

/// `cublasLtMatrixLayoutCreate` and the layout's attributes in `Layout::attributes`' order.
pub fn create_layout(l: &Layout) -> std::result::Result<sys::cublasLtMatrixLayout_t, CublasError> {
    let h = lt::create_matrix_layout(l.elem.data_type(), l.rows, l.cols, l.ld)?;
    for (attr, v) in l.attributes() {
        // SAFETY: `h` was just created; the value has the attribute's C type.
        let r = unsafe { set_value(v, |p, n| lt::set_matrix_layout_attribute(h, attr, p, n)) };
        if let Err(e) = r {
            // SAFETY: created above, destroyed once.
            let _ = unsafe { lt::destroy_matrix_layout(h) };
            return Err(e);
        }
    }
    Ok(h)
}

/// The matmul descriptor of a shape: f32 compute and scale, then `Shape::desc_attributes` in order.
pub fn create_desc(s: &Shape) -> std::result::Result<sys::cublasLtMatmulDesc_t, CublasError> {
    let desc = lt::create_matmul_desc(sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, sys::cudaDataType::CUDA_R_32F)?;
    for (attr, v) in s.desc_attributes() {
        // SAFETY: `desc` was just created; the value has the attribute's C type.
        let r = unsafe { set_value(v, |p, n| lt::set_matmul_desc_attribute(desc, attr, p, n)) };
        if let Err(e) = r {
            // SAFETY: created above, destroyed once.
            let _ = unsafe { lt::destroy_matmul_desc(desc) };
            return Err(e);
        }
    }
    Ok(desc)
}

/// The heuristic's preferences: at most `WORKSPACE_BYTES` of workspace, the operands' alignments.
pub fn create_pref(s: &Shape) -> std::result::Result<sys::cublasLtMatmulPreference_t, CublasError> {
    use sys::cublasLtMatmulPreferenceAttributes_t as P;
    let pref = lt::create_matmul_pref()?;
    let ws = WORKSPACE_BYTES as u64;
    let attrs = [
        (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, s.align[0]),
        (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, s.align[1]),
        (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, s.align[2]),
        (P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, s.align[3]),
    ];
    // SAFETY: `pref` was just created; values of the attributes' C types (uint64, uint32).
    let r = unsafe {
        lt::set_matmul_pref_attribute(
            pref,
            P::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
            &ws as *const u64 as *const c_void,
            8,
        )
        .and_then(|_| {
            attrs.iter().try_for_each(|(attr, v)| {
                lt::set_matmul_pref_attribute(pref, *attr, v as *const u32 as *const c_void, 4)
            })
        })
    };
    match r {
        Ok(()) => Ok(pref),
        Err(e) => {
            // SAFETY: created above, destroyed once.
            let _ = unsafe { lt::destroy_matmul_pref(pref) };
            Err(e)
        }
    }
}

impl Prepared {
    fn destroy(&self) {
        // SAFETY: created by `prepare`, destroyed once (from `Blas::drop` or a failed `prepare`).
        unsafe {
            let _ = lt::destroy_matmul_desc(self.desc);
            for l in self.layouts {
                if !l.is_null() {
                    let _ = lt::destroy_matrix_layout(l);
                }
            }
        }
    }
}

impl Blas {
    /// A cuBLASLt handle and its workspace (the executor's context must be current).
    pub fn new() -> Result<Blas> {
        let handle = lt::create_handle().map_err(|e| Error::Device(format!("cublasLtCreate: {:?}", e.0)))?;
        // SAFETY: a plain device allocation, freed in drop.
        let workspace = match unsafe { cu::malloc_sync(WORKSPACE_BYTES) } {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: created above, destroyed once.
                let _ = unsafe { lt::destroy_handle(handle) };
                return Err(Error::Device(format!("allocating cuBLASLt's workspace: {}", describe(e))));
            }
        };
        Ok(Blas { handle, workspace, cache: HashMap::new() })
    }

    /// How many GEMM shapes have an algorithm chosen.
    pub fn shapes(&self) -> usize {
        self.cache.len()
    }

    fn prepare(&self, s: &Shape) -> Result<Prepared> {
        let mut p = Prepared {
            desc: create_desc(s).map_err(|e| lt_error("matmul descriptor", s, e))?,
            layouts: [std::ptr::null_mut(); 3],
            algo: sys::cublasLtMatmulAlgo_t { data: [0; 8] },
        };
        let r = (|| -> std::result::Result<(), (&str, CublasError)> {
            for (i, l) in [s.a, s.b, s.d].iter().enumerate() {
                p.layouts[i] = create_layout(l).map_err(|e| ("matrix layout", e))?;
            }
            let pref = create_pref(s).map_err(|e| ("preference", e))?;
            let [a, b, d] = p.layouts;
            // SAFETY: the descriptor, layouts and preference were created above.
            let heuristic = unsafe {
                let h = lt::get_matmul_algo_heuristic(self.handle, p.desc, a, b, d, d, pref);
                let _ = lt::destroy_matmul_pref(pref);
                h.map_err(|e| ("heuristic (no algorithm)", e))?
            };
            p.algo = heuristic.algo;
            Ok(())
        })();
        match r {
            Ok(()) => Ok(p),
            Err((what, e)) => {
                p.destroy();
                Err(lt_error(what, s, e))
            }
        }
    }

    /// Runs `g` (its shape `s` from `gemm::shape`) on `stream` at the operands' device addresses.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        &mut self,
        g: &GemmDesc,
        s: &Shape,
        a: u64,
        b: u64,
        d: u64,
        bias: Option<u64>,
        stream: CUstream,
    ) -> Result<()> {
        if !self.cache.contains_key(s) {
            let p = self.prepare(s)?;
            self.cache.insert(*s, p);
        }
        let p = &self.cache[s];
        let (alpha, beta) = (g.alpha, g.beta);
        // SAFETY: the descriptor and layouts are alive (cached); the addresses are inside the
        // executor's allocations (checked by the caller against `GemmDesc::check` and the buffers);
        // alpha and beta are host f32 (the default pointer mode) read before the call returns.
        unsafe {
            if let Some(bias) = bias {
                let v = &bias as *const u64 as *const c_void;
                lt::set_matmul_desc_attribute(
                    p.desc,
                    sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                    v,
                    8,
                )
                .map_err(|e| lt_error("bias pointer", s, e))?;
            }
            let [la, lb, ld] = p.layouts;
            lt::matmul(
                self.handle,
                p.desc,
                &alpha as *const f32 as *const c_void,
                &beta as *const f32 as *const c_void,
                a as *const c_void,
                la,
                b as *const c_void,
                lb,
                d as *const c_void,
                ld,
                d as *mut c_void,
                ld,
                &p.algo,
                self.workspace as *mut c_void,
                WORKSPACE_BYTES,
                stream as sys::cudaStream_t,
            )
            .map_err(|e| lt_error("matmul", s, e))
        }
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        for (_, p) in self.cache.drain() {
            p.destroy();
        }
        // SAFETY: created in `new`, released once; the owner's context is current.
        unsafe {
            let _ = lt::destroy_handle(self.handle);
            let _ = cu::free_sync(self.workspace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::plan::Trans;
    use super::super::gemm::{Elem, Layout, Shape, Value};
    use super::*;
    use sys::cublasLtMatrixLayoutAttribute_t as A;

    /// Opens cuBLASLt where `engine::cuda::libs` finds it (LD_LIBRARY_PATH, a toolkit, python3's
    /// nvidia/cu13/lib); these tests need the library, not a GPU (CI's wheels have no cuBLAS).
    fn cublaslt() {
        let _ = super::super::super::libs::preload("libcublasLt.so.13", "");
        assert!(super::super::libs::Lib::CublasLt.present(), "libcublasLt.so.13 not found");
    }

    /// The layouts as the real cuBLASLt stores them (host-side calls: no GPU needed).
    #[test]
    #[ignore = "needs libcublasLt.so.13 (pip install nvidia-cublas==13.*), no GPU"]
    fn cublaslt_stores_the_layout_attributes() {
        cublaslt();
        let l = Layout { elem: Elem::Bf16, rows: 64, cols: 67, ld: 64, batch: 8, stride: 64 * 67 };
        let h = create_layout(&l).unwrap();
        // cuBLASLt wants the attribute's exact size: reading with the size we set with checks it too.
        let get = |attr: A, size: usize| -> i64 {
            let mut buf = [0u8; 8];
            let mut written = 0usize;
            // SAFETY: `h` is alive; the buffer holds `size` ≤ 8 bytes.
            unsafe {
                sys::cublasLtMatrixLayoutGetAttribute(h, attr, buf.as_mut_ptr() as *mut c_void, size, &mut written)
            }
            .result()
            .unwrap_or_else(|e| panic!("{attr:?} ({size} bytes): {e:?}"));
            assert_eq!(written, size, "{attr:?}");
            match size {
                4 => i32::from_le_bytes(buf[..4].try_into().unwrap()) as i64,
                _ => i64::from_le_bytes(buf),
            }
        };
        assert_eq!(get(A::CUBLASLT_MATRIX_LAYOUT_TYPE, 4), sys::cudaDataType::CUDA_R_16BF as i64);
        assert_eq!(get(A::CUBLASLT_MATRIX_LAYOUT_ROWS, 8), 64);
        assert_eq!(get(A::CUBLASLT_MATRIX_LAYOUT_COLS, 8), 67);
        assert_eq!(get(A::CUBLASLT_MATRIX_LAYOUT_LD, 8), 64);
        for (attr, v) in l.attributes() {
            match v {
                Value::I32(x) => assert_eq!(get(attr, 4), x as i64),
                Value::I64(x) => assert_eq!(get(attr, 8), x),
                Value::U32(x) => assert_eq!(get(attr, 4), x as i64),
            }
        }
        // SAFETY: created above.
        unsafe { lt::destroy_matrix_layout(h) }.unwrap();
    }

    /// The matmul descriptor as the real cuBLASLt stores it: every attribute of `desc_attributes`
    /// (set with its C size) reads back.
    #[test]
    #[ignore = "needs libcublasLt.so.13 (pip install nvidia-cublas==13.*), no GPU"]
    fn cublaslt_stores_the_descriptor_attributes() {
        cublaslt();
        let l = |elem, rows, cols| Layout { elem, rows, cols, ld: rows as i64, batch: 1, stride: 0 };
        let s = Shape {
            transa: Trans::T,
            transb: Trans::N,
            a: l(Elem::Bf16, 64, 192),
            b: l(Elem::Bf16, 64, 67),
            d: l(Elem::Bf16, 192, 67),
            bias: Some(Elem::F32),
            align: [256; 4],
        };
        let attrs = s.desc_attributes();
        assert_eq!(attrs.len(), 4);
        let desc = create_desc(&s).unwrap();
        for (attr, v) in attrs {
            let mut buf = [0u8; 4];
            let mut written = 0usize;
            // SAFETY: `desc` is alive; every attribute here is 4 bytes.
            unsafe {
                sys::cublasLtMatmulDescGetAttribute(desc, attr, buf.as_mut_ptr() as *mut c_void, 4, &mut written)
            }
            .result()
            .unwrap_or_else(|e| panic!("{attr:?}: {e:?}"));
            let got = i32::from_le_bytes(buf);
            match v {
                Value::I32(x) => assert_eq!(got, x, "{attr:?}"),
                Value::U32(x) => assert_eq!(got as u32, x, "{attr:?}"),
                Value::I64(_) => panic!("{attr:?}: no 8-byte descriptor attribute is set"),
            }
        }
        // SAFETY: created above.
        unsafe { lt::destroy_matmul_desc(desc) }.unwrap();
        // The preferences take the workspace size and the alignments.
        let pref = create_pref(&Shape { align: [2, 16, 256, 256], ..s }).unwrap();
        // SAFETY: created above.
        unsafe { lt::destroy_matmul_pref(pref) }.unwrap();
    }
}
