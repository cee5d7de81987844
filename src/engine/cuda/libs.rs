//! Where the CUDA libraries and headers are, on a machine that may have a CUDA toolkit, NVIDIA's Python
//! wheels (`pip install nvidia-cuda-nvrtc==13.0.*` …, files under `site-packages/nvidia/cu13/{lib,include,bin}`),
//! both or neither.
//!
//! cudarc loads each library with `dlopen` by name (`libnvrtc.so.13`, …) on first use and panics when it
//! is absent, and the wheels' folder is not on the loader's search path. So `preload` looks for the file
//! in the known folders first and opens it by its absolute path: glibc's `dlopen` by name then finds the
//! already loaded library by its SONAME, and cudarc uses it. No `LD_LIBRARY_PATH` is needed, and a missing
//! library is an `Error::Device` that names it and the fix, never a panic.
//!
//! `$QUIETGPT_CUDA_WHEELS` (a `pip install --target` folder, as `scripts/cuda-wheels.sh` makes), when set,
//! is the only place looked in. Otherwise a library that `dlopen` finds by name (`LD_LIBRARY_PATH`, the
//! system's paths) is taken as it is, and the folders are, in order: `$CUDA_PATH`, `/usr/local/cuda`, the
//! Python environment's `nvidia/cu13` (asked of `python3` when it exists), and
//! `~/.cache/quietgpt/cuda-wheels-13.0` (the script's default folder).

use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The wheels' install command, for messages.
pub const WHEELS_FIX: &str =
    "pip install nvidia-cuda-nvrtc==13.0.* nvidia-cuda-runtime==13.0.* nvidia-cuda-cccl==13.0.* \
     nvidia-cuda-crt==13.0.* (scripts/cuda-wheels.sh does it into ~/.cache/quietgpt/cuda-wheels-13.0) and set \
     QUIETGPT_CUDA_WHEELS to the --target folder, or LD_LIBRARY_PATH=<site-packages>/nvidia/cu13/lib; or install \
     a CUDA 13 toolkit (its lib64)";

/// The roots that may hold `lib`, `include` and `bin` (wheel roots `…/nvidia/cu13`, toolkit roots), in
/// order of preference, existing folders only.
pub fn cuda_roots() -> Vec<PathBuf> {
    if let Some(w) = wheels_override() {
        return Some(w.join("nvidia/cu13")).into_iter().filter(|r| r.is_dir()).collect();
    }
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut roots = Vec::new();
    if let Some(c) = env("CUDA_PATH") {
        roots.push(c);
    }
    roots.push(PathBuf::from("/usr/local/cuda"));
    roots.extend(python_nvidia_dirs().iter().map(|d| d.join("cu13")));
    if let Some(h) = env("HOME") {
        roots.push(h.join(".cache/quietgpt/cuda-wheels-13.0/nvidia/cu13"));
    }
    let mut unique: Vec<PathBuf> = Vec::new();
    for r in roots {
        if r.is_dir() && !unique.contains(&r) {
            unique.push(r);
        }
    }
    unique
}

/// `$QUIETGPT_CUDA_WHEELS`, when set: the one folder of CUDA wheels to use.
pub fn wheels_override() -> Option<PathBuf> {
    std::env::var_os("QUIETGPT_CUDA_WHEELS").filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The library folders of the roots (`lib64` of a toolkit, `lib` of a wheel).
pub fn lib_dirs() -> Vec<PathBuf> {
    cuda_roots().into_iter().flat_map(|r| [r.join("lib64"), r.join("lib")]).filter(|d| d.is_dir()).collect()
}

/// The header folders: `$QUIETGPT_CUDA_INCLUDE` (colon-separated) first, then `include` and
/// `include/cccl` (the wheels keep `cuda/std` and `nv/target` there) of each root.
pub fn include_dirs() -> Vec<PathBuf> {
    include_dirs_from(None)
}

/// `include_dirs` with the root `first` (the CUDA that NVRTC came from) before the other roots, so that
/// its headers are not mixed with another version's.
pub fn include_dirs_from(first: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var("QUIETGPT_CUDA_INCLUDE")
        .map(|v| v.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect())
        .unwrap_or_default();
    let mut roots = cuda_roots();
    roots.sort_by_key(|r| Some(r.as_path()) != first);
    for r in roots {
        dirs.push(r.join("include"));
        dirs.push(r.join("include/cccl"));
    }
    dirs.retain(|d| d.is_dir());
    dirs
}

/// A program of the CUDA tools (`ptxas`, …) in the roots' `bin`.
pub fn tool(name: &str) -> Option<PathBuf> {
    cuda_roots().into_iter().map(|r| r.join("bin").join(name)).find(|p| p.is_file())
}

/// The `nvidia` package folders of the Python environment (`python3 -c 'import nvidia'`), asked once;
/// none when there is no python3 or no such package.
fn python_nvidia_dirs() -> &'static [PathBuf] {
    static DIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DIRS.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import nvidia\nfor p in nvidia.__path__: print(p)"])
            .stderr(std::process::Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.is_empty()).map(PathBuf::from).collect()
            }
            _ => Vec::new(),
        }
    })
}

/// Libraries opened by `preload`, kept open for the life of the process.
static OPENED: Mutex<Vec<libloading::Library>> = Mutex::new(Vec::new());

/// Opens the library `name` so that a later `dlopen` by name (cudarc's) finds it: from
/// `$QUIETGPT_CUDA_WHEELS` when that is set, else by name alone (LD_LIBRARY_PATH, the system's paths),
/// else from the first of `lib_dirs` that holds it. Returns the path it was opened from (None: by name).
/// An error, naming the library and `fix`, when it is not there or does not load.
pub fn preload(name: &str, fix: &str) -> Result<Option<PathBuf>> {
    if let Some(w) = wheels_override() {
        let path = w.join("nvidia/cu13/lib").join(name);
        if path.is_file() {
            return open(&path).map(|()| Some(path));
        }
        return Err(Error::Device(format!(
            "{name} is not in QUIETGPT_CUDA_WHEELS={} (no {}): install the wheels there (scripts/cuda-wheels.sh \
             does) or unset QUIETGPT_CUDA_WHEELS; {fix}",
            w.display(),
            path.display()
        )));
    }
    // SAFETY: loading a CUDA library runs its initialisers, which have no preconditions.
    if let Ok(lib) = unsafe { libloading::Library::new(name) } {
        OPENED.lock().unwrap_or_else(|e| e.into_inner()).push(lib);
        return Ok(None);
    }
    let dirs = lib_dirs();
    let Some(path) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) else {
        let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        let searched = match searched.is_empty() {
            true => "no CUDA folder exists: $CUDA_PATH, /usr/local/cuda, the Python environment's nvidia/cu13, \
                     ~/.cache/quietgpt/cuda-wheels-13.0"
                .to_string(),
            false => format!("not in {}", searched.join(", ")),
        };
        return Err(Error::Device(format!(
            "{name} not found (not on LD_LIBRARY_PATH or the system's paths; {searched}); {fix}"
        )));
    };
    open(&path).map(|()| Some(path))
}

/// Opens the library at `path` and keeps it open.
pub fn open(path: &Path) -> Result<()> {
    // SAFETY: as in `preload`.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| Error::Device(format!("{}: cannot be loaded: {e}", path.display())))?;
    OPENED.lock().unwrap_or_else(|e| e.into_inner()).push(lib);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_an_error_naming_it_and_the_fix() {
        let e = preload("libquietgpt-absent.so.13", "the fix").unwrap_err().to_string();
        // (worded differently when QUIETGPT_CUDA_WHEELS names the one place to look)
        assert!(e.starts_with("device error: libquietgpt-absent.so.13 ") && e.ends_with("; the fix"), "{e}");
    }
}
