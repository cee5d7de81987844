//! A training step allocates nothing: forward, backward, gradient clipping and AdamW work in buffers
//! made once (the first step may still grow scratch buffers). The one exception is the GEMM crate,
//! which allocates its packing buffers on each call; a counting allocator tells its allocations apart
//! (`matmul::in_gemm`) and counts every other one.

use quietgpt::config::{ActivationKind, AttentionKind, ModelConfig};
use quietgpt::engine::cpu::matmul::in_gemm;
use quietgpt::engine::cpu::CpuEngine;
use quietgpt::engine::dropout::Dropout;
use quietgpt::engine::{AdamWConfig, Batch, Engine, OptimConfig, SgdConfig};
use quietgpt::rng::Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;

/// Allocations outside the GEMM crate, by any thread.
static OURS: AtomicUsize = AtomicUsize::new(0);

fn count() {
    if !in_gemm() {
        OURS.fetch_add(1, Relaxed);
    }
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, size: usize) -> *mut u8 {
        count();
        System.realloc(p, l, size)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn a_training_step_allocates_nothing_outside_the_gemm_crate() {
    // 2 workers and 4 sequences: two shards, each with single-threaded GEMMs (in_gemm sees them whole)
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    // Every worker thread up and in its loop before anything is counted: a worker still starting (its
    // deque, its registry entry) allocates, which once showed up inside the first measured steps.
    pool.broadcast(|_| ());
    let adamw = OptimConfig::AdamW(AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 });
    let sgd = OptimConfig::Sgd(SgdConfig { momentum: 0.9, weight_decay: 0.1 });
    for kind in AttentionKind::ALL {
        // the second: the model options (ReLU, untied lm_head) and SGD
        for (bias, p, opts) in [(true, 0.0, false), (false, 0.2, true)] {
            let mut cfg = ModelConfig::new(2, 2, 32, 16, 11, bias, p, kind);
            if opts {
                (cfg.activation, cfg.tie_weights) = (ActivationKind::Relu, false);
            }
            let hp = if opts { sgd } else { adamw };
            let (b, t) = (4, 16);
            let mut e = CpuEngine::<f32>::new(cfg, b).unwrap();
            e.model_mut().init(&mut Rng::new(1, 1));
            let mut rng = Rng::new(2, 2);
            let x: Vec<u32> = (0..b * t).map(|_| rng.below(11) as u32).collect();
            let y: Vec<u32> = (0..b * t).map(|_| rng.below(11) as u32).collect();
            let drop = Dropout::new(p, 5, 0, 0);
            let step = |e: &mut CpuEngine<f32>| {
                e.zero_grad();
                e.forward(Batch { idx: &x, targets: Some(&y), b, t }, drop).unwrap();
                e.backward(1.0).unwrap();
                e.step(1e-3, &hp, 1.0).unwrap();
            };
            pool.install(|| {
                step(&mut e); // the first may grow scratch buffers
                let before = OURS.load(Relaxed);
                step(&mut e);
                step(&mut e);
                let n = OURS.load(Relaxed) - before;
                assert_eq!(
                    n, 0,
                    "{kind} bias={bias} dropout={p} {hp:?}: {n} allocations in two steps outside the GEMM crate"
                );
            });
        }
    }
}
