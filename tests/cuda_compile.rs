//! Tier 2 of the GPU engine's checks, on a machine with no GPU: every kernel file compiles with NVRTC,
//! through `nvrtc::compile` (the path the program takes), for f32 and bf16 and for sm_90 and sm_80; every
//! kernel of `Kernel::all()` is an entry of its file's PTX with exactly the C parameters of
//! `Kernel::signature()`; and `ptxas -v` assembles each PTX with no spills (its registers are printed).
//!
//! NVRTC, the headers and ptxas come from NVIDIA's PyPI wheels (`scripts/cuda-wheels.sh`, which `.ci/run`
//! calls; `$QUIETGPT_CUDA_WHEELS` or ~/.cache/quietgpt/cuda-wheels-13.0) or a CUDA 13 toolkit. When none
//! is found the test runs the script, and fails, saying how to install them, if that fails too; it is
//! skipped only when `QUIETGPT_SKIP_CUDA_COMPILE=1` says so. No `LD_LIBRARY_PATH` is needed: `libs`
//! loads NVRTC by its path.

use quietgpt::engine::cuda::kernel::{ArgKind, Kernel};
use quietgpt::engine::cuda::libs;
use quietgpt::engine::cuda::nvrtc::{self, Module};
use quietgpt::engine::cuda::plan::Precision;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

const ARCHS: [&str; 2] = ["sm_90", "sm_80"];
const PRECISIONS: [Precision; 2] = [Precision::F32, Precision::Bf16];

/// Whether the tools are here: NVRTC, the bf16 headers and ptxas (without loading anything).
fn tools_present() -> bool {
    let nvrtc = libs::lib_dirs().iter().any(|d| d.join("libnvrtc.so.13").is_file());
    let headers = libs::include_dirs().iter().any(|d| d.join("cuda_bf16.h").is_file());
    nvrtc && headers && libs::tool("ptxas").is_some()
}

/// Makes sure the tools are here (installing the wheels when they are not); false when the user skips.
fn tools() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        if std::env::var("QUIETGPT_SKIP_CUDA_COMPILE").as_deref() == Ok("1") {
            eprintln!("SKIPPED: the CUDA compile checks (QUIETGPT_SKIP_CUDA_COMPILE=1)");
            return false;
        }
        if !tools_present() {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cuda-wheels.sh");
            eprintln!("NVRTC, cuda_bf16.h or ptxas not found: running {}", script.display());
            let ok = Command::new("bash").arg(&script).status().is_ok_and(|s| s.success());
            assert!(
                ok && tools_present(),
                "the CUDA compile checks need NVIDIA's CUDA 13.0 wheels and {} could not install them. Install them \
                 with `python3 -m pip install --target DIR nvidia-cuda-nvrtc==13.0.* nvidia-cuda-runtime==13.0.* \
                 nvidia-cuda-cccl==13.0.* nvidia-cuda-crt==13.0.* nvidia-cuda-nvcc==13.0.*` and set \
                 QUIETGPT_CUDA_WHEELS=DIR (or use a CUDA 13 toolkit: CUDA_PATH), or skip these checks with \
                 QUIETGPT_SKIP_CUDA_COMPILE=1",
                script.display()
            );
        }
        let (major, minor) = nvrtc::load().unwrap_or_else(|e| panic!("{e}"));
        eprintln!("NVRTC {major}.{minor}; ptxas {}", libs::tool("ptxas").unwrap().display());
        true
    })
}

/// The C parameters of `name` in `src`: the text between the parentheses of its `extern "C"` definition.
fn c_params(src: &str, name: &str) -> Vec<String> {
    let head = format!("extern \"C\" __global__ void {name}(");
    let hits: Vec<usize> = src.match_indices(&head).map(|(i, _)| i + head.len()).collect();
    assert_eq!(hits.len(), 1, "{name}: {} definitions", hits.len());
    let rest = &src[hits[0]..];
    let params = &rest[..rest.find(')').expect("a closing parenthesis")];
    params.split(',').map(|p| p.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

/// The kind of a C parameter ("const floatX* inp") as the contract writes it (a pointer's constness and
/// the parameter's name aside; nullable pointers are the same C type as the others).
fn kind_of(param: &str) -> Option<ArgKind> {
    let mut words: Vec<&str> = param.split_whitespace().filter(|w| *w != "const" && *w != "__restrict__").collect();
    words.pop()?; // the name
    let ty = words.join(" ").replace(" *", "*");
    Some(match ty.as_str() {
        "floatX*" => ArgKind::X,
        "float*" => ArgKind::F32,
        "unsigned int*" => ArgKind::U32,
        "int" => ArgKind::I32,
        "unsigned long long" => ArgKind::U64,
        "float" => ArgKind::Float,
        _ => return None,
    })
}

fn c_kind(k: ArgKind) -> ArgKind {
    match k {
        ArgKind::OptX => ArgKind::X,
        ArgKind::OptF32 => ArgKind::F32,
        k => k,
    }
}

#[test]
fn every_kernel_is_in_its_file_with_the_contract_signature() {
    let sources: BTreeMap<&str, &str> = nvrtc::sources().iter().copied().collect();
    let mut names_per_file: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for k in Kernel::all() {
        let src = sources.get(k.file()).unwrap_or_else(|| panic!("{}: no file {}", k.name(), k.file()));
        let params = c_params(src, &k.name());
        let kinds: Vec<Option<ArgKind>> = params.iter().map(|p| kind_of(p)).collect();
        let want: Vec<Option<ArgKind>> = k.signature().iter().map(|&a| Some(c_kind(a))).collect();
        assert_eq!(kinds, want, "{} in {}: parameters {params:?}", k.name(), k.file());
        names_per_file.entry(k.file()).or_default().push(k.name());
    }
    // and no file defines a kernel the contract does not know
    for (file, src) in &sources {
        for (i, _) in src.match_indices("extern \"C\" __global__ void ") {
            let name = src[i..].split_whitespace().nth(4).unwrap().split('(').next().unwrap();
            assert!(
                names_per_file.get(file).is_some_and(|v| v.iter().any(|n| n == name)),
                "{file}: {name} is not in kernel.rs"
            );
        }
    }
    assert_eq!(names_per_file.len(), sources.len(), "a file with no kernel of the contract");
}

/// `ptxas -arch=<arch> -v` of `ptx`: per function (registers, spill store bytes, spill load bytes, stack
/// frame bytes).
fn ptxas(ptx: &str, arch: &str, tag: &str) -> BTreeMap<String, [u32; 4]> {
    let dir = std::env::temp_dir().join(format!("quietgpt-ptxas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{tag}.ptx"));
    std::fs::write(&file, ptx).unwrap();
    let out = Command::new(libs::tool("ptxas").unwrap())
        .args([&format!("-arch={arch}"), "-v", "-o", "/dev/null"])
        .arg(&file)
        .output()
        .expect("ptxas runs");
    let _ = std::fs::remove_file(&file);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ptxas -arch={arch} rejects {tag}:\n{text}");
    let mut table = BTreeMap::new();
    let mut current = String::new();
    let num = |line: &str, after: &str| -> Option<u32> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let w: Vec<&str> = after.split_whitespace().collect();
        let at = words.windows(w.len()).position(|x| x == w.as_slice())?;
        words.get(at.checked_sub(1)?)?.parse().ok()
    };
    for line in text.lines() {
        if let Some(rest) = line.split("Function properties for ").nth(1) {
            current = rest.trim().to_string();
            table.insert(current.clone(), [0; 4]);
        } else if let Some(e) = table.get_mut(&current) {
            if line.contains("stack frame") {
                e[3] = num(line, "bytes stack frame").unwrap_or(0);
                e[1] = num(line, "bytes spill stores").unwrap_or(0);
                e[2] = num(line, "bytes spill loads").unwrap_or(0);
            } else if let Some(r) = line.split("Used ").nth(1) {
                e[0] = r.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
            }
        }
    }
    table
}

/// The compiled files of one build, `nvrtc::compile_all` on every core.
fn build(precision: Precision, arch: &str) -> Vec<Module> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    nvrtc::compile_all(precision, arch, threads).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn kernels_compile_for_every_precision_and_arch_without_spills() {
    if !tools() {
        return;
    }
    let start = Instant::now();
    let mut report = Vec::new();
    let mut cached = 0;
    for precision in PRECISIONS {
        for arch in ARCHS {
            let t0 = Instant::now();
            let modules = build(precision, arch);
            let compile_s = t0.elapsed().as_secs_f64();
            cached += modules.iter().filter(|m| m.cached).count();
            let by_file: BTreeMap<&str, &Module> = modules.iter().map(|m| (m.file.as_str(), m)).collect();
            for m in &modules {
                assert_eq!(&m.cubin[..4], b"\x7fELF", "{}: the CUBIN is an ELF file", m.file);
                assert!(m.ptx.contains(&format!(".target {arch}")), "{}: PTX for {arch}", m.file);
                assert!(
                    !m.log.contains("warning"),
                    "{} ({}, {arch}): NVRTC warns:\n{}",
                    m.file,
                    precision.name(),
                    m.log
                );
            }
            for k in Kernel::all() {
                let ptx = &by_file[k.file()].ptx;
                assert!(
                    ptx.contains(&format!(".entry {}(", k.name())),
                    "{} is not an entry of {}'s PTX",
                    k.name(),
                    k.file()
                );
            }
            // ptxas over the files, on as many threads as there are files
            let t1 = Instant::now();
            let tables: Vec<(String, BTreeMap<String, [u32; 4]>)> = std::thread::scope(|s| {
                let jobs: Vec<_> = modules
                    .iter()
                    .map(|m| {
                        let tag = format!("{}-{}-{arch}", m.file, precision.name());
                        s.spawn(move || (m.file.clone(), ptxas(&m.ptx, arch, &tag)))
                    })
                    .collect();
                jobs.into_iter().map(|j| j.join().unwrap()).collect()
            });
            let ptxas_s = t1.elapsed().as_secs_f64();
            eprintln!("{} {arch}: NVRTC {compile_s:.1} s, ptxas {ptxas_s:.1} s", precision.name());
            for (file, table) in tables {
                for k in Kernel::all().into_iter().filter(|k| k.file() == file) {
                    let e = table.get(&k.name()).unwrap_or_else(|| panic!("ptxas says nothing of {}", k.name()));
                    report.push((precision.name(), arch, k.name(), *e));
                }
            }
        }
    }
    eprintln!(
        "{:<5} {:<6} {:<32} {:>4} {:>6} {:>6} {:>6}",
        "prec", "arch", "kernel", "regs", "spillS", "spillL", "stack"
    );
    for (p, a, n, e) in &report {
        eprintln!("{p:<5} {a:<6} {n:<32} {:>4} {:>6} {:>6} {:>6}", e[0], e[1], e[2], e[3]);
    }
    let spills: Vec<_> = report.iter().filter(|r| r.3[1] > 0 || r.3[2] > 0).collect();
    assert!(spills.is_empty(), "kernels that spill: {spills:?}");
    eprintln!(
        "compile checks: {:.1} s ({cached} of 36 modules from the cache {:?})",
        start.elapsed().as_secs_f64(),
        nvrtc::cache_dir()
    );
}

#[test]
fn a_compile_error_names_the_file_and_carries_nvrtc_log() {
    if !tools() {
        return;
    }
    let bad = "#include \"common.cuh\"\nextern \"C\" __global__ void broken(floatX* x) { x[0] = undefined_name; }\n";
    let err = nvrtc::compile_source("broken.cu", bad, Precision::F32, "sm_90").unwrap_err().to_string();
    assert!(err.starts_with("device error: broken.cu (f32, sm_90"), "{err}");
    assert!(err.contains("undefined_name") && err.contains("broken.cu(2)"), "{err}");
}

#[test]
fn missing_nvrtc_is_an_error_that_names_it_not_a_panic() {
    // In a child process that can find no CUDA (an empty home, no python3, no LD_LIBRARY_PATH), loading
    // NVRTC must return the error; the child checks it and exits 0.
    if std::env::var_os("QUIETGPT_TEST_NO_CUDA").is_some() {
        match nvrtc::load() {
            Err(e) => {
                let m = e.to_string();
                assert!(m.contains("libnvrtc.so.13") && m.contains("pip install nvidia-cuda-nvrtc==13.0"), "{m}");
                eprintln!("{m}");
                assert!(nvrtc::compile("layernorm.cu", Precision::F32, "sm_90").is_err());
            }
            Ok(v) => eprintln!("NOTE: NVRTC {v:?} is on this system's library path: the missing case cannot be made"),
        }
        return;
    }
    let empty = std::env::temp_dir().join(format!("quietgpt-no-cuda-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    // once with nothing set, once with QUIETGPT_CUDA_WHEELS naming a folder without the wheels
    for wheels in [None, Some(&empty)] {
        let mut child = Command::new(std::env::current_exe().unwrap());
        child
            .args(["--exact", "missing_nvrtc_is_an_error_that_names_it_not_a_panic", "--nocapture"])
            .env_clear()
            .env("QUIETGPT_TEST_NO_CUDA", "1")
            .env("HOME", &empty)
            .env("PATH", &empty);
        if let Some(w) = wheels {
            child.env("QUIETGPT_CUDA_WHEELS", w);
        }
        let out = child.output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("1 passed"), "the child ({wheels:?}) failed:\n{text}");
        for line in text.lines().filter(|l| l.starts_with("NOTE:") || l.starts_with("device error")) {
            eprintln!("{line}");
        }
    }
    let _ = std::fs::remove_dir_all(&empty);
}
