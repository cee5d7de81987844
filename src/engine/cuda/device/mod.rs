//! The CUDA executor: runs a plan on one NVIDIA GPU through cudarc, which loads libcuda, cuBLASLt and
//! NVRTC at run time (the program builds and runs with no CUDA installed; `libs::probe` turns their
//! absence into a clear error before cudarc could panic).
//!
//! - one device allocation per `BufSpec` (its `Precision::size_of` bytes per element), zero-filled;
//! - `Op::Gemm` through cuBLASLt (`blas`, layouts from `gemm`); `Op::Launch` through the NVRTC-compiled
//!   modules (`modules`; arguments checked and packed by `args`); `Op::Zero` a memset;
//! - one stream; `upload` and `download` convert host f32 to and from bf16 (`bf16`) for X buffers in
//!   bf16 precision, and move the first `data.len()` elements of the view (as the replay does).
//!
//! Ops are queued asynchronously; an error inside a kernel surfaces at the next `download` or
//! `synchronize`.

pub mod args;
pub mod bf16;
pub mod blas;
pub mod check;
pub mod gemm;
pub mod libs;
pub mod modules;

use super::plan::{BufSpec, Dtype, GemmDesc, Launch, Op, Precision, View};
use super::Executor;
use crate::{Error, Result};
use cudarc::driver::{result, sys, CudaContext, CudaStream};
use libs::{describe, driver_error, Found};
use std::sync::Arc;

/// What the executor runs on.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub name: String,
    pub compute_capability: (i32, i32),
    /// "sm_90": the architecture the kernels are compiled for.
    pub arch: String,
    pub sms: i32,
    pub total_bytes: usize,
    /// Free memory when the executor started.
    pub free_bytes: usize,
    /// The libraries' versions and the number of GPUs.
    pub found: Found,
}

pub struct CudaExecutor {
    precision: Precision,
    info: DeviceInfo,
    /// The plan's buffers and their device addresses (0 for an empty buffer).
    bufs: Vec<BufSpec>,
    ptrs: Vec<sys::CUdeviceptr>,
    blas: blas::Blas,
    pub modules: modules::Modules,
    stream: Arc<CudaStream>,
    ctx: Arc<CudaContext>,
}

// SAFETY: the raw handles (device pointers, modules, cuBLASLt objects) belong to `ctx`, which every
// public method binds to the calling thread before using them; the executor is used from one thread
// at a time (`&mut self`, or `&self` only for downloads, which are stream-ordered).
unsafe impl Send for CudaExecutor {}

fn cu(call: &'static str) -> impl Fn(result::DriverError) -> Error {
    move |e| driver_error(call, e)
}

/// The libraries (`libs::probe`) and GPU `ordinal` (an error naming the GPUs there are otherwise).
pub fn probe_gpu(ordinal: usize) -> Result<Found> {
    let found = libs::probe()?;
    if ordinal >= found.devices as usize {
        return Err(Error::Device(format!(
            "device 'cuda:{ordinal}': this machine has {} GPU{} (cuda:0{}); CUDA_VISIBLE_DEVICES chooses which",
            found.devices,
            if found.devices == 1 { "" } else { "s" },
            if found.devices > 1 { format!(" to cuda:{}", found.devices - 1) } else { String::new() }
        )));
    }
    Ok(found)
}

/// The card's dense peak in TFLOP/s in `precision` by its name, where known (bf16: tensor cores;
/// f32: the CUDA cores, TF32 being off): H100 and H200 989 and 67, A100 312 and 19.5.
pub fn peak_tflops(gpu: &str, precision: Precision) -> Option<f64> {
    let g = gpu.to_uppercase();
    let (bf16, f32) = if g.contains("H100") || g.contains("H200") {
        (989.0, 67.0)
    } else if g.contains("A100") {
        (312.0, 19.5)
    } else {
        return None;
    };
    Some(if precision == Precision::Bf16 { bf16 } else { f32 })
}

impl CudaExecutor {
    /// The executor on GPU 0 (the first of `CUDA_VISIBLE_DEVICES`) in `precision`.
    pub fn new(precision: Precision) -> Result<CudaExecutor> {
        CudaExecutor::on(0, precision)
    }

    /// The executor on GPU `ordinal` in `precision`: probes the libraries and the GPU, creates the
    /// context, a stream and cuBLASLt's handle. Kernels compile on first use.
    pub fn on(ordinal: usize, precision: Precision) -> Result<CudaExecutor> {
        let found = probe_gpu(ordinal)?;
        let ctx = CudaContext::new(ordinal).map_err(cu("cuDevicePrimaryCtxRetain"))?;
        let (major, minor) = ctx.compute_capability().map_err(cu("cuDeviceGetAttribute"))?;
        let sms = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(cu("cuDeviceGetAttribute"))?;
        let (free_bytes, total_bytes) = ctx.mem_get_info().map_err(cu("cuMemGetInfo"))?;
        let name = ctx.name().map_err(cu("cuDeviceGetName"))?;
        if precision == Precision::Bf16 && major < 8 {
            return Err(Error::Device(format!(
                "{name} is sm_{major}{minor}: bf16 needs sm_80 (Ampere) or newer; use the f32 precision"
            )));
        }
        let stream = ctx.new_stream().map_err(cu("cuStreamCreate"))?;
        let arch = format!("sm_{major}{minor}");
        let info = DeviceInfo {
            name,
            compute_capability: (major, minor),
            arch: arch.clone(),
            sms,
            total_bytes,
            free_bytes,
            found,
        };
        let blas = blas::Blas::new()?;
        Ok(CudaExecutor {
            precision,
            info,
            bufs: Vec::new(),
            ptrs: Vec::new(),
            blas,
            modules: modules::Modules::new(precision, arch),
            stream,
            ctx,
        })
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// GEMM shapes with an algorithm chosen so far.
    pub fn gemm_shapes(&self) -> usize {
        self.blas.shapes()
    }

    fn bind(&self) -> Result<()> {
        self.ctx.bind_to_thread().map_err(cu("cuCtxSetCurrent"))
    }

    fn stream(&self) -> sys::CUstream {
        self.stream.cu_stream()
    }

    /// Waits for every queued op; an error of an earlier kernel shows here.
    pub fn synchronize(&self) -> Result<()> {
        self.bind()?;
        self.stream.synchronize().map_err(cu("cuStreamSynchronize (an earlier kernel or copy failed)"))
    }

    /// Compiles and loads every kernel file now (the self-test times it).
    pub fn load_all_kernels(&mut self) -> Result<()> {
        self.bind()?;
        self.modules.load_all()
    }

    /// The device address of a view's first element, and its byte length, after checking it lies in
    /// its buffer.
    fn addr(&self, v: View, what: &dyn Fn() -> String) -> Result<(u64, usize)> {
        args::check_view(v, &self.bufs, what)?;
        let i = v.buf.0 as usize;
        let size = self.precision.size_of(self.bufs[i].dtype);
        Ok((self.ptrs[i] + (v.offset * size) as u64, v.len * size))
    }

    fn gemm(&mut self, g: &GemmDesc) -> Result<()> {
        let what = || format!("GEMM m={} n={} k={}", g.m, g.n, g.k);
        let (a, _) = self.addr(g.a, &what)?;
        let (b, _) = self.addr(g.b, &what)?;
        let (d, _) = self.addr(g.d, &what)?;
        let bias = match g.bias {
            Some(v) => Some(self.addr(v, &what)?.0),
            None => None,
        };
        let bufs = &self.bufs;
        let shape = gemm::shape(g, |v| bufs[v.buf.0 as usize].dtype, self.precision, [a, b, d])?;
        let stream = self.stream();
        self.blas.gemm(g, &shape, a, b, d, bias, stream)
    }

    fn launch(&mut self, l: &Launch) -> Result<()> {
        let packed = args::pack(l, &self.bufs, self.precision)?;
        let f = self.modules.function(l.kernel)?;
        self.modules.allow_shared(l.kernel, l.shared_bytes)?;
        let mut slots: Vec<u64> = packed.iter().map(|p| p.slot(|buf| self.ptrs[buf])).collect();
        let mut params: Vec<*mut std::ffi::c_void> = slots.iter_mut().map(|s| s as *mut u64 as *mut _).collect();
        let (g, b) = (l.grid, l.block);
        // SAFETY: `f` is a function of a loaded module of this context; the arguments match its C
        // signature (checked by `args::pack`) and point into live allocations; `slots` outlives the
        // call, which copies the parameters.
        unsafe {
            result::launch_kernel(f, (g[0], g[1], g[2]), (b[0], b[1], b[2]), l.shared_bytes, self.stream(), &mut params)
        }
        .map_err(|e| Error::Device(format!("launching kernel {} {g:?}×{b:?}: {}", l.kernel.name(), describe(e))))
    }

    /// Checks a host transfer of `n` values into (or out of) the first `n` elements of `v`.
    fn check_host(&self, v: View, n: usize, dtypes: &[Dtype], what: &str) -> Result<()> {
        let name = || format!("{what} of {n} values");
        args::check_view(v, &self.bufs, &name)?;
        let spec = &self.bufs[v.buf.0 as usize];
        if !dtypes.contains(&spec.dtype) {
            return Err(Error::Device(format!("{what}: buffer '{}' is {:?}, not {dtypes:?}", spec.name, spec.dtype)));
        }
        if n > v.len {
            return Err(Error::Device(format!("{what}: {n} host values for a view of {} in '{}'", v.len, spec.name)));
        }
        Ok(())
    }

    fn bf16_view(&self, v: View) -> bool {
        self.bufs[v.buf.0 as usize].dtype == Dtype::X && self.precision == Precision::Bf16
    }

    fn copy_in<T>(&self, v: View, data: &[T]) -> Result<()> {
        let (dst, bytes) = self.addr(v, &|| "upload".into())?;
        debug_assert_eq!(bytes, std::mem::size_of_val(data));
        // SAFETY: `dst` is a live allocation of `bytes` (checked); the host slice lives until the
        // stream is synchronized below.
        unsafe { result::memcpy_htod_async(dst, data, self.stream()) }.map_err(cu("cuMemcpyHtoDAsync"))?;
        self.synchronize()
    }

    fn copy_out<T>(&self, v: View, out: &mut [T]) -> Result<()> {
        let (src, bytes) = self.addr(v, &|| "download".into())?;
        debug_assert_eq!(bytes, std::mem::size_of_val(out));
        // SAFETY: as `copy_in`.
        unsafe { result::memcpy_dtoh_async(out, src, self.stream()) }.map_err(cu("cuMemcpyDtoHAsync"))?;
        self.synchronize()
    }
}

impl Executor for CudaExecutor {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn peak_flops(&self) -> Option<f64> {
        peak_tflops(&self.info.name, self.precision).map(|t| t * 1e12)
    }

    fn alloc(&mut self, bufs: &[BufSpec]) -> Result<()> {
        self.bind()?;
        if !self.bufs.is_empty() {
            return Err(Error::Device("alloc: the executor's buffers are already allocated".into()));
        }
        let need: usize = bufs.iter().map(|b| b.len * self.precision.size_of(b.dtype)).sum();
        let (free, _) = result::mem_get_info().map_err(cu("cuMemGetInfo"))?;
        if need > free {
            return Err(Error::Device(format!(
                "the plan needs {:.2} GiB of GPU memory, {} has {:.2} GiB free: use a smaller batch_size (with more \
                 gradient_accumulation_steps) or block_size",
                need as f64 / (1u64 << 30) as f64,
                self.info.name,
                free as f64 / (1u64 << 30) as f64
            )));
        }
        for spec in bufs {
            let bytes = spec.len * self.precision.size_of(spec.dtype);
            let ptr = if bytes == 0 {
                0
            } else {
                // SAFETY: a plain allocation, freed in drop.
                let p = unsafe { result::malloc_sync(bytes) }.map_err(|e| {
                    Error::Device(format!("allocating '{}' ({bytes} bytes): {}", spec.name, describe(e)))
                })?;
                // SAFETY: `p` has `bytes` bytes.
                unsafe { result::memset_d8_async(p, 0, bytes, self.stream()) }.map_err(cu("cuMemsetD8Async"))?;
                p
            };
            self.bufs.push(spec.clone());
            self.ptrs.push(ptr);
        }
        self.synchronize()
    }

    fn run(&mut self, ops: &[Op]) -> Result<()> {
        self.bind()?;
        for op in ops {
            match op {
                Op::Gemm(g) => self.gemm(g)?,
                Op::Launch(l) => self.launch(l)?,
                Op::Zero(v) => {
                    let (p, bytes) = self.addr(*v, &|| "zero".into())?;
                    if bytes > 0 {
                        // SAFETY: inside a live allocation (checked).
                        unsafe { result::memset_d8_async(p, 0, bytes, self.stream()) }
                            .map_err(cu("cuMemsetD8Async"))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn upload(&mut self, view: View, data: &[f32]) -> Result<()> {
        self.bind()?;
        self.check_host(view, data.len(), &[Dtype::F32, Dtype::X], "upload")?;
        let view = view.sub(0, data.len());
        if self.bf16_view(view) {
            let mut h = vec![0u16; data.len()];
            bf16::encode(data, &mut h);
            self.copy_in(view, &h)
        } else {
            self.copy_in(view, data)
        }
    }

    fn upload_u32(&mut self, view: View, data: &[u32]) -> Result<()> {
        self.bind()?;
        self.check_host(view, data.len(), &[Dtype::U32], "upload_u32")?;
        let view = view.sub(0, data.len());
        self.copy_in(view, data)
    }

    fn download(&self, view: View, out: &mut [f32]) -> Result<()> {
        self.bind()?;
        self.check_host(view, out.len(), &[Dtype::F32, Dtype::X], "download")?;
        let view = view.sub(0, out.len());
        if self.bf16_view(view) {
            let mut h = vec![0u16; out.len()];
            self.copy_out(view, &mut h)?;
            bf16::decode(&h, out);
            Ok(())
        } else {
            self.copy_out(view, out)
        }
    }
}

impl Drop for CudaExecutor {
    fn drop(&mut self) {
        // The fields that own device objects (modules, cuBLASLt) drop after this, with the context
        // current on this thread; the buffers are freed here. Errors cannot be reported from a drop.
        if self.bind().is_err() {
            return;
        }
        let _ = self.stream.synchronize();
        for p in self.ptrs.drain(..) {
            if p != 0 {
                // SAFETY: allocated by `alloc`, freed once.
                let _ = unsafe { result::free_sync(p) };
            }
        }
    }
}
