//! `quietgpt gpu-check`: the CUDA engine's self-test on a GPU machine, in one run of under 8 minutes
//! (the lent machine's window), written to one JSON file.
//!
//! 1. `env`: driver, cuBLASLt and NVRTC versions, the GPU (name, SMs, memory), the compile time of
//!    every kernel file in f32 and bf16.
//! 2. `lockstep`: for every attention variant (and a GPT-2-vocabulary case and a dropout case) a small
//!    model's forward and backward op by op on the CUDA executor in f32 and the CPU replay, naming the
//!    first op that disagrees (`compare`'s f32 tolerance); then the same in bf16 through the engine,
//!    against the replay's logits, loss and gradients (`compare`'s bf16 tolerance).
//! 3. `train`: 10 AdamW steps, CUDA f32 and bf16 against the CPU engine's losses; two bf16 runs
//!    bitwise equal.
//! 4. `bench`: GPT-2 124M in bf16 (softmax, quiet; B 16 and 32): ms/step, tokens/s, MFU; PyTorch nanoGPT
//!    on the same card beside it.
//!
//! Sections 1–3 always run; the benchmarks run while the time budget lasts. The result is not ok when
//! any comparison fails or any section ends in an error (each is listed in `failures`).

pub mod bench;
pub mod compare;
pub mod env;
pub mod lockstep;
#[cfg(test)]
mod tests;
pub mod train;

use super::super::plan::Precision;
use super::super::Executor;
use super::CudaExecutor;
use crate::config::AttentionKind;
use crate::{Error, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the checks run the engine under test: the GPU (`Cuda`) in the self-test; the CPU replay (or
/// a replay with a planted fault) in the tests of the checks themselves.
pub trait Device {
    type E: Executor;
    /// A new executor in `precision`.
    fn executor(&self, precision: Precision) -> Result<Self::E>;
    /// Waits for the executor's queued ops (an asynchronous error shows here).
    fn synchronize(&self, e: &Self::E) -> Result<()>;
}

/// The CUDA executor on GPU 0.
pub struct Cuda;

impl Device for Cuda {
    type E = CudaExecutor;

    fn executor(&self, precision: Precision) -> Result<CudaExecutor> {
        CudaExecutor::new(precision)
    }

    fn synchronize(&self, e: &CudaExecutor) -> Result<()> {
        e.synchronize()
    }
}

/// What `run` does.
#[derive(Clone, Debug)]
pub struct Options {
    pub out: PathBuf,
    /// The python of PyTorch nanoGPT's benchmark (None: not run).
    pub python: Option<String>,
    /// Seconds for the whole run; the benchmarks are skipped (and say so) when it runs out.
    pub budget_s: f64,
    /// The benchmark's batch sizes (empty: no benchmark of our engine).
    pub batch_sizes: Vec<usize>,
    pub iters: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Tolerances {
    pub f32_max_abs_rel_to_max: f64,
    pub bf16_rel: f64,
    pub bf16_abs_of_max: f64,
    pub bf16_loss: f64,
    pub train_f32_loss: f64,
    pub train_bf16_loss: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub failures: Vec<String>,
    pub seconds: f64,
    pub tolerances: Tolerances,
    pub environment: Option<env::Environment>,
    pub lockstep_f32: Vec<lockstep::LockstepReport>,
    pub bf16: Vec<lockstep::Bf16Report>,
    pub training: Vec<train::TrainReport>,
    pub bench: Vec<bench::BenchRow>,
    pub bench_skipped: Vec<String>,
    pub pytorch: Option<serde_json::Value>,
}

/// Runs the self-test, writes `opts.out`, and returns the report (`ok` false on any failure). An
/// error only when CUDA is not usable at all (the probe's message, also written to `opts.out`) or the
/// JSON cannot be written.
pub fn run(opts: &Options, log: &mut dyn FnMut(String)) -> Result<Report> {
    let t0 = Instant::now();
    if let Err(e) = super::libs::probe() {
        // The report says why nothing ran (the lent machine's only output is its files).
        let j = serde_json::json!({ "ok": false, "failures": [e.to_string()] });
        std::fs::write(&opts.out, j.to_string() + "\n").map_err(|e| Error::io(&opts.out, e))?;
        return Err(e);
    }
    let left = |t0: Instant| opts.budget_s - t0.elapsed().as_secs_f64();
    let mut r = Report {
        ok: false,
        failures: Vec::new(),
        seconds: 0.0,
        tolerances: Tolerances {
            f32_max_abs_rel_to_max: compare::F32_REL_TO_MAX,
            bf16_rel: compare::BF16_REL,
            bf16_abs_of_max: compare::BF16_ABS_OF_MAX,
            bf16_loss: compare::BF16_LOSS,
            train_f32_loss: train::F32_LOSS_TOL,
            train_bf16_loss: train::BF16_LOSS_TOL,
        },
        environment: None,
        lockstep_f32: Vec::new(),
        bf16: Vec::new(),
        training: Vec::new(),
        bench: Vec::new(),
        bench_skipped: Vec::new(),
        pytorch: None,
    };
    match env::report() {
        Ok(e) => {
            log(format!(
                "{} ({}, {} SMs, {:.0} GiB), driver CUDA {}, cuBLASLt {}, NVRTC {}; kernels compiled in {:.1} s",
                e.gpu, e.arch, e.sms, e.memory_gib, e.driver_cuda, e.cublaslt, e.nvrtc, e.compile_wall_s
            ));
            r.environment = Some(e);
        }
        Err(e) => r.failures.push(format!("environment: {e}")),
    }
    for c in lockstep::cases() {
        let x = lockstep::inputs(&c);
        match lockstep::f32_lockstep(&Cuda, &c, &x) {
            Ok((rep, reference)) => {
                let worst = rep.worst_per_kernel.values().cloned().fold(0.0, f64::max);
                log(format!("lockstep f32 {:28} {} ops, worst {worst:.1e}, {}", c.name, rep.ops, verdict(rep.ok)));
                if let Some(f) = &rep.first_failure {
                    r.failures.push(format!("f32 {}: op {} ({}) disagrees: {}", c.name, f.op, f.what, show(&f.diff)));
                }
                for s in &rep.stray {
                    r.failures.push(format!("f32 {}: {}", c.name, show(s)));
                }
                r.lockstep_f32.push(rep);
                match lockstep::bf16_vs_reference(&Cuda, &c, &x, &reference) {
                    Ok(b) => {
                        log(format!(
                            "bf16 vs f32  {:28} loss {:.4} vs {:.4}, {}",
                            c.name,
                            b.loss_bf16,
                            b.loss_f32,
                            verdict(b.ok)
                        ));
                        if !b.ok {
                            r.failures.push(format!(
                                "bf16 {}: loss {:.5} vs {:.5}; beyond tolerance: {}",
                                c.name,
                                b.loss_bf16,
                                b.loss_f32,
                                b.failed.join(", ")
                            ));
                        }
                        r.bf16.push(b);
                    }
                    Err(e) => r.failures.push(format!("bf16 {}: {e}", c.name)),
                }
            }
            Err(e) => r.failures.push(format!("f32 {}: {e}", c.name)),
        }
    }
    for kind in [AttentionKind::Softmax, AttentionKind::Quiet] {
        match train::run(&Cuda, kind) {
            Ok(t) => {
                log(format!(
                    "train {:8} 10 steps: f32 within {:.1e}, bf16 within {:.3}, bf16 runs bitwise equal: {}, {}",
                    kind.name(),
                    t.max_diff_f32,
                    t.max_diff_bf16,
                    t.bf16_runs_bitwise_equal,
                    verdict(t.ok)
                ));
                if !t.ok {
                    r.failures.push(format!(
                        "train {}: f32 losses off by {:.2e}, bf16 by {:.3}, bf16 bitwise {}",
                        kind.name(),
                        t.max_diff_f32,
                        t.max_diff_bf16,
                        t.bf16_runs_bitwise_equal
                    ));
                }
                r.training.push(t);
            }
            Err(e) => r.failures.push(format!("train {}: {e}", kind.name())),
        }
    }
    let gpu = r.environment.as_ref().map(|e| e.gpu.clone()).unwrap_or_default();
    let peak = bench::peak_tflops(&gpu);
    for &b in &opts.batch_sizes {
        for kind in [AttentionKind::Softmax, AttentionKind::Quiet] {
            if left(t0) < 30.0 {
                r.bench_skipped.push(format!("{} B={b}: out of time", kind.name()));
                continue;
            }
            match bench::ours(&Cuda, &bench::gpt2_124m(kind), b, 2, opts.iters, peak) {
                Ok(row) => {
                    log(format!(
                        "bench quietgpt {:8} B={b:2}: {:.1} ms/step, {:.0} tok/s, MFU {}",
                        kind.name(),
                        row.ms_per_step,
                        row.tokens_per_s,
                        row.mfu.map_or("?".into(), |m| format!("{:.1} %", 100.0 * m))
                    ));
                    r.bench.push(row);
                }
                // Out of memory for a batch size is a result of the benchmark, not a failure.
                Err(Error::Device(m)) if m.contains("GiB of GPU memory") => {
                    r.bench_skipped.push(format!("{} B={b}: {m}", kind.name()))
                }
                Err(e) => r.failures.push(bench::failed(kind, b, &e)),
            }
        }
    }
    if let Some(py) = &opts.python {
        let remaining = left(t0) - 10.0;
        if remaining < 60.0 {
            r.pytorch = Some(serde_json::json!({ "skipped": "out of time" }));
        } else {
            let runs: Vec<String> = opts
                .batch_sizes
                .iter()
                .flat_map(|b| ["softmax", "quiet-sdpa_zero_kv", "quiet-explicit"].map(|a| format!("{a}:{b}")))
                .collect();
            let mut args = vec![
                "--runs".to_string(),
                runs.join(","),
                "--iters".into(),
                opts.iters.to_string(),
                "--deadline_s".into(),
                format!("{:.0}", remaining - 75.0),
            ];
            if let Some(p) = peak {
                args.extend(["--peak_tflops".into(), p.to_string()]);
            }
            log(format!("PyTorch nanoGPT ({py}): {} (at most {remaining:.0} s)", runs.join(", ")));
            r.pytorch = Some(bench::pytorch(py, &args, Duration::from_secs_f64(remaining)));
        }
    }
    r.seconds = t0.elapsed().as_secs_f64();
    r.ok = r.failures.is_empty();
    let json = serde_json::to_string_pretty(&r).map_err(|e| Error::Device(format!("the report as JSON: {e}")))?;
    std::fs::write(&opts.out, json + "\n").map_err(|e| Error::io(&opts.out, e))?;
    Ok(r)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "FAILED"
    }
}

/// A diff in one line.
pub fn show(d: &compare::Diff) -> String {
    format!(
        "{}: max |Δ| {:.3e} ({:.1e} of max |ref| {:.3e}) at {} (got {:.6e}, want {:.6e}), {} non-finite, {} over",
        d.what, d.max_abs, d.rel_to_max, d.max_ref, d.worst, d.got, d.want, d.nonfinite, d.over
    )
}
