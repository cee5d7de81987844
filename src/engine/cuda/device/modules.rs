//! The kernels on the device: one CUDA module per `.cu` file, compiled by NVRTC to a CUBIN for the
//! card's `sm_XY` in the executor's precision (once per process: `compile_cached`) and loaded on first
//! use; one function handle per kernel.

use super::super::kernel::Kernel;
use super::super::nvrtc;
use super::super::plan::Precision;
use super::libs::describe;
use crate::{Error, Result};
use cudarc::driver::{result, sys};
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How long one file took to compile and load, and NVRTC's log.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub file: &'static str,
    pub seconds: f64,
    pub cubin_bytes: usize,
    pub log: String,
}

pub struct Modules {
    precision: Precision,
    arch: String,
    modules: HashMap<&'static str, sys::CUmodule>,
    functions: HashMap<Kernel, sys::CUfunction>,
    /// The dynamic shared memory each kernel was allowed beyond the default.
    shared: HashMap<Kernel, u32>,
    /// Every file loaded so far, in order.
    pub compiled: Vec<Compiled>,
}

/// Every `.cu` file a kernel lives in, once, in the order of `Kernel::all`.
pub fn files() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for k in Kernel::all() {
        if !v.contains(&k.file()) {
            v.push(k.file());
        }
    }
    v
}

/// A file's CUBIN and NVRTC's log.
pub struct Cubin {
    pub cubin: Vec<u8>,
    pub log: String,
}

/// Compiled files by (file, precision, arch), for the life of the process: every executor after the
/// first loads its modules without compiling (the self-test makes dozens of executors).
type Cache = HashMap<(&'static str, Precision, String), Arc<Cubin>>;
static CUBINS: Mutex<Option<Cache>> = Mutex::new(None);

/// `nvrtc::compile` of `file`, once per process for each precision and architecture.
pub fn compile_cached(file: &'static str, precision: Precision, arch: &str) -> Result<Arc<Cubin>> {
    let key = (file, precision, arch.to_string());
    if let Some(c) = CUBINS.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).get(&key) {
        return Ok(c.clone());
    }
    let m = nvrtc::compile(file, precision, arch)?;
    if m.cubin.is_empty() {
        return Err(Error::Device(format!("{file}: NVRTC returned no CUBIN for {arch}: {}", m.log)));
    }
    let c = Arc::new(Cubin { cubin: m.cubin, log: m.log });
    CUBINS.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).insert(key, c.clone());
    Ok(c)
}

impl Modules {
    /// No module loaded yet; `arch` is the card's ("sm_90").
    pub fn new(precision: Precision, arch: String) -> Modules {
        Modules {
            precision,
            arch,
            modules: HashMap::new(),
            functions: HashMap::new(),
            shared: HashMap::new(),
            compiled: Vec::new(),
        }
    }

    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// Compiles and loads `file` unless it is loaded (the executor's context must be current).
    pub fn load(&mut self, file: &'static str) -> Result<sys::CUmodule> {
        if let Some(&m) = self.modules.get(file) {
            return Ok(m);
        }
        let t0 = Instant::now();
        let module = compile_cached(file, self.precision, &self.arch)?;
        // SAFETY: a CUBIN image from NVRTC for this device's architecture; the driver copies it.
        let m = unsafe { result::module::load_data(module.cubin.as_ptr() as *const _) }
            .map_err(|e| Error::Device(format!("{file}: loading its CUBIN ({}) failed: {}", self.arch, describe(e))))?;
        self.modules.insert(file, m);
        self.compiled.push(Compiled {
            file,
            seconds: t0.elapsed().as_secs_f64(),
            cubin_bytes: module.cubin.len(),
            log: module.log.clone(),
        });
        Ok(m)
    }

    /// Loads every file (the self-test times this).
    pub fn load_all(&mut self) -> Result<()> {
        for f in files() {
            self.load(f)?;
        }
        Ok(())
    }

    /// Lets `f` take `bytes` of dynamic shared memory (above the default 48 KiB a kernel must ask
    /// for it), once per kernel and size.
    pub fn allow_shared(&mut self, k: Kernel, bytes: u32) -> Result<()> {
        if bytes <= 48 * 1024 || self.shared.get(&k).is_some_and(|&b| b >= bytes) {
            return Ok(());
        }
        let f = self.function(k)?;
        let attr = sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
        // SAFETY: `f` is a function of a loaded module.
        unsafe { result::function::set_function_attribute(f, attr, bytes as i32) }.map_err(|e| {
            Error::Device(format!("kernel {}: {bytes} bytes of shared memory refused: {}", k.name(), describe(e)))
        })?;
        self.shared.insert(k, bytes);
        Ok(())
    }

    /// The kernel's function handle, loading its module first if needed.
    pub fn function(&mut self, k: Kernel) -> Result<sys::CUfunction> {
        if let Some(&f) = self.functions.get(&k) {
            return Ok(f);
        }
        let m = self.load(k.file())?;
        let name = CString::new(k.name()).expect("kernel names have no NUL");
        // SAFETY: `m` is a loaded module of this context.
        let f = unsafe { result::module::get_function(m, name) }
            .map_err(|e| Error::Device(format!("kernel {} is not in {}: {}", k.name(), k.file(), describe(e))))?;
        self.functions.insert(k, f);
        Ok(f)
    }
}

impl Drop for Modules {
    fn drop(&mut self) {
        self.functions.clear();
        for (_, m) in self.modules.drain() {
            // SAFETY: loaded by `load`, unloaded once; the owner's context is current (CudaExecutor's
            // drop binds it). A failure cannot be reported from a drop.
            let _ = unsafe { result::module::unload(m) };
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_kernel_file_once() {
        let f = super::files();
        assert_eq!(f[0], "encoder.cu");
        for k in super::Kernel::all() {
            assert_eq!(f.iter().filter(|&&x| x == k.file()).count(), 1, "{}", k.file());
        }
    }
}
