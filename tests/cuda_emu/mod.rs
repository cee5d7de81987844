//! The CUDA kernels on the host: `emu.h` emulates the CUDA subset the kernels use (threads as fibers,
//! barriers and warp shuffles as scheduling points), g++ builds every `kernels/*.cu` into one shared
//! library per precision, and `Emu::run` launches a kernel with its contract arguments and
//! `kernel::geometry`, as the CUDA executor does. Needs g++ (C++17); `QUIETGPT_SKIP_CUDA_EMULATE=1` skips.

use quietgpt::engine::cuda::kernel::{geometry, ArgKind, Kernel};
use quietgpt::engine::cuda::plan::Precision;
use quietgpt::rng::Rng;
use std::ffi::{c_char, c_void, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

type Launch = unsafe extern "C" fn(*const c_char, *mut *mut c_void, u32, u32) -> i32;

/// The emulator keeps its state in globals: one launch at a time in the process.
static LAUNCH: Mutex<()> = Mutex::new(());

pub fn bf16_bits(f: f32) -> u16 {
    let u = f.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return 0x7fc0;
    }
    ((u + 0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// A device buffer: f32, bf16 bits or u32.
pub enum Buf {
    F(Vec<f32>),
    H(Vec<u16>),
    U(Vec<u32>),
}

impl Buf {
    /// An X buffer of the precision holding `v` (rounded to bf16 in Bf16).
    pub fn x(p: Precision, v: &[f32]) -> Buf {
        match p {
            Precision::F32 => Buf::F(v.to_vec()),
            Precision::Bf16 => Buf::H(v.iter().map(|&x| bf16_bits(x)).collect()),
        }
    }

    fn ptr(&mut self) -> *mut c_void {
        match self {
            Buf::F(v) => v.as_mut_ptr() as _,
            Buf::H(v) => v.as_mut_ptr() as _,
            Buf::U(v) => v.as_mut_ptr() as _,
        }
    }

    pub fn get(&self) -> Vec<f32> {
        match self {
            Buf::F(v) => v.clone(),
            Buf::H(v) => v.iter().map(|&b| f32::from_bits((b as u32) << 16)).collect(),
            Buf::U(v) => v.iter().map(|&b| b as f32).collect(),
        }
    }
}

/// `v` as an X buffer holds it.
pub fn rx(p: Precision, v: &[f32]) -> Vec<f32> {
    Buf::x(p, v).get()
}

/// A kernel argument. `At` is a raw buffer pointer, for in-place calls (two arguments, one buffer).
pub enum A<'a> {
    B(&'a mut Buf),
    At(*mut Buf),
    Null,
    I(i32),
    U(u64),
    F(f32),
}

/// Whether the emulated checks run (false, said on stderr, when the user skips them).
pub fn enabled() -> bool {
    let skip = std::env::var("QUIETGPT_SKIP_CUDA_EMULATE").as_deref() == Ok("1");
    if skip {
        eprintln!("SKIPPED: the emulated CUDA kernel checks (QUIETGPT_SKIP_CUDA_EMULATE=1)");
    }
    !skip
}

/// Builds the two libraries once (f32, bf16); their folder.
fn build() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let kernels = here.join("src/engine/cuda/kernels");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cuda-emu");
        std::fs::create_dir_all(&dir).unwrap();
        let mut src = String::from("#include \"emu.h\"\n");
        for (file, _) in quietgpt::engine::cuda::nvrtc::sources() {
            src += &format!("#include \"{}\"\n", kernels.join(file).display());
        }
        src += "EMU_BEGIN\n";
        for k in Kernel::all() {
            src += &format!("EMU_ENTRY({})\n", k.name());
        }
        src += "EMU_END\n";
        std::fs::write(dir.join("all.cpp"), src).unwrap();
        let emu = here.join("tests/cuda_emu");
        let jobs: Vec<_> = [("f32", None), ("bf16", Some("-DQG_BF16"))]
            .into_iter()
            .map(|(tag, def)| {
                let mut c = Command::new("g++");
                c.args(["-std=c++17", "-O1", "-fPIC", "-shared", "-w"])
                    .arg(format!("-I{}", emu.display()))
                    .arg(format!("-I{}", emu.join("include").display()))
                    .arg(format!("-I{}", kernels.display()))
                    .args(def)
                    .arg("-o")
                    .arg(dir.join(format!("libemu-{tag}.so")))
                    .arg(dir.join("all.cpp"));
                let child = c.spawn().unwrap_or_else(|e| {
                    panic!(
                        "g++: {e}. The emulated CUDA kernel checks need a C++17 compiler (apt-get install g++); \
                         QUIETGPT_SKIP_CUDA_EMULATE=1 skips them"
                    )
                });
                (tag, child)
            })
            .collect();
        for (tag, child) in jobs {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "g++ could not build the {tag} emulator:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
}

pub struct Emu {
    lib: libloading::Library,
}

impl Emu {
    pub fn new(p: Precision) -> Emu {
        let path = build().join(format!("libemu-{}.so", p.name()));
        // SAFETY: our own library; its initialisers only set up the emulator's globals.
        Emu { lib: unsafe { libloading::Library::new(&path) }.unwrap_or_else(|e| panic!("{}: {e}", path.display())) }
    }

    /// Launches `k` with `args` (its signature's arguments, in order) and `kernel::geometry`.
    pub fn run(&self, k: Kernel, args: &mut [A]) {
        let sig = k.signature();
        assert_eq!(sig.len(), args.len(), "{}: {} arguments", k.name(), args.len());
        let ints: Vec<i32> = args.iter().filter_map(|a| if let A::I(i) = a { Some(*i) } else { None }).collect();
        let mut store: Vec<[u8; 8]> = Vec::new();
        for (a, s) in args.iter_mut().zip(sig) {
            let mut b = [0u8; 8];
            let ok = match a {
                A::B(buf) => {
                    b = (buf.ptr() as u64).to_le_bytes();
                    matches!(s, ArgKind::X | ArgKind::OptX | ArgKind::F32 | ArgKind::OptF32 | ArgKind::U32)
                }
                // SAFETY: the caller's buffer outlives the call.
                A::At(buf) => {
                    b = (unsafe { (**buf).ptr() } as u64).to_le_bytes();
                    true
                }
                A::Null => matches!(s, ArgKind::OptX | ArgKind::OptF32),
                A::I(i) => {
                    b[..4].copy_from_slice(&i.to_le_bytes());
                    *s == ArgKind::I32
                }
                A::U(u) => {
                    b = u.to_le_bytes();
                    *s == ArgKind::U64
                }
                A::F(f) => {
                    b[..4].copy_from_slice(&f.to_le_bytes());
                    *s == ArgKind::Float
                }
            };
            assert!(ok, "{}: an argument does not fit {s:?}", k.name());
            store.push(b);
        }
        let mut ptrs: Vec<*mut c_void> = store.iter_mut().map(|s| s.as_mut_ptr() as *mut c_void).collect();
        let (grid, block, _) = geometry(k, &ints);
        let name = CString::new(k.name()).unwrap();
        let _one = LAUNCH.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the symbol is emu.h's `emu_launch`; the argument pointers point at values of the kernel's
        // C types (checked against the signature above) and at buffers that live through the call.
        let rc = unsafe {
            let f: libloading::Symbol<Launch> = self.lib.get(b"emu_launch").unwrap();
            f(name.as_ptr(), ptrs.as_mut_ptr(), grid[0], block[0])
        };
        assert_eq!(rc, 0, "{} is not in the emulated library", k.name());
    }
}

/// n uniform values in (−s, s).
pub fn rand(r: &mut Rng, n: usize, s: f32) -> Vec<f32> {
    (0..n).map(|_| (r.next_u64() as f64 / u64::MAX as f64 * 2.0 - 1.0) as f32 * s).collect()
}

/// Asserts |got − want| ≤ atol + rtol·|want| everywhere (NaN fails), and prints the worst ratio and how
/// many are bitwise equal.
pub fn close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let mut worst = (0.0f32, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = if g.to_bits() == w.to_bits() { 0.0 } else { (g - w).abs() / (atol + rtol * w.abs()) };
        let e = if e.is_nan() { f32::INFINITY } else { e };
        if e > worst.0 {
            worst = (e, i);
        }
    }
    let exact = got.iter().zip(want).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
    eprintln!("{what:<44} worst {:.3} of the tolerance ({exact} of {} bitwise)", worst.0, got.len());
    assert!(worst.0 <= 1.0, "{what}: {} where the reference has {} (element {})", got[worst.1], want[worst.1], worst.1);
}
