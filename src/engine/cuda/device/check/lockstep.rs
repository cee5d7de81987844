//! The self-test's kernel check: a small model's forward and backward run one op at a time, in
//! lockstep, on the CUDA executor (f32, TF32 off) and on the CPU replay from the same parameters and
//! tokens. After each op every float view it touches is compared (`compare::f32_diff`) and the
//! replay's values are copied into the GPU's, so that each op starts from identical inputs and the
//! first op that disagrees is the kernel (or GEMM) at fault. At the end every float buffer is compared
//! whole (a write outside an op's views shows there). The replay's logits, loss and gradients are the
//! reference of the bf16 check (`bf16_vs_reference`).

use super::super::super::build::backward::buckets;
use super::super::super::build::Bufs;
use super::super::super::engine::PlanEngine;
use super::super::super::plan::{Arg, Dtype, Op, Plan, Precision, View};
use super::super::super::replay::Replay;
use super::super::super::Executor;
use super::compare::{bf16_diff, f32_diff, Diff, BF16_LOSS};
use super::Device;
use crate::config::{AttentionKind, ModelConfig};
use crate::engine::dropout::Dropout;
use crate::engine::params::{init_params, ParamLayout};
use crate::engine::{Batch, Buffer, Engine};
use crate::rng::Rng;
use crate::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// One model and batch of the check.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub config: ModelConfig,
    pub b: usize,
    pub t: usize,
    pub dropout: Option<Dropout>,
    pub seed: u64,
}

/// 2 layers, 4 heads, C 64, T 67 of a block of 80 (no tile divides 67), V 97, B 3, biases on: one case
/// per attention variant; then quiet with GPT-2's vocabulary (50257, not padded), no biases, tanh GELU;
/// then softmax with dropout 0.1 (the dropout kernel, the same masks on both sides).
pub fn cases() -> Vec<Case> {
    let small = |kind| ModelConfig::new(2, 4, 64, 80, 97, true, 0.0, kind);
    let mut v: Vec<Case> = AttentionKind::ALL
        .iter()
        .map(|&k| Case { name: k.name().into(), config: small(k), b: 3, t: 67, dropout: None, seed: 1 })
        .collect();
    let mut big = ModelConfig::new(2, 4, 64, 80, 50257, false, 0.0, AttentionKind::Quiet);
    big.gelu = crate::config::GeluKind::Tanh;
    v.push(Case { name: "quiet-v50257-nobias-tanh".into(), config: big, b: 2, t: 67, dropout: None, seed: 2 });
    let mut d = small(AttentionKind::Softmax);
    d.dropout = 0.1;
    v.push(Case {
        name: "softmax-dropout".into(),
        config: d,
        b: 3,
        t: 67,
        dropout: Dropout::new(0.1, 7, 1, 0),
        seed: 3,
    });
    v
}

/// The parameters (the model's initialisation plus N(0, 0.05) everywhere, so that biases, LayerNorm
/// weights, sinks and gates are not at their special initial values) and the tokens of a case.
pub struct Inputs {
    pub params: Vec<f32>,
    pub idx: Vec<u32>,
    pub targets: Vec<u32>,
}

pub fn inputs(c: &Case) -> Inputs {
    let layout = ParamLayout::new(&c.config);
    let mut params = vec![0.0f32; layout.total];
    init_params(&c.config, &layout, &mut Rng::new(c.seed, 1), &mut params);
    let mut rng = Rng::new(c.seed, 2);
    for p in params.iter_mut() {
        *p += (0.05 * rng.normal()) as f32;
    }
    let n = c.b * c.t;
    let v = c.config.vocab_size as u64;
    let idx = (0..n).map(|_| rng.below(v) as u32).collect();
    let targets = (0..n).map(|_| rng.below(v) as u32).collect();
    Inputs { params, idx, targets }
}

/// The first op that disagreed.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub op: usize,
    pub what: String,
    pub diff: Diff,
}

#[derive(Clone, Debug, Serialize)]
pub struct LockstepReport {
    pub case: String,
    pub ops: usize,
    pub views_compared: usize,
    /// The largest error (relative to the tensor's max) of each kernel, GEMM and memset.
    pub worst_per_kernel: BTreeMap<String, f64>,
    pub first_failure: Option<Failure>,
    /// Buffers that differ at the end although every op's views agreed.
    pub stray: Vec<Diff>,
    pub loss_cuda: f64,
    pub loss_replay: f64,
    pub seconds: f64,
    pub ok: bool,
}

/// The replay's results: the reference of the bf16 check.
pub struct Reference {
    pub logits: Vec<f32>,
    pub loss: f64,
    pub grads: Vec<f32>,
}

/// What an op is, for messages: the kernel's name, or the GEMM's shape and output, or the memset.
pub fn describe(op: &Op, plan: &Plan) -> String {
    let name = |v: &View| plan.spec(v.buf).name.clone();
    match op {
        Op::Launch(l) => l.kernel.name(),
        Op::Gemm(g) => format!("gemm {}x{}x{} batch {} -> {}", g.m, g.n, g.k, g.batch, name(&g.d)),
        Op::Zero(v) => format!("zero {}", name(v)),
    }
}

fn kind_of(op: &Op) -> String {
    match op {
        Op::Launch(l) => l.kernel.name(),
        Op::Gemm(_) => "gemm".into(),
        Op::Zero(_) => "zero".into(),
    }
}

/// The float views an op touches (a GEMM writes only D), once each.
pub fn views_of(op: &Op, plan: &Plan) -> Vec<View> {
    let mut v: Vec<View> = match op {
        Op::Gemm(g) => vec![g.d],
        Op::Zero(z) => vec![*z],
        Op::Launch(l) => l.args.iter().filter_map(|a| if let Arg::Ptr(p) = a { Some(*p) } else { None }).collect(),
    };
    v.retain(|x| plan.spec(x.buf).dtype != Dtype::U32);
    let mut out: Vec<View> = Vec::new();
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

fn read<E: Executor>(e: &E, v: View) -> Result<Vec<f32>> {
    let mut out = vec![0.0; v.len];
    e.download(v, &mut out)?;
    Ok(out)
}

/// The uploads of `PlanEngine::forward` (token ids, targets, the wte backward's buckets), for an
/// engine whose ops the self-test runs itself.
fn upload_batch<E: Executor>(e: &mut PlanEngine<E>, x: &Inputs, vocab: usize) -> Result<()> {
    let bufs: Bufs = e.bufs().clone();
    let n = x.idx.len();
    let ex = e.executor_mut();
    ex.upload_u32(bufs.idx.sub(0, n), &x.idx)?;
    ex.upload_u32(bufs.targets.sub(0, n), &x.targets)?;
    let (start, pos, tokens) = buckets(&x.idx, vocab);
    ex.upload_u32(bufs.bucket_start.sub(0, start.len()), &start)?;
    ex.upload_u32(bufs.bucket_pos.sub(0, n), &pos)?;
    ex.upload_u32(bufs.bucket_token.sub(0, tokens.len()), &tokens)
}

fn mean_loss(losses: &[f32]) -> f64 {
    losses.iter().map(|&l| l as f64).sum::<f64>() / losses.len() as f64
}

/// Runs the case's forward and backward op by op on the device's executor (f32) and the replay.
pub fn f32_lockstep<D: Device>(dev: &D, c: &Case, x: &Inputs) -> Result<(LockstepReport, Reference)> {
    let t0 = Instant::now();
    let cfg = c.config.clone();
    // The ops (a planning engine's forward sets the bucket count the backward's ops name).
    let mut planner = PlanEngine::new(cfg.clone(), c.b, Replay::new())?;
    let batch = Batch { idx: &x.idx, targets: Some(&x.targets), b: c.b, t: c.t };
    planner.write(Buffer::Params, &x.params)?;
    planner.forward(batch, c.dropout)?;
    let ops = planner.ops(c.b, c.t, true, c.dropout, true);
    let n_forward = planner.ops(c.b, c.t, true, c.dropout, false).len();
    drop(planner);

    let mut rep = PlanEngine::new(cfg.clone(), c.b, Replay::new())?;
    let mut gpu = PlanEngine::new(cfg.clone(), c.b, dev.executor(Precision::F32)?)?;
    for e in [&mut rep as &mut dyn Engine, &mut gpu] {
        e.write(Buffer::Params, &x.params)?;
    }
    upload_batch(&mut rep, x, cfg.vocab_size)?;
    upload_batch(&mut gpu, x, cfg.vocab_size)?;
    let plan = rep.plan().clone();
    let bufs = rep.bufs().clone();
    let n = c.b * c.t;
    let mut report = LockstepReport {
        case: c.name.clone(),
        ops: ops.len(),
        views_compared: 0,
        worst_per_kernel: BTreeMap::new(),
        first_failure: None,
        stray: Vec::new(),
        loss_cuda: f64::NAN,
        loss_replay: f64::NAN,
        seconds: 0.0,
        ok: false,
    };
    let mut logits = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        rep.executor_mut().run(std::slice::from_ref(op))?;
        gpu.executor_mut().run(std::slice::from_ref(op))?;
        dev.synchronize(gpu.executor())
            .map_err(|e| crate::Error::Device(format!("op {i} ({}) of case {}: {e}", describe(op, &plan), c.name)))?;
        for v in views_of(op, &plan) {
            let want = read(rep.executor(), v)?;
            let got = read(gpu.executor(), v)?;
            let what = format!(
                "op {i} {} view of '{}' [{}..{})",
                describe(op, &plan),
                plan.spec(v.buf).name,
                v.offset,
                v.offset + v.len
            );
            let d = f32_diff(&what, &got, &want);
            report.views_compared += 1;
            let w = report.worst_per_kernel.entry(kind_of(op)).or_insert(0.0);
            *w = w.max(d.rel_to_max);
            if !d.ok && report.first_failure.is_none() {
                report.first_failure = Some(Failure { op: i, what: describe(op, &plan), diff: d });
            }
            // Identical inputs for the next op.
            gpu.executor_mut().upload(v, &want)?;
        }
        if i + 1 == n_forward {
            let lv = bufs.losses.sub(0, n);
            report.loss_replay = mean_loss(&read(rep.executor(), lv)?);
            report.loss_cuda = mean_loss(&read(gpu.executor(), lv)?);
            logits = read(rep.executor(), bufs.logits.sub(0, n * cfg.vocab_size))?;
        }
    }
    // Whole buffers at the end.
    for (id, spec) in plan.bufs.iter().enumerate() {
        if spec.dtype == Dtype::U32 || spec.len == 0 {
            continue;
        }
        let v = View { buf: super::super::super::plan::BufId(id as u32), offset: 0, len: spec.len };
        let d = f32_diff(
            &format!("buffer '{}' at the end", spec.name),
            &read(gpu.executor(), v)?,
            &read(rep.executor(), v)?,
        );
        if !d.ok {
            report.stray.push(d);
        }
    }
    let grads = read(rep.executor(), bufs.grads)?;
    report.ok = report.first_failure.is_none() && report.stray.is_empty();
    report.seconds = t0.elapsed().as_secs_f64();
    let loss = report.loss_replay;
    Ok((report, Reference { logits, loss, grads }))
}

#[derive(Clone, Debug, Serialize)]
pub struct Bf16Report {
    pub case: String,
    pub loss_bf16: f64,
    pub loss_f32: f64,
    pub loss_ok: bool,
    /// The logits, then the gradient of each parameter tensor (nanoGPT's names).
    pub diffs: Vec<Diff>,
    pub failed: Vec<String>,
    pub seconds: f64,
    pub ok: bool,
}

/// The case's forward and backward on the device in bf16, through the engine, against the replay's
/// f32 results (`compare::bf16_diff`, the loss within `BF16_LOSS`).
pub fn bf16_vs_reference<D: Device>(dev: &D, c: &Case, x: &Inputs, r: &Reference) -> Result<Bf16Report> {
    let t0 = Instant::now();
    let mut gpu = PlanEngine::new(c.config.clone(), c.b, dev.executor(Precision::Bf16)?)?;
    gpu.write(Buffer::Params, &x.params)?;
    let loss =
        gpu.forward(Batch { idx: &x.idx, targets: Some(&x.targets), b: c.b, t: c.t }, c.dropout)?.unwrap_or(f64::NAN);
    let mut logits = Vec::new();
    gpu.read_logits(&mut logits)?;
    gpu.backward(1.0)?;
    let grads = gpu.snapshot(Buffer::Grads)?;
    let mut diffs = vec![bf16_diff("logits", &logits, &r.logits)];
    for t in gpu.layout().named() {
        let s = t.offset..t.offset + t.len;
        diffs.push(bf16_diff(&format!("grad {}", t.name), &grads[s.clone()], &r.grads[s]));
    }
    let loss_ok = (loss - r.loss).abs() <= BF16_LOSS;
    let failed: Vec<String> = diffs.iter().filter(|d| !d.ok).map(|d| d.what.clone()).collect();
    Ok(Bf16Report {
        case: c.name.clone(),
        loss_bf16: loss,
        loss_f32: r.loss,
        loss_ok,
        ok: loss_ok && failed.is_empty(),
        diffs,
        failed,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cases cover every variant and the odd shapes; their inputs are reproducible and in range;
    /// every op of a forward and backward has views to compare, named in messages.
    #[test]
    fn cases_inputs_and_op_views() {
        let cs = cases();
        for k in AttentionKind::ALL {
            assert!(cs.iter().any(|c| c.config.attention == k), "{k:?}");
        }
        assert!(cs.iter().any(|c| c.config.vocab_size == 50257) && cs.iter().all(|c| c.t % 8 != 0));
        assert!(cs.iter().any(|c| c.dropout.is_some()));
        let c = &cs[1];
        let (a, b) = (inputs(c), inputs(c));
        assert_eq!((a.params, a.idx.clone()), (b.params, b.idx.clone()));
        assert!(a.idx.iter().chain(&a.targets).all(|&t| (t as usize) < c.config.vocab_size));
        let mut planner = PlanEngine::new(c.config.clone(), c.b, Replay::new()).unwrap();
        planner.forward(Batch { idx: &a.idx, targets: Some(&a.targets), b: c.b, t: c.t }, None).unwrap();
        let ops = planner.ops(c.b, c.t, true, None, true);
        assert!(ops.len() > planner.ops(c.b, c.t, true, None, false).len());
        for op in &ops {
            let vs = views_of(op, planner.plan());
            assert!(!vs.is_empty(), "{}", describe(op, planner.plan()));
            assert!(vs.iter().all(|v| planner.plan().spec(v.buf).dtype != Dtype::U32));
        }
        assert!(ops.iter().any(|o| describe(o, planner.plan()).starts_with("gemm ")));
        assert!(ops.iter().any(|o| describe(o, planner.plan()) == "attn_quiet_forward"));
    }
}
