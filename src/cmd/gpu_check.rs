//! `quietgpt gpu-check`: the CUDA engine's self-test on a GPU (see `quietgpt::engine::cuda::device::check`).

use super::out::say;
use anyhow::{bail, Result};
use clap::Args;
use quietgpt::engine::cuda::device::check::{self, Options};
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
#[command(after_help = "What it does (under 8 minutes on an H100/H200):
  1. the environment: driver, cuBLASLt and NVRTC versions, the GPU, every kernel compiled (f32, bf16)
  2. every attention variant's forward and backward, op by op, CUDA f32 against the CPU replay of the
     same plan (the first op that disagrees is named), then bf16 against it at llm.c's tolerances
  3. 10 AdamW steps against the CPU engine (f32 within 1e-4, bf16 within 0.05), two bf16 runs bitwise equal
  4. GPT-2 124M in bf16: ms/step, tokens/s, MFU, beside PyTorch nanoGPT on the same card
It exits non-zero when any comparison fails; everything is in the JSON file.

Needs libcuda (the NVIDIA driver), libcublasLt.so.13 and libnvrtc.so.13 on the library path: with
NVIDIA's wheels, LD_LIBRARY_PATH=$(python3 -c 'import nvidia;print(list(nvidia.__path__)[0])')/cu13/lib
(bench/gpu-check.sh sets it).

Examples:
  quietgpt gpu-check
  quietgpt gpu-check --out /tmp/gpu.json --python /opt/venv/bin/python --batch_sizes 16
  quietgpt gpu-check --no_pytorch --batch_sizes ''")]
pub struct GpuCheckArgs {
    /// Where the JSON report goes
    #[arg(long, value_name = "FILE", default_value = "gpu-check.json")]
    out: PathBuf,
    /// The python that runs PyTorch nanoGPT's benchmark (skipped, with the reason, when torch does not import)
    #[arg(long, value_name = "PYTHON", default_value = "python3")]
    python: String,
    /// Do not run PyTorch nanoGPT's benchmark
    #[arg(long)]
    no_pytorch: bool,
    /// The benchmark's batch sizes, comma-separated (empty: no benchmark)
    #[arg(long, value_name = "B,B", default_value = "16,32")]
    batch_sizes: String,
    /// Timed steps per benchmark
    #[arg(long, value_name = "N", default_value_t = 10)]
    iters: usize,
    /// Seconds for the whole run: the benchmarks are skipped (and the report says so) past it
    #[arg(long, value_name = "S", default_value_t = 450.0)]
    budget_s: f64,
}

pub fn run(a: GpuCheckArgs) -> Result<()> {
    let batch_sizes = a
        .batch_sizes
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<usize>().ok().filter(|&b| b > 0))
        .collect::<Option<Vec<usize>>>();
    let Some(batch_sizes) = batch_sizes else {
        bail!("--batch_sizes {:?}: give positive integers separated by commas, e.g. 16,32", a.batch_sizes)
    };
    let opts = Options {
        out: a.out.clone(),
        python: (!a.no_pytorch).then_some(a.python),
        budget_s: a.budget_s,
        batch_sizes,
        iters: a.iters,
    };
    let report = check::run(&opts, &mut |line| {
        eprintln!("{line}");
    })?;
    say!("wrote {} ({:.0} s)", a.out.display(), report.seconds);
    if !report.ok {
        for f in &report.failures {
            eprintln!("FAILED: {f}");
        }
        bail!("gpu-check: {} failure(s); the report is in {}", report.failures.len(), a.out.display());
    }
    say!("gpu-check: everything agrees");
    Ok(())
}
