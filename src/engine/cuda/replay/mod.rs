//! The CPU executor of the GPU plan: every `GemmDesc` through the `gemm` crate with cuBLAS's
//! column-major semantics, every `Launch` through the CPU reference kernel of `engine::cpu` (or, where
//! the CPU engine splits the work differently, the few lines of the kernel's definition in `kernel.rs`).
//! A training step through the plan on this executor must match the CPU engine (tests/cuda_plan.rs): that
//! tests the plan's transposes, leading dimensions, strides, offsets and buffer choices with no GPU.
//!
//! Arguments are copied in and results copied out, so the replay itself cannot be fooled by aliasing;
//! instead it refuses what would be a race on the GPU: two pointer arguments of one launch that overlap
//! (except the one in-place form the contract allows, dropout's out = inp).

mod kernels;

use super::kernel::{ArgKind, Kernel};
use super::plan::{Arg, BufSpec, Dtype, GemmDesc, Launch, Op, Precision, Trans, View};
use super::Executor;
use crate::{Error, Result};

/// Buffers in host memory: f32 for F32 and X (the replay runs `Precision::F32`), u32 for token ids.
#[derive(Default)]
pub struct Replay {
    f: Vec<Vec<f32>>,
    u: Vec<Vec<u32>>,
    dtypes: Vec<Dtype>,
}

impl Replay {
    pub fn new() -> Self {
        Replay::default()
    }

    fn floats(&self, v: View) -> Result<&[f32]> {
        let buf = self.f.get(v.buf.0 as usize).filter(|_| self.dtypes[v.buf.0 as usize] != Dtype::U32);
        buf.and_then(|b| b.get(v.offset..v.offset + v.len))
            .ok_or_else(|| Error::Device(format!("replay: {v:?} is not inside a float buffer")))
    }

    fn floats_mut(&mut self, v: View) -> Result<&mut [f32]> {
        let ok = self.dtypes.get(v.buf.0 as usize).is_some_and(|d| *d != Dtype::U32);
        let buf = self.f.get_mut(v.buf.0 as usize).filter(|_| ok);
        buf.and_then(|b| b.get_mut(v.offset..v.offset + v.len))
            .ok_or_else(|| Error::Device(format!("replay: {v:?} is not inside a float buffer")))
    }

    fn ids(&self, v: View) -> Result<&[u32]> {
        let ok = self.dtypes.get(v.buf.0 as usize) == Some(&Dtype::U32);
        let buf = self.u.get(v.buf.0 as usize).filter(|_| ok);
        buf.and_then(|b| b.get(v.offset..v.offset + v.len))
            .ok_or_else(|| Error::Device(format!("replay: {v:?} is not inside a u32 buffer")))
    }

    fn gemm(&mut self, g: &GemmDesc) -> Result<()> {
        g.check().map_err(|e| Error::Device(format!("replay: GEMM {g:?}: {e}")))?;
        let (a, b) = (self.floats(g.a)?.to_vec(), self.floats(g.b)?.to_vec());
        let bias = g.bias.map(|v| self.floats(v).map(|s| s.to_vec())).transpose()?;
        let d = self.floats_mut(g.d)?;
        // (row stride, column stride) of op(X) for a column-major X with leading dimension ld
        let strides = |t: Trans, ld: usize| if t == Trans::N { (1, ld) } else { (ld, 1) };
        let (a_rs, a_cs) = strides(g.transa, g.lda);
        let (b_rs, b_cs) = strides(g.transb, g.ldb);
        for i in 0..g.batch {
            let (ao, bo, dof) = (i * g.stride_a, i * g.stride_b, i * g.stride_d);
            if let Some(bias) = &bias {
                for c in 0..g.n {
                    d[dof + c * g.ldd..][..g.m].copy_from_slice(&bias[..g.m]);
                }
            } else if g.beta != 1.0 {
                for c in 0..g.n {
                    for x in &mut d[dof + c * g.ldd..][..g.m] {
                        *x = if g.beta == 0.0 { 0.0 } else { *x * g.beta };
                    }
                }
            }
            let read_dst = bias.is_some() || g.beta != 0.0;
            // SAFETY: `check` proved every element each operand touches lies inside its view, and D
            // (this buffer) is disjoint from the copies of A and B.
            unsafe {
                gemm::gemm(
                    g.m,
                    g.n,
                    g.k,
                    d.as_mut_ptr().add(dof),
                    g.ldd as isize,
                    1,
                    read_dst,
                    a.as_ptr().add(ao),
                    a_cs as isize,
                    a_rs as isize,
                    b.as_ptr().add(bo),
                    b_cs as isize,
                    b_rs as isize,
                    1.0,
                    g.alpha,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(0),
                );
            }
        }
        Ok(())
    }

    /// Writes results back: each (view, values) with values covering the view's first elements.
    fn put(&mut self, outs: &[(View, &Vec<f32>)]) -> Result<()> {
        for (v, x) in outs {
            let n = v.len.min(x.len());
            self.floats_mut(*v)?[..n].copy_from_slice(&x[..n]);
        }
        Ok(())
    }
}

/// The arguments against the kernel's signature, and no two pointers overlapping (a race on the GPU)
/// except dropout's out = inp.
pub fn check_args(l: &Launch) -> Result<()> {
    let sig = l.kernel.signature();
    let bad = |why: String| Err(Error::Device(format!("launch of {}: {why}", l.kernel.name())));
    if sig.len() != l.args.len() {
        return bad(format!("{} arguments, the signature has {}", l.args.len(), sig.len()));
    }
    for (k, (kind, arg)) in sig.iter().zip(&l.args).enumerate() {
        let ok = matches!(
            (kind, arg),
            (ArgKind::X | ArgKind::F32 | ArgKind::U32, Arg::Ptr(_))
                | (ArgKind::OptX | ArgKind::OptF32, Arg::Ptr(_) | Arg::Null)
                | (ArgKind::I32, Arg::I32(_))
                | (ArgKind::U64, Arg::U64(_))
                | (ArgKind::Float, Arg::F32(_))
        );
        if !ok {
            return bad(format!("argument {k} is {arg:?}, the signature says {kind:?}"));
        }
    }
    let ptrs: Vec<(usize, View)> =
        l.args.iter().enumerate().filter_map(|(k, a)| if let Arg::Ptr(v) = a { Some((k, *v)) } else { None }).collect();
    for (i, (ka, a)) in ptrs.iter().enumerate() {
        for (kb, b) in &ptrs[i + 1..] {
            let in_place = l.kernel == Kernel::Dropout && a == b;
            if a.overlaps(b) && !in_place {
                return bad(format!("arguments {ka} and {kb} overlap ({a:?}, {b:?})"));
            }
        }
    }
    Ok(())
}

impl Executor for Replay {
    fn name(&self) -> &'static str {
        "replay"
    }

    fn precision(&self) -> Precision {
        Precision::F32
    }

    fn alloc(&mut self, bufs: &[BufSpec]) -> Result<()> {
        self.dtypes = bufs.iter().map(|b| b.dtype).collect();
        self.f = bufs.iter().map(|b| if b.dtype == Dtype::U32 { vec![] } else { vec![0.0; b.len] }).collect();
        self.u = bufs.iter().map(|b| if b.dtype == Dtype::U32 { vec![0; b.len] } else { vec![] }).collect();
        Ok(())
    }

    fn run(&mut self, ops: &[Op]) -> Result<()> {
        for op in ops {
            match op {
                Op::Gemm(g) => self.gemm(g)?,
                Op::Launch(l) => self.launch(l)?,
                Op::Zero(v) => self.floats_mut(*v)?.fill(0.0),
            }
        }
        Ok(())
    }

    fn upload(&mut self, view: View, data: &[f32]) -> Result<()> {
        let dst = self.floats_mut(view)?;
        if data.len() > dst.len() {
            return Err(Error::Device(format!("upload of {} values into a view of {}", data.len(), dst.len())));
        }
        dst[..data.len()].copy_from_slice(data);
        Ok(())
    }

    fn upload_u32(&mut self, view: View, data: &[u32]) -> Result<()> {
        let ok = self.dtypes.get(view.buf.0 as usize) == Some(&Dtype::U32);
        let dst = self
            .u
            .get_mut(view.buf.0 as usize)
            .filter(|_| ok)
            .and_then(|b| b.get_mut(view.offset..view.offset + view.len));
        match dst {
            Some(d) if data.len() <= d.len() => {
                d[..data.len()].copy_from_slice(data);
                Ok(())
            }
            _ => Err(Error::Device(format!("upload of {} ids into {view:?}", data.len()))),
        }
    }

    fn download(&self, view: View, out: &mut [f32]) -> Result<()> {
        let src = self.floats(view)?;
        let n = out.len().min(src.len());
        out[..n].copy_from_slice(&src[..n]);
        Ok(())
    }
}
