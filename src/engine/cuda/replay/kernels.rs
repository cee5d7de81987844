//! The replay's kernels: each `Launch` run by the CPU reference kernel of `engine::cpu`, or by the few
//! lines of the kernel's definition in `kernel.rs` where the CPU engine splits the work differently
//! (the encoder's and LayerNorm's weight gradients, the column sums, the permutes).

use super::super::kernel::{ActKernel, Kernel};
use super::super::plan::{Arg, Launch};
use super::{check_args, Replay};
use crate::config::{ActivationKind, GeluKind};
use crate::engine::cpu::attention::{from_scores, normalize, normalize_backward, Variant};
use crate::engine::cpu::attention_gate::{gate_backward, gate_forward};
use crate::engine::cpu::crossentropy::{crossentropy_backward, crossentropy_forward};
use crate::engine::cpu::encoder::encoder_forward;
use crate::engine::cpu::gelu::{gelu_backward_from_grad, Activation};
use crate::engine::cpu::layernorm::{layernorm_forward, residual_layernorm_forward};
use crate::engine::dropout::Dropout;
use crate::Result;

impl Replay {
    pub(super) fn launch(&mut self, l: &Launch) -> Result<()> {
        check_args(l)?;
        let a = &l.args;
        let int = |k: usize| match a[k] {
            Arg::I32(x) => x as usize,
            _ => unreachable!("checked by check_args"),
        };
        let flt = |k: usize| match a[k] {
            Arg::F32(x) => x,
            _ => unreachable!("checked by check_args"),
        };
        let view = |k: usize| match a[k] {
            Arg::Ptr(v) => Some(v),
            _ => None,
        };
        let v = |k: usize| view(k).expect("checked by check_args");
        // copies of the inputs (an absent optional one is None)
        let get = |s: &Self, k: usize| -> Result<Option<Vec<f32>>> {
            view(k).map(|v| s.floats(v).map(|x| x.to_vec())).transpose()
        };
        let inp = |s: &Self, k: usize| -> Result<Vec<f32>> { Ok(get(s, k)?.expect("a required pointer")) };
        match l.kernel {
            Kernel::EncoderForward => {
                let (b, t, c) = (int(4), int(5), int(6));
                let idx = self.ids(v(1))?.to_vec();
                let (wte, wpe) = (inp(self, 2)?, inp(self, 3)?);
                encoder_forward(self.floats_mut(v(0))?, &idx, &wte, &wpe, b, t, c);
            }
            Kernel::EncoderBackwardWte => {
                let (nb, c) = (int(5), int(6));
                let dout = inp(self, 1)?;
                let (start, pos, tok) = (self.ids(v(2))?.to_vec(), self.ids(v(3))?.to_vec(), self.ids(v(4))?.to_vec());
                let dwte = self.floats_mut(v(0))?;
                for k in 0..nb {
                    let row = &mut dwte[tok[k] as usize * c..][..c];
                    for &p in &pos[start[k] as usize..start[k + 1] as usize] {
                        for (d, &g) in row.iter_mut().zip(&dout[p as usize * c..][..c]) {
                            *d += g;
                        }
                    }
                }
            }
            Kernel::EncoderBackwardWpe => {
                let (b, t, c) = (int(2), int(3), int(4));
                let dout = inp(self, 1)?;
                let dwpe = self.floats_mut(v(0))?;
                for bi in 0..b {
                    for (d, &g) in dwpe[..t * c].iter_mut().zip(&dout[bi * t * c..][..t * c]) {
                        *d += g;
                    }
                }
            }
            Kernel::LayerNormForward => {
                let (n, c) = (int(6), int(7));
                let (x, w, bias) = (inp(self, 3)?, inp(self, 4)?, get(self, 5)?);
                let (mut out, mut mean, mut rstd) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
                layernorm_forward(&mut out, &mut mean, &mut rstd, &x, &w, bias.as_deref(), n, c);
                self.put(&[(v(0), &out), (v(1), &mean), (v(2), &rstd)])?;
            }
            Kernel::ResidualLayerNormForward => {
                let (n, c) = (int(8), int(9));
                let (x1, x2, w, bias) = (inp(self, 4)?, inp(self, 5)?, inp(self, 6)?, get(self, 7)?);
                let (mut res, mut out) = (vec![0.0; n * c], vec![0.0; n * c]);
                let (mut mean, mut rstd) = (vec![0.0; n], vec![0.0; n]);
                residual_layernorm_forward(
                    &mut res,
                    &mut out,
                    &mut mean,
                    &mut rstd,
                    &x1,
                    &x2,
                    &w,
                    bias.as_deref(),
                    n,
                    c,
                );
                self.put(&[(v(0), &res), (v(1), &out), (v(2), &mean), (v(3), &rstd)])?;
            }
            Kernel::LayerNormBackward => {
                let (n, c) = (int(7), int(8));
                let (dout, x, w, mean, rstd) =
                    (inp(self, 2)?, inp(self, 3)?, inp(self, 4)?, inp(self, 5)?, inp(self, 6)?);
                let mut dinp = inp(self, 0)?;
                let mut rows = vec![0.0; n * c];
                layernorm_backward_rows(&mut dinp, &mut rows, &dout, &x, &w, &mean, &rstd, n, c);
                self.put(&[(v(0), &dinp), (v(1), &rows)])?;
            }
            Kernel::ColumnSumPartial => {
                let (n, c, r) = (int(2), int(3), int(4));
                let x = inp(self, 1)?;
                let part = self.floats_mut(v(0))?;
                let rows = n.div_ceil(r);
                for (ri, p) in part.chunks_exact_mut(c).take(r).enumerate() {
                    p.fill(0.0);
                    for row in (ri * rows).min(n)..((ri + 1) * rows).min(n) {
                        for (s, &y) in p.iter_mut().zip(&x[row * c..][..c]) {
                            *s += y;
                        }
                    }
                }
            }
            Kernel::ColumnSumFinish => {
                let (r, c) = (int(2), int(3));
                let part = inp(self, 1)?;
                let out = self.floats_mut(v(0))?;
                for ri in 0..r {
                    for (o, &p) in out[..c].iter_mut().zip(&part[ri * c..][..c]) {
                        *o += p;
                    }
                }
            }
            Kernel::NormSquaredPartial => {
                let (n, r) = (int(2), int(3));
                let x = inp(self, 1)?;
                let part = self.floats_mut(v(0))?;
                let chunk = n.div_ceil(r);
                for (ri, p) in part[..r].iter_mut().enumerate() {
                    let xs = &x[(ri * chunk).min(n)..((ri + 1) * chunk).min(n)];
                    *p = xs.iter().map(|&g| g as f64 * g as f64).sum::<f64>() as f32;
                }
            }
            Kernel::ScaleF32 => {
                let (n, s) = (int(1), flt(2));
                self.floats_mut(v(0))?[..n].iter_mut().for_each(|x| *x *= s);
            }
            Kernel::CastToX => {
                let n = int(2);
                let x = inp(self, 1)?;
                self.floats_mut(v(0))?[..n].copy_from_slice(&x[..n]);
            }
            Kernel::ActForward(act) => {
                let n = int(2);
                let x = inp(self, 1)?;
                (activation(act).forward)(&mut self.floats_mut(v(0))?[..n], &x[..n]);
            }
            Kernel::ActBackward(act) => {
                let n = int(2);
                let mut x = inp(self, 1)?;
                let mut remade = vec![0.0; n];
                (activation(act).remake_with_grad)(&mut remade, &mut x[..n]); // x becomes act'(x)
                gelu_backward_from_grad(&mut self.floats_mut(v(0))?[..n], &x[..n]);
            }
            Kernel::AttentionPermute | Kernel::AttentionPermuteBackward => {
                let fwd = l.kernel == Kernel::AttentionPermute;
                let (b, t, nh, hs) = (int(4), int(5), int(6), int(7));
                let c = nh * hs;
                let mut big = if fwd { inp(self, 3)? } else { vec![0.0; b * t * 3 * c] };
                let mut parts: [Vec<f32>; 3] = Default::default();
                for (k, part) in parts.iter_mut().enumerate() {
                    *part = if fwd { vec![0.0; b * t * c] } else { inp(self, k + 1)? };
                }
                for (bi, ti, h, e) in each(b, t, nh, hs) {
                    for (k, p) in parts.iter_mut().enumerate() {
                        let (head, tok) =
                            ((((bi * nh + h) * t) + ti) * hs + e, (bi * t + ti) * 3 * c + k * c + h * hs + e);
                        if fwd {
                            p[head] = big[tok];
                        } else {
                            big[tok] = p[head];
                        }
                    }
                }
                if fwd {
                    self.put(&[(v(0), &parts[0]), (v(1), &parts[1]), (v(2), &parts[2])])?;
                } else {
                    self.put(&[(v(0), &big)])?;
                }
            }
            Kernel::AttentionUnpermute | Kernel::AttentionUnpermuteBackward => {
                let fwd = l.kernel == Kernel::AttentionUnpermute;
                let (b, t, nh, hs) = (int(2), int(3), int(4), int(5));
                let src = inp(self, 1)?;
                let mut dst = vec![0.0; b * t * nh * hs];
                for (bi, ti, h, e) in each(b, t, nh, hs) {
                    let (head, tok) = ((((bi * nh + h) * t) + ti) * hs + e, (bi * t + ti) * nh * hs + h * hs + e);
                    if fwd {
                        dst[tok] = src[head];
                    } else {
                        dst[head] = src[tok];
                    }
                }
                self.put(&[(v(0), &dst)])?;
            }
            Kernel::AttnRowForward(rk) => {
                let (bh, t, nh, zeta, gamma) = (int(3), int(4), int(5), flt(6), flt(7));
                let (pre, sink) = (inp(self, 1)?, get(self, 2)?.unwrap_or_default());
                let var = Variant { kind: rk.kind(), sink: &sink, zeta, gamma };
                let att = self.floats_mut(v(0))?;
                for r in 0..bh * t {
                    let (h, i) = ((r / t) % nh, r % t);
                    let row = &mut att[r * t..(r + 1) * t];
                    row.fill(0.0);
                    row[..=i].copy_from_slice(&pre[r * t..][..=i]);
                    normalize(&var, h, &mut row[..=i]);
                }
            }
            Kernel::AttnRowBackward(rk) => {
                let (bh, t, nh, zeta, gamma) = (int(6), int(7), int(8), flt(9), flt(10));
                let (datt, att, pre) = (inp(self, 2)?, inp(self, 3)?, inp(self, 4)?);
                let sink = get(self, 5)?.unwrap_or_default();
                let var = Variant { kind: rk.kind(), sink: &sink, zeta, gamma };
                let (mut dpre, mut dnull) = (vec![0.0; bh * t * t], vec![0.0; bh * t]);
                for r in 0..bh * t {
                    let (h, i) = ((r / t) % nh, r % t);
                    let g = &mut dpre[r * t..][..=i];
                    g.copy_from_slice(&datt[r * t..][..=i]);
                    let p = &att[r * t..][..=i];
                    let mut u = pre[r * t..][..=i].to_vec();
                    let rule = var.rule(h);
                    if rule.needs_scores() {
                        from_scores(&rule, &mut u);
                    }
                    let u = if rule.needs_scores() { &u[..] } else { p };
                    dnull[r] = normalize_backward(&var, h, p, u, g);
                }
                self.put(&[(v(0), &dpre)])?;
                if let Some(dn) = view(1) {
                    self.put(&[(dn, &dnull)])?;
                }
            }
            Kernel::SinkBackward => {
                let (b, nh, t) = (int(2), int(3), int(4));
                let dnull = inp(self, 1)?;
                let dsink = self.floats_mut(v(0))?;
                for bi in 0..b {
                    for (h, d) in dsink[..nh].iter_mut().enumerate() {
                        *d += dnull[(bi * nh + h) * t..][..t].iter().sum::<f32>();
                    }
                }
            }
            Kernel::GateForward => {
                let (n, c, g) = (int(3), int(4), int(5));
                let (mut gate, y) = (inp(self, 1)?, inp(self, 2)?);
                let mut out = vec![0.0; n * c];
                gate_forward(&mut out, &mut gate, &y, n, c, g);
                self.put(&[(v(0), &out), (v(1), &gate)])?;
            }
            Kernel::GateBackward => {
                let (n, c, g) = (int(5), int(6), int(7));
                let (mut dy, dout, y, gate) = (inp(self, 0)?, inp(self, 2)?, inp(self, 3)?, inp(self, 4)?);
                let mut dz = vec![0.0; n * g];
                gate_backward(&mut dy, &mut dz, &dout, &y, &gate, n, c, g);
                self.put(&[(v(0), &dy), (v(1), &dz)])?;
            }
            Kernel::Dropout => {
                let (n, p) = (int(2), flt(4));
                let key = match a[3] {
                    Arg::U64(k) => k,
                    _ => unreachable!("checked by check_args"),
                };
                let d = Dropout { p, key: 0 };
                let mut x = inp(self, 1)?;
                for (i, e) in x[..n].iter_mut().enumerate() {
                    *e *= d.factor::<f32>(key, i as u64);
                }
                self.put(&[(v(0), &x)])?;
            }
            Kernel::CrossEntropyForward => {
                let (n, vs) = (int(3), int(4));
                let (logits, targets) = (inp(self, 1)?, self.ids(v(2))?.to_vec());
                crossentropy_forward(self.floats_mut(v(0))?, &logits, &targets, n, vs);
            }
            Kernel::CrossEntropyBackward => {
                let (dloss, n, vs) = (flt(2), int(3), int(4));
                let targets = self.ids(v(1))?.to_vec();
                crossentropy_backward(self.floats_mut(v(0))?, &targets, dloss, n, vs);
            }
            Kernel::AdamW => {
                let n = int(5);
                let [decay, b1_rest, b2, b2_rest, bc2_sqrt, eps, step_size] = [6, 7, 8, 9, 10, 11, 12].map(flt);
                let g = inp(self, 2)?;
                let (mut p, mut m, mut vv) = (inp(self, 0)?, inp(self, 3)?, inp(self, 4)?);
                for i in 0..n {
                    p[i] *= decay;
                    m[i] += (g[i] - m[i]) * b1_rest;
                    vv[i] = vv[i] * b2 + b2_rest * g[i] * g[i];
                    let denom = vv[i].sqrt() / bc2_sqrt + eps;
                    p[i] += -step_size * (m[i] / denom);
                }
                self.put(&[(v(0), &p), (v(3), &m), (v(4), &vv)])?;
                if let Some(px) = view(1) {
                    self.put(&[(px, &p)])?;
                }
            }
            Kernel::Sgd => {
                let (n, decay, wd, momentum, neg_lr, first) = (int(4), int(5), flt(6), flt(7), flt(8), int(9));
                let g = inp(self, 2)?;
                let (mut p, mut buf) = (inp(self, 0)?, inp(self, 3)?);
                for i in 0..n {
                    let g = if decay != 0 { p[i].mul_add(wd, g[i]) } else { g[i] };
                    buf[i] = if first != 0 { g } else { buf[i] * momentum + g };
                    p[i] = buf[i].mul_add(neg_lr, p[i]);
                }
                self.put(&[(v(0), &p), (v(3), &buf)])?;
                if let Some(px) = view(1) {
                    self.put(&[(px, &p)])?;
                }
            }
        }
        Ok(())
    }
}

/// (b, t, h, e) over a (B, T, NH, HS) index space.
fn each(b: usize, t: usize, nh: usize, hs: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    (0..b)
        .flat_map(move |bi| (0..t).flat_map(move |ti| (0..nh).flat_map(move |h| (0..hs).map(move |e| (bi, ti, h, e)))))
}

fn activation(a: ActKernel) -> Activation<f32> {
    match a {
        ActKernel::GeluErf => Activation::of(ActivationKind::Gelu, GeluKind::Erf),
        ActKernel::GeluTanh => Activation::of(ActivationKind::Gelu, GeluKind::Tanh),
        ActKernel::Relu => Activation::of(ActivationKind::Relu, GeluKind::Erf),
    }
}

/// `Kernel::LayerNormBackward` as its contract defines it: dinp += dx, rows = dout ⊙ x̂ (the CPU
/// engine's `layernorm_backward` sums the rows itself; the plan sums them with `ColumnSum*`).
#[allow(clippy::too_many_arguments)]
fn layernorm_backward_rows(
    dinp: &mut [f32],
    rows: &mut [f32],
    dout: &[f32],
    x: &[f32],
    w: &[f32],
    mean: &[f32],
    rstd: &[f32],
    n: usize,
    c: usize,
) {
    let inv_c = 1.0 / c as f32;
    for r in 0..n {
        let (xr, gr) = (&x[r * c..][..c], &dout[r * c..][..c]);
        let (m, s) = (mean[r], rstd[r]);
        let (mut gw, mut gwx) = (0.0f32, 0.0f32);
        for k in 0..c {
            gw += gr[k] * w[k];
            gwx += gr[k] * w[k] * (xr[k] - m);
        }
        let (g_mean, gn_mean) = (gw * inv_c, gwx * s * inv_c);
        for k in 0..c {
            let norm = (xr[k] - m) * s;
            dinp[r * c + k] += s * (gr[k] * w[k] - g_mean - norm * gn_mean);
            rows[r * c + k] = norm * gr[k];
        }
    }
}
