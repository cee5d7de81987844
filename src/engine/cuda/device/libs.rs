//! Finding CUDA at run time. cudarc loads libcuda, cuBLASLt and NVRTC with `dlopen` by name on first
//! use and panics when one is missing; `probe` looks for each first (cuBLASLt and NVRTC also in the
//! wheel and toolkit folders of `engine::cuda::libs`, which opens them by path) and turns what is
//! missing, a library of the wrong CUDA major version, or a driver that sees no GPU into one
//! `Error::Device` that names every problem and its fix. Nothing in cudarc's `sys` modules may be called before `probe`
//! has succeeded (it is what `CudaExecutor::new` and the self-test call first).

use super::super::libs as cuda_libs;
use super::super::nvrtc::load as nvrtc_load;
use crate::{Error, Result};
use cudarc::{cublaslt, driver, nvrtc};

/// The CUDA major version this build is bound to (cudarc's `cuda-13000` feature).
pub const CUDA_MAJOR: i32 = 13;

/// The libraries the CUDA engine loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lib {
    /// libcuda: the driver API (comes with the NVIDIA driver, not with a toolkit or a wheel).
    Driver,
    /// libcublasLt: the GEMMs.
    CublasLt,
    /// libnvrtc: compiles the kernels at start-up.
    Nvrtc,
}

impl Lib {
    pub const ALL: [Lib; 3] = [Lib::Driver, Lib::CublasLt, Lib::Nvrtc];

    /// The file name cudarc opens (among other candidates).
    pub fn file(self) -> &'static str {
        match self {
            Lib::Driver => "libcuda.so.1",
            Lib::CublasLt => "libcublasLt.so.13",
            Lib::Nvrtc => "libnvrtc.so.13",
        }
    }

    /// The pip package that provides it (none for the driver).
    pub fn wheel(self) -> Option<&'static str> {
        match self {
            Lib::Driver => None,
            Lib::CublasLt => Some("nvidia-cublas==13.*"),
            Lib::Nvrtc => Some("nvidia-cuda-nvrtc==13.0.*"),
        }
    }

    /// Whether one of cudarc's candidate names for the library loads (the same search, in the same
    /// order, that cudarc's loader does; it opens and closes the library).
    pub fn present(self) -> bool {
        // SAFETY: these only dlopen and dlclose the candidates; no symbol is called.
        unsafe {
            match self {
                Lib::Driver => driver::sys::is_culib_present(),
                Lib::CublasLt => cublaslt::sys::is_culib_present(),
                Lib::Nvrtc => nvrtc::sys::is_culib_present(),
            }
        }
    }
}

/// The shell line that puts the pip wheels' libraries on the loader's path.
/// (`nvidia` is a namespace package: its `__file__` is None, its `__path__` the folder.)
pub const WHEEL_LIBRARY_PATH: &str =
    "export LD_LIBRARY_PATH=$(python3 -c 'import nvidia;print(list(nvidia.__path__)[0])')/cu13/lib";

/// The message for missing libraries: each by name with where it comes from, then how to make the
/// loader find them. One line.
pub fn missing_message(missing: &[Lib]) -> String {
    let names: Vec<String> = missing
        .iter()
        .map(|l| match l.wheel() {
            None => format!(
                "{} (the NVIDIA driver, 580 or newer for CUDA {CUDA_MAJOR}: install it, or run on a machine with an \
                 NVIDIA GPU)",
                l.file()
            ),
            Some(w) => format!("{} (pip install {w})", l.file()),
        })
        .collect();
    let mut m = format!("CUDA is not usable here: cannot load {}", names.join(", "));
    if missing.iter().any(|l| l.wheel().is_some()) {
        m.push_str(&format!(
            "; quietgpt looks on LD_LIBRARY_PATH, in $QUIETGPT_CUDA_WHEELS, $CUDA_PATH, /usr/local/cuda and python3's \
             nvidia/cu13/lib: install the wheels into python3's environment, or let the loader find them: \
             {WHEEL_LIBRARY_PATH} (or add a CUDA {CUDA_MAJOR} toolkit's lib64, e.g. /usr/local/cuda/lib64, to \
             LD_LIBRARY_PATH)"
        ));
    }
    m.push_str("; or use --device=cpu");
    m
}

/// What `probe` found: the versions of the three libraries (CUDA's encodings: driver 13000 = 13.0,
/// cuBLASLt 130401 = 13.4.1) and the number of GPUs.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub driver_version: i32,
    pub cublaslt_version: usize,
    pub nvrtc_version: (i32, i32),
    pub devices: i32,
}

impl Found {
    /// "13.0" from 13000.
    pub fn driver(&self) -> String {
        format!("{}.{}", self.driver_version / 1000, (self.driver_version % 1000) / 10)
    }

    /// "13.4.1" from 130401.
    pub fn cublaslt(&self) -> String {
        let v = self.cublaslt_version;
        format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100)
    }

    pub fn nvrtc(&self) -> String {
        format!("{}.{}", self.nvrtc_version.0, self.nvrtc_version.1)
    }
}

/// What is wrong with the versions found (libraries of another CUDA major version than this build's,
/// a driver too old for it), or None.
pub fn version_problems(driver_version: i32, cublaslt_version: usize, nvrtc_major: i32) -> Option<String> {
    let mut bad = Vec::new();
    if driver_version < CUDA_MAJOR * 1000 {
        bad.push(format!(
            "the driver supports CUDA {}.{} only (CUDA {CUDA_MAJOR} needs driver 580 or newer: update it)",
            driver_version / 1000,
            (driver_version % 1000) / 10
        ));
    }
    if cublaslt_version / 10000 != CUDA_MAJOR as usize {
        bad.push(format!(
            "the cuBLASLt found is version {} (a CUDA {} library; pip install {} and put it first on LD_LIBRARY_PATH)",
            cublaslt_version,
            cublaslt_version / 10000,
            Lib::CublasLt.wheel().unwrap_or_default()
        ));
    }
    if nvrtc_major != CUDA_MAJOR {
        bad.push(format!(
            "the NVRTC found is of CUDA {nvrtc_major} (pip install {} and put it first on LD_LIBRARY_PATH)",
            Lib::Nvrtc.wheel().unwrap_or_default()
        ));
    }
    if bad.is_empty() {
        None
    } else {
        Some(format!("this build needs CUDA {CUDA_MAJOR}: {}", bad.join("; ")))
    }
}

/// A driver call's failure as "cuInit: CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)".
pub fn driver_error(call: &str, e: driver::DriverError) -> Error {
    Error::Device(format!("{call}: {}", describe(e)))
}

/// The error's name and CUDA's description of it (only valid once libcuda is loaded).
pub fn describe(e: driver::DriverError) -> String {
    let name = e.error_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|_| format!("{:?}", e.0));
    match e.error_string() {
        Ok(s) => format!("{name} ({})", s.to_string_lossy()),
        Err(_) => name,
    }
}

/// Looks for the libraries, checks their versions, initialises the driver and counts the GPUs: Ok
/// only when the CUDA engine can start. Every failure is an `Error::Device` that says what to do.
pub fn probe() -> Result<Found> {
    // cuBLASLt and NVRTC may be in a wheel or toolkit folder that is not on the loader's path:
    // `cuda::libs` opens them there by path first (cudarc's dlopen by name then finds them), and
    // `nvrtc::load` checks NVRTC's version and its builtins library.
    let _ = cuda_libs::preload(Lib::CublasLt.file(), "");
    let nvrtc = nvrtc_load();
    let missing: Vec<Lib> = Lib::ALL.into_iter().filter(|l| !l.present()).collect();
    if !missing.is_empty() {
        return Err(Error::Device(missing_message(&missing)));
    }
    // NVRTC present, but its builtins library or its version wrong: NVRTC's loader says which.
    nvrtc?;
    // SAFETY: every library is present (checked above), so cudarc's loaders do not panic; the
    // version queries take only out-parameters.
    let (driver_version, cublaslt_version, nvrtc_version) = unsafe {
        let mut dv = 0;
        driver::sys::cuDriverGetVersion(&mut dv).result().map_err(|e| driver_error("cuDriverGetVersion", e))?;
        let lt = cublaslt::sys::cublasLtGetVersion();
        let (mut major, mut minor) = (0, 0);
        nvrtc::sys::nvrtcVersion(&mut major, &mut minor)
            .result()
            .map_err(|e| Error::Device(format!("nvrtcVersion: {e:?}")))?;
        (dv, lt, (major, minor))
    };
    if let Some(m) = version_problems(driver_version, cublaslt_version, nvrtc_version.0) {
        return Err(Error::Device(m));
    }
    let no_gpu = |what: String| {
        Error::Device(format!(
            "the NVIDIA driver (CUDA {}.{}) is installed but sees no usable GPU: {what}; check nvidia-smi and \
             CUDA_VISIBLE_DEVICES, or use --device=cpu",
            driver_version / 1000,
            (driver_version % 1000) / 10
        ))
    };
    driver::result::init().map_err(|e| no_gpu(format!("cuInit failed with {}", describe(e))))?;
    let devices =
        driver::result::device::get_count().map_err(|e| no_gpu(format!("cuDeviceGetCount: {}", describe(e))))?;
    if devices < 1 {
        return Err(no_gpu("it counts 0 devices".into()));
    }
    Ok(Found { driver_version, cublaslt_version, nvrtc_version, devices })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_libraries_are_named_with_their_fix() {
        let all = missing_message(&Lib::ALL);
        for needle in [
            "libcuda.so.1",
            "NVIDIA driver",
            "libcublasLt.so.13 (pip install nvidia-cublas==13.*)",
            "libnvrtc.so.13 (pip install nvidia-cuda-nvrtc==13.0.*)",
            "LD_LIBRARY_PATH=$(python3 -c 'import nvidia;print(list(nvidia.__path__)[0])')/cu13/lib",
            "/usr/local/cuda/lib64",
            "--device=cpu",
        ] {
            assert!(all.contains(needle), "{needle:?} not in: {all}");
        }
        assert!(!all.contains('\n'));
        // Only the driver: no word about wheels or the library path.
        let driver = missing_message(&[Lib::Driver]);
        assert!(driver.contains("libcuda.so.1") && !driver.contains("pip") && !driver.contains("LD_LIBRARY_PATH"));
        // Only a wheel: the driver is not mentioned.
        let nvrtc = missing_message(&[Lib::Nvrtc]);
        assert!(!nvrtc.contains("libcuda") && nvrtc.contains("libnvrtc.so.13") && nvrtc.contains("LD_LIBRARY_PATH"));
    }

    #[test]
    fn versions_of_another_cuda_are_refused() {
        assert_eq!(version_problems(13000, 130001, 13), None);
        assert_eq!(version_problems(13020, 130401, 13), None);
        let m = version_problems(12080, 120803, 12).unwrap();
        assert!(m.contains("CUDA 12.8 only") && m.contains("driver 580"), "{m}");
        assert!(m.contains("version 120803") && m.contains("nvidia-cublas==13.*"), "{m}");
        assert!(m.contains("NVRTC found is of CUDA 12") && m.contains("nvidia-cuda-nvrtc==13.0.*"), "{m}");
        let f = Found { driver_version: 13000, cublaslt_version: 130401, nvrtc_version: (13, 2), devices: 1 };
        assert_eq!((f.driver().as_str(), f.cublaslt().as_str(), f.nvrtc().as_str()), ("13.0", "13.4.1", "13.2"));
    }

    /// On a machine without CUDA (CI, the development machines) the probe is an error that names each
    /// library it could not load, never a panic; where CUDA is complete, it finds a GPU.
    #[test]
    fn probe_is_an_error_or_a_gpu() {
        match probe() {
            Ok(found) => assert!(found.devices >= 1),
            Err(Error::Device(m)) => {
                for lib in Lib::ALL {
                    assert_eq!(m.contains(lib.file()), !lib.present(), "{lib:?}: {m}");
                }
            }
            Err(e) => panic!("not a device error: {e}"),
        }
    }
}
