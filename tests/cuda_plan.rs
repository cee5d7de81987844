//! The GPU engine's plan on the CPU (tier 1 of the CUDA checks; the golden, trajectory and f64-engine
//! comparisons run it too, as the `cuda_plan_replay` engine of `test_engine!`): the descriptor and launch
//! checks that stand in for what only a GPU would show (out-of-bounds GEMM operands, racing arguments),
//! batches smaller than the buffers, the causal mask, and the refusal of shapes a kernel cannot index.

mod common;

use common::max_abs_diff;
use quietgpt::config::{AttentionKind, ModelConfig};
use quietgpt::engine::cpu::CpuEngine;
use quietgpt::engine::cuda::build::backward::buckets;
use quietgpt::engine::cuda::engine::PlanEngine;
use quietgpt::engine::cuda::kernel::{Kernel, RowKernel};
use quietgpt::engine::cuda::plan::{Arg, Dtype, GemmDesc, Launch, Op, Plan, Trans};
use quietgpt::engine::cuda::replay::{check_args, Replay};
use quietgpt::engine::params::init_params;
use quietgpt::engine::{Batch, Buffer, Engine};
use quietgpt::rng::Rng;

fn engines(cfg: &ModelConfig, max_b: usize) -> (PlanEngine<Replay>, CpuEngine<f32>) {
    let mut e = PlanEngine::new(cfg.clone(), max_b, Replay::new()).unwrap();
    let mut r = CpuEngine::<f32>::new(cfg.clone(), max_b).unwrap();
    let mut p = vec![0.0f32; e.layout().total];
    init_params(cfg, e.layout(), &mut Rng::new(3, 1), &mut p);
    let mut rng = Rng::new(4, 0);
    p.iter_mut().for_each(|x| *x += 0.1 * rng.normal() as f32);
    e.write(Buffer::Params, &p).unwrap();
    r.write(Buffer::Params, &p).unwrap();
    (e, r)
}

/// A batch smaller than the buffers (B < max_batch, T < block_size) uses the start of every per-layer
/// slice; two batch shapes in turn must both match the CPU engine.
#[test]
fn batches_smaller_than_the_buffers_match_the_cpu_engine() {
    for kind in AttentionKind::ALL {
        let cfg = ModelConfig::new(2, 2, 16, 12, 13, true, 0.0, kind);
        let (mut e, mut r) = engines(&cfg, 4);
        let mut rng = Rng::new(5, 0);
        for (b, t) in [(2, 7), (4, 12), (1, 5)] {
            let x: Vec<u32> = (0..b * t).map(|_| rng.below(13) as u32).collect();
            let y: Vec<u32> = (0..b * t).map(|_| rng.below(13) as u32).collect();
            let batch = Batch { idx: &x, targets: Some(&y), b, t };
            e.zero_grad();
            r.zero_grad();
            let (le, lr) = (e.forward(batch, None).unwrap().unwrap(), r.forward(batch, None).unwrap().unwrap());
            assert!((le - lr).abs() < 1e-5, "{kind} {b}x{t}: loss {le} vs {lr}");
            e.backward(1.0).unwrap();
            r.backward(1.0).unwrap();
            let (ge, gr) = (e.snapshot(Buffer::Grads).unwrap(), r.snapshot(Buffer::Grads).unwrap());
            let scale = gr.iter().fold(0.0f32, |m, g| m.max(g.abs())) as f64;
            let err = max_abs_diff(&ge, &gr);
            assert!(err < 1e-5 + 1e-4 * scale, "{kind} {b}x{t}: gradients differ by {err:.2e}");
        }
    }
}

/// Position i's logits depend on tokens 0..=i only: changing the last token leaves the others' logits
/// bitwise unchanged. (Under softmax1 and the unnormalised rules a wrong mask gives finite weights, not
/// NaN, so the mask is tested directly.)
#[test]
fn the_causal_mask_holds_for_every_variant() {
    for kind in AttentionKind::ALL {
        let cfg = ModelConfig::new(2, 2, 16, 9, 11, false, 0.0, kind);
        let (mut e, _) = engines(&cfg, 1);
        let mut x: Vec<u32> = (0..9).map(|i| (i * 5 % 11) as u32).collect();
        let (mut a, mut b) = (vec![], vec![]);
        e.forward(Batch { idx: &x, targets: None, b: 1, t: 9 }, None).unwrap();
        e.read_logits(&mut a).unwrap();
        x[8] = (x[8] + 3) % 11;
        e.forward(Batch { idx: &x, targets: None, b: 1, t: 9 }, None).unwrap();
        e.read_logits(&mut b).unwrap();
        let v = cfg.vocab_size;
        assert_eq!(a[..8 * v], b[..8 * v], "{kind}: earlier positions see the last token");
        assert_ne!(a[8 * v..], b[8 * v..], "{kind}: the last position ignores its own token");
    }
}

#[test]
fn gemm_descriptors_are_checked_against_their_views() {
    let mut plan = Plan::default();
    let (a, b, d) =
        (plan.buffer("a", Dtype::X, 6 * 5), plan.buffer("b", Dtype::X, 4 * 5), plan.buffer("d", Dtype::F32, 30));
    let ok = GemmDesc {
        transa: Trans::N,
        transb: Trans::N,
        m: 6,
        n: 5,
        k: 4,
        alpha: 1.0,
        beta: 0.0,
        a,
        lda: 6,
        stride_a: 0,
        b,
        ldb: 4,
        stride_b: 0,
        d,
        ldd: 6,
        stride_d: 0,
        batch: 1,
        bias: None,
    };
    assert_eq!(ok.check(), Ok(()));
    assert!(GemmDesc { lda: 5, ..ok.clone() }.check().unwrap_err().contains("leading dimension"));
    assert!(GemmDesc { ldd: 7, ..ok.clone() }.check().unwrap_err().contains("needs"));
    assert!(GemmDesc { batch: 2, stride_b: 20, ..ok.clone() }.check().unwrap_err().contains("B: needs"));
    assert!(GemmDesc { d: a, ..ok.clone() }.check().unwrap_err().contains("overlaps"));
    // the replay refuses what the check refuses
    let mut r = Replay::new();
    quietgpt::engine::cuda::Executor::alloc(&mut r, &plan.bufs).unwrap();
    let err = quietgpt::engine::cuda::Executor::run(&mut r, &[Op::Gemm(GemmDesc { ldd: 7, ..ok })]).unwrap_err();
    assert!(err.to_string().contains("needs"), "{err}");
}

#[test]
fn launches_are_checked_against_the_signature_and_for_races() {
    let mut plan = Plan::default();
    let x = plan.buffer("x", Dtype::X, 64);
    let launch = |kernel, args| Launch { kernel, args, grid: [1, 1, 1], block: [32, 1, 1], shared_bytes: 0 };
    let act = Kernel::ActForward(quietgpt::engine::cuda::kernel::ActKernel::Relu);
    assert!(check_args(&launch(act, vec![Arg::Ptr(x.sub(0, 32)), Arg::Ptr(x.sub(32, 32)), Arg::I32(32)])).is_ok());
    let err =
        check_args(&launch(act, vec![Arg::Ptr(x.sub(0, 32)), Arg::Ptr(x.sub(16, 32)), Arg::I32(32)])).unwrap_err();
    assert!(err.to_string().contains("overlap"), "{err}");
    let err = check_args(&launch(act, vec![Arg::Ptr(x), Arg::Null, Arg::I32(32)])).unwrap_err();
    assert!(err.to_string().contains("argument 1"), "{err}");
    let err = check_args(&launch(act, vec![Arg::Ptr(x)])).unwrap_err();
    assert!(err.to_string().contains("1 arguments"), "{err}");
    // dropout's in-place form is the one allowed alias
    let d = vec![Arg::Ptr(x), Arg::Ptr(x), Arg::I32(64), Arg::U64(1), Arg::F32(0.1)];
    assert!(check_args(&launch(Kernel::Dropout, d)).is_ok());
}

#[test]
fn every_kernel_has_a_name_a_file_and_a_geometry() {
    let all = Kernel::all();
    let names: std::collections::HashSet<String> = all.iter().map(|k| k.name()).collect();
    assert_eq!(names.len(), all.len(), "kernel names are unique");
    for k in &all {
        let ints =
            vec![3; k.signature().iter().filter(|a| **a == quietgpt::engine::cuda::kernel::ArgKind::I32).count()];
        let (grid, block, _) = quietgpt::engine::cuda::kernel::geometry(*k, &ints);
        assert!(grid.iter().all(|&g| g >= 1) && block[0] * block[1] * block[2] <= 1024, "{}", k.name());
    }
    for kind in AttentionKind::ALL {
        assert!(all.contains(&Kernel::AttnRowForward(RowKernel::of(kind))), "{kind} has a row kernel");
    }
}

#[test]
fn tokens_are_bucketed_for_the_deterministic_wte_backward() {
    let idx = [3u32, 1, 3, 0, 1, 3];
    let (start, pos, tok) = buckets(&idx, 5);
    assert_eq!(tok, vec![0, 1, 3]);
    assert_eq!(start, vec![0, 1, 3, 6]);
    assert_eq!(pos, vec![3, 1, 4, 0, 2, 5]);
}

/// Shapes whose element counts a kernel's int cannot index are refused with the fix, before any
/// allocation.
#[test]
fn shapes_beyond_an_int_are_refused_clearly() {
    let cfg = ModelConfig::new(1, 16, 64, 4096, 50304, false, 0.0, AttentionKind::Quiet);
    let err = PlanEngine::new(cfg, 16, Replay::new()).err().unwrap().to_string();
    assert!(err.contains("gradient_accumulation_steps"), "{err}");
}
