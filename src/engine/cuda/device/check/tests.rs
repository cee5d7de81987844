//! The checks themselves, on the CPU: the CPU replay stands in for the GPU (everything agrees), and a
//! replay with a planted fault shows that the first wrong op is named and a stray write is found.

use super::super::super::plan::{Arg, BufSpec, Op, Precision, View};
use super::super::super::replay::Replay;
use super::super::super::Executor;
use super::lockstep::{bf16_vs_reference, cases, f32_lockstep, inputs};
use super::{bench, train, Device};
use crate::config::{AttentionKind, ModelConfig};
use crate::Result;

struct Cpu;

impl Device for Cpu {
    type E = Replay;
    fn executor(&self, _: Precision) -> Result<Replay> {
        Ok(Replay::new())
    }
    fn synchronize(&self, _: &Replay) -> Result<()> {
        Ok(())
    }
}

/// A replay that gets one kernel wrong: after each launch of `kernel`, element 0 of `target` (a
/// buffer by name, or the launch's first pointer argument when None) is off by 0.5.
struct Faulty {
    inner: Replay,
    kernel: &'static str,
    target: Option<&'static str>,
    bufs: Vec<BufSpec>,
}

impl Executor for Faulty {
    fn name(&self) -> &'static str {
        "faulty"
    }
    fn precision(&self) -> Precision {
        Precision::F32
    }
    fn alloc(&mut self, bufs: &[BufSpec]) -> Result<()> {
        self.bufs = bufs.to_vec();
        self.inner.alloc(bufs)
    }
    fn run(&mut self, ops: &[Op]) -> Result<()> {
        for op in ops {
            self.inner.run(std::slice::from_ref(op))?;
            let Op::Launch(l) = op else { continue };
            if l.kernel.name() != self.kernel {
                continue;
            }
            let v = match self.target {
                Some(name) => {
                    let id = self.bufs.iter().position(|b| b.name == name).expect("a buffer of the plan");
                    View { buf: super::super::super::plan::BufId(id as u32), offset: 0, len: 1 }
                }
                None => match l.args[0] {
                    Arg::Ptr(v) => v.sub(0, 1),
                    _ => unreachable!("outputs come first"),
                },
            };
            let mut x = [0.0f32];
            self.inner.download(v, &mut x)?;
            x[0] += 0.5;
            self.inner.upload(v, &x)?;
        }
        Ok(())
    }
    fn upload(&mut self, view: View, data: &[f32]) -> Result<()> {
        self.inner.upload(view, data)
    }
    fn upload_u32(&mut self, view: View, data: &[u32]) -> Result<()> {
        self.inner.upload_u32(view, data)
    }
    fn download(&self, view: View, out: &mut [f32]) -> Result<()> {
        self.inner.download(view, out)
    }
}

struct FaultyDev(&'static str, Option<&'static str>);

impl Device for FaultyDev {
    type E = Faulty;
    fn executor(&self, _: Precision) -> Result<Faulty> {
        Ok(Faulty { inner: Replay::new(), kernel: self.0, target: self.1, bufs: Vec::new() })
    }
    fn synchronize(&self, _: &Faulty) -> Result<()> {
        Ok(())
    }
}

fn case(kind: AttentionKind) -> super::lockstep::Case {
    cases().into_iter().find(|c| c.config.attention == kind).unwrap()
}

#[test]
fn the_replay_agrees_with_itself_op_by_op_and_in_bf16_terms() {
    for kind in [AttentionKind::Sink, AttentionKind::Outgate] {
        let c = case(kind);
        let x = inputs(&c);
        let (rep, reference) = f32_lockstep(&Cpu, &c, &x).unwrap();
        assert!(rep.ok && rep.first_failure.is_none() && rep.stray.is_empty(), "{rep:?}");
        assert!(rep.views_compared >= rep.ops && rep.worst_per_kernel.values().all(|&w| w == 0.0));
        assert_eq!(rep.loss_cuda, rep.loss_replay);
        assert!(rep.loss_replay.is_finite() && reference.grads.iter().any(|&g| g != 0.0));
        let b = bf16_vs_reference(&Cpu, &c, &x, &reference).unwrap();
        assert!(b.ok && b.loss_bf16 == b.loss_f32, "{b:?}");
        assert!(b.diffs.iter().all(|d| d.max_abs == 0.0) && b.diffs.len() > 10);
    }
}

#[test]
fn the_first_wrong_kernel_is_named_and_a_stray_write_is_found() {
    let c = case(AttentionKind::Quiet);
    let x = inputs(&c);
    let (rep, _) = f32_lockstep(&FaultyDev("attn_quiet_forward", None), &c, &x).unwrap();
    let f = rep.first_failure.as_ref().expect("a failure");
    assert_eq!(f.what, "attn_quiet_forward", "{f:?}");
    assert!(!rep.ok && f.diff.worst == 0 && (f.diff.got - f.diff.want - 0.5).abs() < 1e-6, "{f:?}");
    // A write outside the op's views: every op agrees, the buffer differs at the end.
    let (rep, _) = f32_lockstep(&FaultyDev("encoder_forward", Some("adam_v")), &c, &x).unwrap();
    assert!(rep.first_failure.is_none() && !rep.ok, "{rep:?}");
    assert_eq!(rep.stray.len(), 1);
    assert!(rep.stray[0].what.contains("'adam_v'"), "{:?}", rep.stray);
}

#[test]
fn training_and_bench_run_on_any_device() {
    let t = train::run(&Cpu, AttentionKind::Quiet).unwrap();
    assert!(t.ok && t.bf16_runs_bitwise_equal, "{t:?}");
    assert!(t.max_diff_f32 <= train::F32_LOSS_TOL && t.losses_cpu.len() == train::STEPS);
    let cfg = ModelConfig::new(1, 2, 16, 32, 50, true, 0.0, AttentionKind::Quiet);
    let row = bench::ours(&Cpu, &cfg, 2, 0, 2, Some(1.0)).unwrap();
    assert!(row.ms_per_step > 0.0 && row.loss.is_finite() && row.mfu.unwrap() > 0.0, "{row:?}");
    assert_eq!((row.attention.as_str(), row.batch_size, row.block_size), ("quiet", 2, 32));
}
