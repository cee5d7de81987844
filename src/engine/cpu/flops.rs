//! Model FLOPs (for tokens/s → MFU) and the machine's measured GEMM peak.

use crate::config::ModelConfig;
use crate::engine::params::{Kind, ParamLayout};

/// FLOPs of one training step (forward + backward) per token, as nanoGPT's `estimate_mfu` (PaLM
/// appendix B): 6·N for the weights plus 12·L·C·T for attention, N excluding the position embedding.
pub fn flops_per_token(cfg: &ModelConfig, t: usize) -> f64 {
    let layout = ParamLayout::new(cfg);
    let n = (layout.total - layout.range(Kind::Wpe).len()) as f64;
    6.0 * n + 12.0 * (cfg.n_layer * cfg.n_embd * t) as f64
}

/// GFLOP/s of a square f32 GEMM through the same `gemm` call the model uses, on all rayon threads:
/// the roof that MFU is measured against.
pub fn measure_gemm_gflops(size: usize, reps: usize) -> f64 {
    let a = vec![1.0f32; size * size];
    let b = vec![0.5f32; size * size];
    let mut c = vec![0.0f32; size * size];
    let run = |c: &mut [f32]| super::matmul::matmul_forward(c, &a, &b, None, size, size, size, true);
    run(&mut c); // warm up: page faults, thread pool
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t0 = std::time::Instant::now();
        run(&mut c);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    2.0 * (size as f64).powi(3) / best / 1e9
}

/// The machine's GEMM roof for MFU: the best of several 1024³ and 2048³ products (about half a second).
/// Timings on a shared or frequency-scaling machine only ever come out slow, so the best is kept.
pub fn gemm_peak_gflops() -> f64 {
    measure_gemm_gflops(1024, 8).max(measure_gemm_gflops(2048, 3))
}
