//! `--device cuda` where CUDA is not usable (CI and the development machines have no GPU and no CUDA
//! libraries on the loader's path): every command that makes an engine fails with exit code 1 and one
//! line (the experiment: its last line), the probe's message naming each missing library and its fix,
//! never a panic.

mod common;

use common::cli::{fails_one_line, quietgpt_split};
use common::temp_dir;
use quietgpt::engine::cuda::device::libs::{probe, Lib};

#[test]
fn cuda_without_a_gpu_is_a_clear_error() {
    let msg = match probe() {
        Ok(found) => {
            eprintln!("CUDA is usable here ({} GPUs): this test is about machines without it", found.devices);
            return;
        }
        Err(e) => e.to_string(),
    };
    assert!(msg.starts_with("device error: "), "{msg}");
    let missing: Vec<Lib> = Lib::ALL.into_iter().filter(|l| !l.present()).collect();
    for l in &missing {
        assert!(msg.contains(l.file()), "{msg}");
    }
    assert!(!missing.is_empty() || msg.contains("no usable GPU"), "{msg}");
    // The library's doors: engine::probe (before any data is read) and engine::create, any ordinal and dtype.
    use quietgpt::config::{AttentionKind, ModelConfig};
    assert_eq!(quietgpt::engine::probe("cuda").unwrap_err().to_string(), msg);
    assert_eq!(quietgpt::engine::probe("cuda:1").unwrap_err().to_string(), msg);
    let cfg = ModelConfig::new(1, 1, 8, 4, 5, true, 0.0, AttentionKind::Quiet);
    for (device, dtype) in [("cuda", "auto"), ("cuda:0", "float32"), ("cuda:2", "bfloat16")] {
        let e = quietgpt::engine::create_with(device, dtype, cfg.clone(), 1).err().unwrap().to_string();
        assert_eq!(e, msg, "{device} {dtype}");
    }
    let d = temp_dir("cuda-device");
    // train on the generated backcopy task (no data to prepare), bench, experiment.
    let train = ["train", "--preset=tiny", "--data=backcopy", "--device=cuda", "--max_iters=1", "--out_dir=o"];
    fails_one_line(&d, &train, &[&msg]);
    fails_one_line(&d, &["bench", "--device", "cuda", "--iters", "1"], &[&msg]);
    // The experiment reports its plan first; its error is the last line.
    let (code, _, stderr) = quietgpt_split(&d, &["experiment", "--quick", "--device=cuda", "--out=e"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.trim_end().lines().last().unwrap_or("").contains(&msg), "{stderr}");
}

/// `quietgpt gpu-check`: its help, and without CUDA the probe's error (exit 1, one line, no panic) and a
/// JSON report saying why nothing ran.
#[test]
fn gpu_check_help_and_no_gpu() {
    let d = temp_dir("gpu-check");
    let (code, stdout, stderr) = quietgpt_split(&d, &["gpu-check", "--help"]);
    assert_eq!(code, 0, "{stderr}");
    for needle in ["Usage: quietgpt gpu-check", "Examples", "--out", "--python", "--batch_sizes", "LD_LIBRARY_PATH"] {
        assert!(stdout.contains(needle), "{needle:?} not in:\n{stdout}");
    }
    let (code, _, stderr) = quietgpt_split(&d, &["gpu-check", "--batch_sizes", "16,x"]);
    assert!(code == 1 && stderr.contains("--batch_sizes"), "{stderr}");
    let Err(e) = probe() else {
        eprintln!("CUDA is usable here: gpu-check's no-GPU error is checked on machines without it");
        return;
    };
    let msg = e.to_string();
    fails_one_line(&d, &["gpu-check", "--out", "r.json", "--no_pytorch"], &[&msg]);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("r.json")).unwrap()).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["failures"][0].as_str(), Some(msg.as_str()));
}

/// The PyTorch side of the benchmark parses (it runs only on the GPU machine, where torch is).
#[test]
fn nanogpt_bench_script_compiles() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/nanogpt_bench.py");
    let d = temp_dir("py-compile");
    let out = std::process::Command::new("python3")
        .args(["-c", "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)"])
        .arg(script)
        .arg(d.join("nanogpt_bench.pyc"))
        .output()
        .expect("python3 is needed to check bench/nanogpt_bench.py");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The executor's compile path without a GPU: every kernel file through `modules::compile_cached` for
/// sm_90 in both precisions, each compiled once per process (the same CUBIN the second time). NVRTC as
/// tests/cuda_compile.rs finds or installs it (which runs first); `QUIETGPT_SKIP_CUDA_COMPILE=1` skips.
#[test]
fn kernels_compile_once_per_process() {
    use quietgpt::engine::cuda::device::modules::{compile_cached, files};
    use quietgpt::engine::cuda::plan::Precision;
    if std::env::var("QUIETGPT_SKIP_CUDA_COMPILE").as_deref() == Ok("1") {
        eprintln!("SKIPPED: the CUDA compile checks (QUIETGPT_SKIP_CUDA_COMPILE=1)");
        return;
    }
    if let Err(e) = quietgpt::engine::cuda::nvrtc::load() {
        panic!("NVRTC is needed (scripts/cuda-wheels.sh installs it; tests/cuda_compile.rs runs it): {e}");
    }
    for p in [Precision::F32, Precision::Bf16] {
        for f in files() {
            let a = compile_cached(f, p, "sm_90").unwrap_or_else(|e| panic!("{f} {p:?}: {e}"));
            let b = compile_cached(f, p, "sm_90").unwrap();
            assert!(std::sync::Arc::ptr_eq(&a, &b) && !a.cubin.is_empty(), "{f} {p:?}");
        }
    }
}
