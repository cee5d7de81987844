//! The self-test's environment report: the libraries' versions, the GPU, and the compile time of every
//! kernel file in both precisions (compiled in parallel; the executors then load them from the
//! in-process cache of `modules`).

use super::super::super::plan::Precision;
use super::super::modules::{self, files};
use super::super::{libs, CudaExecutor};
use crate::Result;
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct Compiled {
    pub file: String,
    pub precision: String,
    pub seconds: f64,
    pub cubin_bytes: usize,
    /// NVRTC's warnings (empty when none).
    pub log: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Environment {
    pub quietgpt: String,
    pub driver_cuda: String,
    pub cublaslt: String,
    pub nvrtc: String,
    pub gpus: i32,
    pub gpu: String,
    pub compute_capability: String,
    pub arch: String,
    pub sms: i32,
    pub memory_gib: f64,
    pub free_gib: f64,
    pub host_cpus: usize,
    /// Every kernel file in both precisions.
    pub compiled: Vec<Compiled>,
    /// Wall time of all the compiles (in parallel).
    pub compile_wall_s: f64,
}

const GIB: f64 = (1u64 << 30) as f64;

/// Probes, opens the GPU and compiles every kernel file (f32 and bf16) for its architecture.
pub fn report() -> Result<Environment> {
    let found = libs::probe()?;
    let exec = CudaExecutor::new(Precision::F32)?;
    let info = exec.info().clone();
    drop(exec);
    let t0 = Instant::now();
    let jobs: Vec<(&'static str, Precision)> =
        [Precision::F32, Precision::Bf16].iter().flat_map(|&p| files().into_iter().map(move |f| (f, p))).collect();
    let results: Vec<Result<Compiled>> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|&(file, p)| {
                let arch = info.arch.clone();
                s.spawn(move || {
                    let t = Instant::now();
                    let m = modules::compile_cached(file, p, &arch)?;
                    Ok(Compiled {
                        file: file.into(),
                        precision: p.name().into(),
                        seconds: t.elapsed().as_secs_f64(),
                        cubin_bytes: m.cubin.len(),
                        log: m.log.clone(),
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a compile thread panicked")).collect()
    });
    let compiled = results.into_iter().collect::<Result<Vec<_>>>()?;
    Ok(Environment {
        quietgpt: env!("CARGO_PKG_VERSION").into(),
        driver_cuda: found.driver(),
        cublaslt: found.cublaslt(),
        nvrtc: found.nvrtc(),
        gpus: found.devices,
        gpu: info.name.clone(),
        compute_capability: format!("{}.{}", info.compute_capability.0, info.compute_capability.1),
        arch: info.arch.clone(),
        sms: info.sms,
        memory_gib: info.total_bytes as f64 / GIB,
        free_gib: info.free_bytes as f64 / GIB,
        host_cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        compiled,
        compile_wall_s: t0.elapsed().as_secs_f64(),
    })
}
