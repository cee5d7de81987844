//! SGD with momentum over the flat buffers, exactly as PyTorch's single-tensor `torch.optim.SGD`
//! (dampening 0, no Nesterov), with nanoGPT's groups (weight decay on tensors of 2+ dimensions). The CPU
//! engine's kernel for `OptimConfig::Sgd`; clipping comes before it, as for AdamW (`adamw::clip_grad_norm`).

use super::real::Real;
use crate::engine::params::{ParamLayout, KINDS};
use crate::engine::SgdConfig;
use crate::multiversion;
use rayon::prelude::*;

const CHUNK: usize = 8192;

/// One SGD step at learning rate `lr`, `buf` the momentum buffer (laid out as the parameters):
///   g ← g + wd·p                          (decayed tensors only: torch skips the term where wd = 0)
///   buf ← g (first step), else momentum·buf + g
///   p ← p − lr·buf
/// `grads` is left as it is. The hyper-parameters are rounded to F first, as torch takes Python floats
/// into a float tensor's kernels; each line rounds as torch's does (`grad.add(p, alpha=wd)` and
/// `p.add_(buf, alpha=-lr)` are fused multiply-adds in its vectorised CPU kernel, `buf.mul_(m).add_(g)`
/// two roundings).
pub fn sgd_update<F: Real>(
    params: &mut [F],
    grads: &[F],
    buf: &mut [F],
    first: bool,
    layout: &ParamLayout,
    lr: f64,
    hp: &SgdConfig,
) {
    let r = |x: f64| F::from_f64(x);
    super::shard::on_pool(|| {
        for kind in KINDS {
            let range = layout.range(kind);
            if range.is_empty() {
                continue;
            }
            let k = SgdConsts {
                decay: layout.decays(kind) && hp.weight_decay != 0.0,
                wd: r(hp.weight_decay),
                momentum: r(hp.momentum),
                neg_lr: r(-lr),
                first,
            };
            params[range.clone()]
                .par_chunks_mut(CHUNK)
                .zip(grads[range.clone()].par_chunks(CHUNK))
                .zip(buf[range.clone()].par_chunks_mut(CHUNK))
                .for_each(|((p, g), b)| sgd_chunk::<F>(p, g, b, &k));
        }
    });
}

/// The per-element constants of one SGD step.
struct SgdConsts<F> {
    decay: bool,
    wd: F,
    momentum: F,
    neg_lr: F,
    first: bool,
}

multiversion! {
    fn sgd_chunk<F: Real>(p: &mut [F], g: &[F], buf: &mut [F], k: &SgdConsts<F>) {
        for i in 0..p.len() {
            let g = if k.decay { p[i].mul_add(k.wd, g[i]) } else { g[i] };
            buf[i] = if k.first { g } else { buf[i] * k.momentum + g };
            p[i] = buf[i].mul_add(k.neg_lr, p[i]);
        }
    }
}
