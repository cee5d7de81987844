//! The optimizer step as plan ops: the gradient norm's partial sums (the host adds them in f64 and
//! decides the clip, as `cpu::adamw::clip_grad_norm`), the clip, and AdamW or SGD per tensor kind (the
//! kinds decay or not, as nanoGPT's groups), writing the f32 master weights and their X copy.

use super::super::kernel::Kernel;
use super::super::plan::{Arg, Op, View};
use super::bufs::{Bufs, PARTS};
use super::{int, launch_op, p};
use crate::engine::params::{ParamLayout, KINDS};
use crate::engine::{AdamWConfig, SgdConfig};

/// Partial sums of squares of the gradients into `bufs.norm_part` (PARTS of them).
pub fn norm(bufs: &Bufs, total: usize) -> Vec<Op> {
    vec![launch_op(Kernel::NormSquaredPartial, vec![p(bufs.norm_part), p(bufs.grads), int(total), int(PARTS)])]
}

/// grads *= coef (the clip).
pub fn scale(bufs: &Bufs, total: usize, coef: f32) -> Vec<Op> {
    vec![launch_op(Kernel::ScaleF32, vec![p(bufs.grads), int(total), Arg::F32(coef)])]
}

/// params_x = (X) params, after the host writes the parameters.
pub fn cast_params(bufs: &Bufs, total: usize) -> Vec<Op> {
    vec![launch_op(Kernel::CastToX, vec![p(bufs.params_x), p(bufs.params), int(total)])]
}

/// One AdamW step (`step` is the step count after this one), with the scalars rounded and formed as
/// `cpu::adamw::AdamW::update` forms them.
pub fn adamw(bufs: &Bufs, lay: &ParamLayout, lr: f64, hp: &AdamWConfig, step: u64) -> Vec<Op> {
    let t = step as i32;
    let r = |x: f64| x as f32 as f64;
    let (beta1, beta2) = (r(hp.beta1), r(hp.beta2));
    let bc1 = 1.0 - beta1.powi(t);
    let bc2_sqrt = (1.0 - beta2.powi(t)).sqrt() as f32;
    let step_size = (lr / bc1) as f32;
    let decay = (1.0 - lr * r(hp.weight_decay)) as f32;
    let mut ops = Vec::new();
    for kind in KINDS {
        let range = lay.range(kind);
        if range.is_empty() {
            continue;
        }
        let d = if lay.decays(kind) { decay } else { 1.0 };
        let sub = |v: View| p(v.sub(range.start, range.len()));
        let f = |x: f32| Arg::F32(x);
        let (b1, b2) = (beta1 as f32, beta2 as f32);
        let mut args = vec![sub(bufs.params), sub(bufs.params_x), sub(bufs.grads), sub(bufs.m), sub(bufs.v)];
        args.extend([
            int(range.len()),
            f(d),
            f(1.0 - b1),
            f(b2),
            f(1.0 - b2),
            f(bc2_sqrt),
            f(hp.eps as f32),
            f(step_size),
        ]);
        ops.push(launch_op(Kernel::AdamW, args));
    }
    ops
}

/// One SGD step (`first`: the first step, which sets the momentum buffer to the gradient).
pub fn sgd(bufs: &Bufs, lay: &ParamLayout, lr: f64, hp: &SgdConfig, first: bool) -> Vec<Op> {
    let mut ops = Vec::new();
    for kind in KINDS {
        let range = lay.range(kind);
        if range.is_empty() {
            continue;
        }
        let decay = lay.decays(kind) && hp.weight_decay != 0.0;
        let sub = |v: View| p(v.sub(range.start, range.len()));
        let mut args = vec![sub(bufs.params), sub(bufs.params_x), sub(bufs.grads), sub(bufs.m)];
        args.extend([int(range.len()), int(decay as usize), Arg::F32(hp.weight_decay as f32)]);
        args.extend([Arg::F32(hp.momentum as f32), Arg::F32(-lr as f32), int(first as usize)]);
        ops.push(launch_op(Kernel::Sgd, args));
    }
    ops
}
