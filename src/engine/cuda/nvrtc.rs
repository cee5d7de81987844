//! The kernels' sources (`kernels/*.cu`, built into the binary) and their compilation by NVRTC for the
//! card's architecture, into PTX and CUBIN, with a disk cache of the results.
//!
//! Options: `-arch=<arch>` (a real architecture such as `sm_90`, so that NVRTC gives a CUBIN as well as the
//! PTX), `-std=c++17`, the header folders of `libs::include_dirs` (`cuda_bf16.h` and what it includes),
//! and per precision:
//! - f32: `--fmad=false`: no contraction of a·b + c into an FMA, so the kernels round as the CPU reference
//!   does (it calls `mul_add` where it means an FMA, and the sources call `fmaf` there);
//! - bf16: `-DQG_BF16` (floatX = `__nv_bfloat16`), NVRTC's default contraction.
//!
//! Neither uses `--use_fast_math`: the kernels are memory-bound, so `__expf` and approximate division
//! would gain little, and they would cost the accuracy of softmax1's e^{−m} terms, softpick's ε and the
//! flushed denormals of small gradients.
//!
//! `common.cuh` is passed to NVRTC as a header (each file says `#include "common.cuh"`), so the line
//! numbers in NVRTC's messages are those of the files. NVRTC itself is loaded by `libs::preload` (no
//! `LD_LIBRARY_PATH` needed for the wheels; a clear error when it is absent).
//!
//! Cache: `<dir>/<file>-<precision>-<arch>-<hash>.bin` holding the CUBIN, PTX and log, `hash` the FNV-1a
//! of the sources, the options, the architecture and NVRTC's version, written to a temporary file and
//! renamed into place (never a torn file). `dir` is `$QUIETGPT_CACHE`, else `$XDG_CACHE_HOME/quietgpt/cuda`,
//! else `~/.cache/quietgpt/cuda`; a cache that cannot be read or written only costs a compile.

use super::libs;
use super::plan::Precision;
use crate::{Error, Result};
use cudarc::nvrtc::{result, sys};
use std::ffi::{c_char, CString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The name under which the shared header is given to NVRTC.
pub const HEADER: &str = "common.cuh";
const COMMON: &str = include_str!("kernels/common.cuh");

static SOURCES: [(&str, &str); 9] = [
    ("encoder.cu", include_str!("kernels/encoder.cu")),
    ("layernorm.cu", include_str!("kernels/layernorm.cu")),
    ("reduce.cu", include_str!("kernels/reduce.cu")),
    ("activation.cu", include_str!("kernels/activation.cu")),
    ("attention.cu", include_str!("kernels/attention.cu")),
    ("gate.cu", include_str!("kernels/gate.cu")),
    ("dropout.cu", include_str!("kernels/dropout.cu")),
    ("crossentropy.cu", include_str!("kernels/crossentropy.cu")),
    ("optimizer.cu", include_str!("kernels/optimizer.cu")),
];

/// Every kernel file: (name, source). The names are those of `Kernel::file`.
pub fn sources() -> &'static [(&'static str, &'static str)] {
    &SOURCES
}

/// The shared header: (name, source).
pub fn header() -> (&'static str, &'static str) {
    (HEADER, COMMON)
}

/// One compiled kernel file.
#[derive(Clone, Debug)]
pub struct Module {
    pub file: String,
    /// The machine code for the architecture (what the CUDA executor loads).
    pub cubin: Vec<u8>,
    pub ptx: String,
    /// NVRTC's messages (warnings; empty when none).
    pub log: String,
    /// Whether it came from the disk cache.
    pub cached: bool,
}

const FIX_NVRTC: &str = "install NVRTC 13 (libnvrtc.so.13 with libnvrtc-builtins.so.13.0): pip install nvidia-cuda-nvrtc==13.0.* (scripts/cuda-wheels.sh does it into \
     ~/.cache/quietgpt/cuda-wheels-13.0) and set QUIETGPT_CUDA_WHEELS to the --target folder, or \
     LD_LIBRARY_PATH=<site-packages>/nvidia/cu13/lib; or a CUDA 13 toolkit's lib64";

/// Loads NVRTC (`libnvrtc.so.13` and its `libnvrtc-builtins.so.<major>.<minor>`) once; returns its version
/// (major, minor), or the error that says what is missing.
pub fn load() -> Result<(i32, i32)> {
    static LOADED: OnceLock<std::result::Result<(i32, i32), String>> = OnceLock::new();
    let r = LOADED.get_or_init(|| {
        let err = |e: Error| e.to_string().trim_start_matches("device error: ").to_string();
        let found = libs::preload("libnvrtc.so.13", FIX_NVRTC).map_err(err)?;
        // SAFETY: probing only opens the library by the names cudarc will use.
        if !unsafe { sys::is_culib_present() } {
            return Err(format!("libnvrtc.so.13 was opened but cudarc cannot load it by name; {FIX_NVRTC}"));
        }
        let (mut major, mut minor) = (0, 0);
        // SAFETY: NVRTC is loaded (above); the pointers are to two live ints.
        unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
            .result()
            .map_err(|e| format!("nvrtcVersion failed: {e:?}"))?;
        let from = found.as_ref().map_or("the system's library paths".to_string(), |p| p.display().to_string());
        if major != 13 {
            return Err(format!("NVRTC {major}.{minor} (from {from}) is not CUDA 13's; {FIX_NVRTC}"));
        }
        libs::preload(&format!("libnvrtc-builtins.so.{major}.{minor}"), FIX_NVRTC).map_err(err)?;
        // the root of the library (…/lib/libnvrtc.so.13 → …), whose headers go first
        let _ = NVRTC_ROOT.set(found.and_then(|p| Some(p.parent()?.parent()?.to_path_buf())));
        Ok((major, minor))
    });
    r.clone().map_err(Error::Device)
}

/// The folder NVRTC was loaded from, when `load` opened it by path.
static NVRTC_ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();

/// The NVRTC options of one build (see the module's doc). The header folders of the CUDA that NVRTC
/// came from go first (after `$QUIETGPT_CUDA_INCLUDE`), so that its headers are not mixed with another
/// version's.
pub fn options(precision: Precision, arch: &str) -> Vec<String> {
    let mut opts = vec![format!("-arch={arch}"), "-std=c++17".to_string()];
    opts.push(match precision {
        Precision::F32 => "--fmad=false".to_string(),
        Precision::Bf16 => "-DQG_BF16".to_string(),
    });
    let dirs = libs::include_dirs_from(NVRTC_ROOT.get().and_then(|r| r.as_deref()));
    opts.extend(dirs.iter().map(|d| format!("-I{}", d.display())));
    opts
}

/// Compiles the kernel file `file` (a name of `sources()`) for `precision` and `arch` ("sm_90"), or takes
/// it from the cache. Errors: NVRTC or a header missing (named, with the fix), an unknown file, or a
/// compile error (the file, the build and NVRTC's log).
pub fn compile(file: &str, precision: Precision, arch: &str) -> Result<Module> {
    let Some(&(_, src)) = SOURCES.iter().find(|(f, _)| *f == file) else {
        let names: Vec<&str> = SOURCES.iter().map(|(f, _)| *f).collect();
        return Err(Error::Device(format!("no kernel file '{file}': the files are {}", names.join(", "))));
    };
    compile_source(file, src, precision, arch)
}

/// `compile` of the source `src` named `file` (which includes "common.cuh" as the kernel files do).
pub fn compile_source(file: &str, src: &str, precision: Precision, arch: &str) -> Result<Module> {
    if !arch.starts_with("sm_") {
        return Err(Error::Device(format!("architecture '{arch}': give a real one such as sm_90 (for a CUBIN)")));
    }
    let (major, minor) = load()?;
    if precision == Precision::Bf16 && !libs::include_dirs().iter().any(|d| d.join("cuda_bf16.h").is_file()) {
        return Err(Error::Device(format!(
            "cuda_bf16.h not found for the bf16 kernels (looked in $QUIETGPT_CUDA_INCLUDE and the include folders \
             of {:?}); install the headers: {}",
            libs::cuda_roots(),
            libs::WHEELS_FIX
        )));
    }
    let opts = options(precision, arch);
    let id = format!("{COMMON}\0{src}\0{}\0{major}.{minor}", opts.join("\0"));
    let stem: String =
        file.trim_end_matches(".cu").chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let path = cache_dir().map(|d| {
        let hash = crate::data::fnv1a(id.bytes());
        d.join(format!("{stem}-{}-{arch}-{hash:016x}.bin", precision.name()))
    });
    if let Some(m) = path.as_ref().and_then(|p| cache::read(p, file)) {
        return Ok(m);
    }
    let mut module = nvrtc_compile(file, src, &opts)
        .map_err(|log| Error::Device(format!("{file} ({}, {arch}, NVRTC {major}.{minor}): {log}", precision.name())))?;
    if let Some(p) = path {
        if let Err(e) = cache::write(&p, &module) {
            module.log.push_str(&format!("\n(not cached: {}: {e})", p.display()));
        }
    }
    Ok(module)
}

/// Every kernel file for `precision` and `arch`, compiled on up to `threads` threads, in `sources()` order.
pub fn compile_all(precision: Precision, arch: &str, threads: usize) -> Result<Vec<Module>> {
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<Module>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.clamp(1, SOURCES.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(file, _)) = SOURCES.get(k) else { break mine };
                        mine.push((k, compile(file, precision, arch)));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a compile thread panicked")).collect()
    });
    done.sort_by_key(|(k, _)| *k);
    done.into_iter().map(|(_, m)| m).collect()
}

/// The cache folder (see the module's doc); None without a home.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("QUIETGPT_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("quietgpt/cuda")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/quietgpt/cuda")))
}

/// One NVRTC compilation; the error is the message and NVRTC's log.
fn nvrtc_compile(file: &str, src: &str, opts: &[String]) -> std::result::Result<Module, String> {
    let cstr = |s: &str| CString::new(s).map_err(|_| format!("a NUL byte in {file}"));
    let (csrc, cname, chdr, chname) = (cstr(src)?, cstr(file)?, cstr(COMMON)?, cstr(HEADER)?);
    let headers: [*const c_char; 1] = [chdr.as_ptr()];
    let names: [*const c_char; 1] = [chname.as_ptr()];
    let mut prog: sys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: NVRTC is loaded (`load`); every pointer is to a live NUL-terminated string that outlives the
    // program, which is destroyed below on every path.
    unsafe {
        sys::nvrtcCreateProgram(&mut prog, csrc.as_ptr(), cname.as_ptr(), 1, headers.as_ptr(), names.as_ptr())
            .result()
            .map_err(|e| format!("nvrtcCreateProgram: {e:?}"))?;
        let compiled = result::compile_program(prog, opts);
        let log = result::get_program_log(prog).map(|l| c_text(&l)).unwrap_or_default();
        let out = match compiled {
            Err(e) => Err(format!("does not compile ({e:?}):\n{log}")),
            Ok(()) => match (result::get_ptx(prog), get_cubin(prog)) {
                (Ok(ptx), Ok(cubin)) => {
                    Ok(Module { file: file.to_string(), cubin, ptx: c_text(&ptx), log, cached: false })
                }
                (Err(e), _) | (_, Err(e)) => Err(format!("no PTX or CUBIN: {e:?}")),
            },
        };
        let _ = result::destroy_program(prog);
        out
    }
}

/// The CUBIN of a compiled program.
///
/// # Safety
/// `prog` is a live, compiled program.
unsafe fn get_cubin(prog: sys::nvrtcProgram) -> std::result::Result<Vec<u8>, result::NvrtcError> {
    let mut size = 0usize;
    sys::nvrtcGetCUBINSize(prog, &mut size).result()?;
    let mut buf = vec![0u8; size];
    sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char).result()?;
    Ok(buf)
}

/// A NUL-terminated C buffer as text.
fn c_text(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).trim_end().to_string()
}

mod cache {
    //! The cache file: a magic line, then the CUBIN, the PTX and the log, each as a little-endian u64
    //! length and its bytes.
    use super::Module;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const MAGIC: &[u8] = b"quietgpt-cubin-1\n";

    pub fn read(path: &Path, file: &str) -> Option<Module> {
        let bytes = std::fs::read(path).ok()?;
        let mut rest = bytes.strip_prefix(MAGIC)?;
        let mut part = || -> Option<Vec<u8>> {
            let (len, tail) = rest.split_first_chunk::<8>()?;
            let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
            let (data, tail) = (tail.get(..len)?, tail.get(len..)?);
            rest = tail;
            Some(data.to_vec())
        };
        let (cubin, ptx, log) = (part()?, part()?, part()?);
        let text = |b: Vec<u8>| String::from_utf8(b).ok();
        let m = Module { file: file.to_string(), cubin, ptx: text(ptx)?, log: text(log)?, cached: true };
        (rest.is_empty() && !m.cubin.is_empty()).then_some(m)
    }

    pub fn write(path: &Path, m: &Module) -> std::io::Result<()> {
        let dir = path.parent().expect("a cache file has a folder");
        std::fs::create_dir_all(dir)?;
        let mut bytes = MAGIC.to_vec();
        for part in [&m.cubin[..], m.ptx.as_bytes(), m.log.as_bytes()] {
            bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
            bytes.extend_from_slice(part);
        }
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(".{name}.{}.{serial}.tmp", std::process::id()));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}
