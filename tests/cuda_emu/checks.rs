//! The second half of tests/cuda_emulate.rs: the attention rows and the sink, the gate, dropout, the
//! cross-entropy and the optimizers.

use super::cuda_emu::{close, rand, rx, Buf, A};
use super::{each, tol};
use quietgpt::engine::cpu::{attention, attention_gate, crossentropy};
use quietgpt::engine::cuda::kernel::{Kernel, RowKernel};
use quietgpt::engine::cuda::plan::Precision;
use quietgpt::engine::dropout::Dropout;

/// Every row rule, forward and backward, against `attention::normalize` and `normalize_backward` row by
/// row (rows of 1 to 70 keys, lanes striding past a warp), with a row of all-negative scores and an exact
/// zero score; the backward also in place (dpreatt = datt); the sink's gradient from the rows' dnull.
#[test]
fn attention_rows_forward_backward_and_sink() {
    each(|p, emu, r| {
        let (nh, t) = (3usize, 70usize);
        let bh = 2 * nh;
        let (ti, bhi, nhi) = (t as i32, bh as i32, nh as i32);
        let (f32_fwd, f32_bwd) = ((2e-6, 4e-6), (2e-5, 4e-5));
        let ((af, rf), (ab, rb)) = if p == Precision::F32 { (f32_fwd, f32_bwd) } else { (tol(p), tol(p)) };
        for rk in RowKernel::ALL {
            let sink = rx(p, &rand(r, nh, 3.0));
            let (zeta, gamma) = (1.0f32, -12.0f32 / 64.0);
            let var = attention::Variant { kind: rk.kind(), sink: &sink, zeta, gamma };
            let mut pre = rand(r, bh * t * t, 4.0);
            for j in 0..t {
                pre[5 * t + j] = -1.0 - j as f32; // row 5 (query 5): every score negative
            }
            pre[7 * t + 3] = 0.0;
            let pre = rx(p, &pre);
            let datt = rx(p, &rand(r, bh * t * t, 1.0));
            let (mut att, mut bpre, mut bsink) = (Buf::x(p, &vec![9.0; bh * t * t]), Buf::x(p, &pre), Buf::x(p, &sink));
            let sp = &mut bsink as *mut Buf;
            let sink_arg = || if rk == RowKernel::Sink { A::At(sp) } else { A::Null };
            let (zf, gf) = (A::F(zeta), A::F(gamma));
            emu.run(
                Kernel::AttnRowForward(rk),
                &mut [A::B(&mut att), A::B(&mut bpre), sink_arg(), A::I(bhi), A::I(ti), A::I(nhi), zf, gf],
            );
            let att_k = att.get();
            let (mut watt, mut wds, mut wdnull) =
                (vec![0.0f32; bh * t * t], vec![0.0f32; bh * t * t], vec![0.0f32; bh * t]);
            for row in 0..bh * t {
                let (i, h) = (row % t, row / t % nh);
                let w = &mut watt[row * t..][..=i];
                w.copy_from_slice(&pre[row * t..][..=i]);
                attention::normalize(&var, h, w);
                // the backward from the weights as the kernel stored them
                let pk = &att_k[row * t..][..=i];
                let (mut g, mut u) = (datt[row * t..][..=i].to_vec(), pre[row * t..][..=i].to_vec());
                let rule = var.rule(h);
                let u: &[f32] = if rule.needs_scores() {
                    attention::from_scores(&rule, &mut u);
                    &u
                } else {
                    pk
                };
                wdnull[row] = attention::normalize_backward(&var, h, pk, u, &mut g);
                wds[row * t..][..=i].copy_from_slice(&g);
            }
            close(&format!("attn_{}_forward", rk.name()), &att_k, &rx(p, &watt), af, rf);
            let (mut ds, mut dnull, mut bdatt) =
                (Buf::x(p, &vec![9.0; bh * t * t]), Buf::F(vec![9.0; bh * t]), Buf::x(p, &datt));
            let (zf, gf) = (A::F(zeta), A::F(gamma));
            emu.run(
                Kernel::AttnRowBackward(rk),
                &mut [
                    A::B(&mut ds),
                    A::B(&mut dnull),
                    A::B(&mut bdatt),
                    A::B(&mut att),
                    A::B(&mut bpre),
                    sink_arg(),
                    A::I(bhi),
                    A::I(ti),
                    A::I(nhi),
                    zf,
                    gf,
                ],
            );
            close(&format!("attn_{}_backward", rk.name()), &ds.get(), &rx(p, &wds), ab, rb);
            match rk {
                // no null key: 0 (the CPU's normalize_backward returns the row's Σu·g' for clipped, unused)
                RowKernel::Clipped => assert!(dnull.get().iter().all(|&x| x == 0.0), "clipped: dnull"),
                // bf16: p_null from the scores, the reference's 1 − Σp from bf16 weights
                _ if p == Precision::Bf16 => close("  dnull", &dnull.get(), &wdnull, 0.05, 0.1),
                _ => close("  dnull", &dnull.get(), &wdnull, ab, rb),
            }
            let mut same = Buf::x(p, &datt);
            let s = &mut same as *mut Buf;
            let (zf, gf) = (A::F(zeta), A::F(gamma));
            emu.run(
                Kernel::AttnRowBackward(rk),
                &mut [
                    A::At(s),
                    A::Null,
                    A::At(s),
                    A::B(&mut att),
                    A::B(&mut bpre),
                    sink_arg(),
                    A::I(bhi),
                    A::I(ti),
                    A::I(nhi),
                    zf,
                    gf,
                ],
            );
            close("  in place (dpreatt = datt)", &same.get(), &ds.get(), 0.0, 0.0);
            if rk == RowKernel::Sink {
                let mut dsink = Buf::F(vec![0.5; nh]);
                emu.run(Kernel::SinkBackward, &mut [A::B(&mut dsink), A::B(&mut dnull), A::I(2), A::I(nhi), A::I(ti)]);
                let dn = dnull.get();
                let sum = |h: usize| (0..2).map(|b| dn[(b * nh + h) * t..][..t].iter().sum::<f32>()).sum::<f32>();
                let want: Vec<f32> = (0..nh).map(|h| 0.5 + sum(h)).collect();
                close("sink_backward", &dsink.get(), &want, 1e-6, 1e-5);
            }
        }
    });
}

#[test]
fn gate_forward_and_backward() {
    each(|p, emu, r| {
        let (at, rt) = tol(p);
        let (n, c) = (74usize, 100usize);
        for g in [4usize, c] {
            let (ni, ci, gi) = (n as i32, c as i32, g as i32);
            let (y, z) = (rx(p, &rand(r, n * c, 1.0)), rx(p, &rand(r, n * g, 3.0)));
            let (mut out, mut gate, mut by) = (Buf::x(p, &vec![0.0; n * c]), Buf::x(p, &z), Buf::x(p, &y));
            emu.run(
                Kernel::GateForward,
                &mut [A::B(&mut out), A::B(&mut gate), A::B(&mut by), A::I(ni), A::I(ci), A::I(gi)],
            );
            let (mut wo, mut wz) = (vec![0.0; n * c], z.clone());
            attention_gate::gate_forward(&mut wo, &mut wz, &y, n, c, g);
            close("gate_forward out", &out.get(), &rx(p, &wo), at, rt);
            close("gate_forward sigma", &gate.get(), &rx(p, &wz), at, rt);
            let (dout, dy0, sig) = (rx(p, &rand(r, n * c, 1.0)), rx(p, &rand(r, n * c, 1.0)), gate.get());
            let (mut wdy, mut wdz) = (dy0.clone(), vec![0.0; n * g]);
            attention_gate::gate_backward(&mut wdy, &mut wdz, &dout, &y, &sig, n, c, g);
            let (mut dy, mut dz, mut bdo) = (Buf::x(p, &dy0), Buf::x(p, &vec![0.0; n * g]), Buf::x(p, &dout));
            emu.run(
                Kernel::GateBackward,
                &mut [
                    A::B(&mut dy),
                    A::B(&mut dz),
                    A::B(&mut bdo),
                    A::B(&mut by),
                    A::B(&mut gate),
                    A::I(ni),
                    A::I(ci),
                    A::I(gi),
                ],
            );
            close("gate_backward dy", &dy.get(), &rx(p, &wdy), at, rt);
            close("gate_backward dz", &dz.get(), &rx(p, &wdz), at, rt);
        }
    });
}

#[test]
fn dropout_masks_are_the_cpu_engines() {
    each(|p, emu, r| {
        let n = 4099;
        let x = rx(p, &rand(r, n, 1.0));
        let d = Dropout { p: 0.3, key: 12345 };
        let key = d.site(5);
        let mut bx = Buf::x(p, &x);
        let s = &mut bx as *mut Buf;
        emu.run(Kernel::Dropout, &mut [A::At(s), A::At(s), A::I(n as i32), A::U(key), A::F(0.3)]);
        let want: Vec<f32> = x.iter().enumerate().map(|(i, &v)| v * d.factor::<f32>(key, i as u64)).collect();
        close("dropout_forward (in place)", &bx.get(), &rx(p, &want), 0.0, 0.0);
    });
}

#[test]
fn crossentropy_forward_and_backward() {
    each(|p, emu, r| {
        let (at, rt) = tol(p);
        for v in [101usize, 50257] {
            let n = if v > 1000 { 3 } else { 17 };
            let logits = rx(p, &rand(r, n * v, 8.0));
            let targets: Vec<u32> = (0..n).map(|i| ((i * 31 + 5) % v) as u32).collect();
            let (mut losses, mut bl, mut bt) = (Buf::F(vec![0.0; n]), Buf::x(p, &logits), Buf::U(targets.clone()));
            let (ni, vi) = (n as i32, v as i32);
            emu.run(
                Kernel::CrossEntropyForward,
                &mut [A::B(&mut losses), A::B(&mut bl), A::B(&mut bt), A::I(ni), A::I(vi)],
            );
            let mut wl = vec![0.0; n];
            crossentropy::crossentropy_forward(&mut wl, &logits, &targets, n, v);
            // the reference sums 50257 terms in sequence; the kernel as a tree
            close("crossentropy_forward", &losses.get(), &wl, 1e-5, 1e-5);
            emu.run(Kernel::CrossEntropyBackward, &mut [A::B(&mut bl), A::B(&mut bt), A::F(0.125), A::I(ni), A::I(vi)]);
            let mut wd = logits.clone();
            crossentropy::crossentropy_backward(&mut wd, &targets, 0.125, n, v);
            close("crossentropy_backward (in place)", &bl.get(), &rx(p, &wd), at * 0.1, rt);
        }
    });
}

/// AdamW and SGD bitwise against `adamw_chunk`'s and `sgd_chunk`'s operations, written out here as they
/// are there (both are private to the CPU engine).
#[test]
fn optimizers_are_the_cpu_engines_bit_for_bit() {
    each(|p, emu, r| {
        let n = 3001;
        let (p0, g, m0) = (rand(r, n, 1.0), rand(r, n, 1.0), rand(r, n, 0.1));
        let v0: Vec<f32> = rand(r, n, 0.1).iter().map(|x| x.abs()).collect();
        let k = [0.9994f32, 0.1, 0.95, 0.05, 0.3, 1e-8, 6e-4];
        let (mut bp, mut bpx, mut bg) = (Buf::F(p0.clone()), Buf::x(p, &vec![0.0; n]), Buf::F(g.clone()));
        let (mut bm, mut bv) = (Buf::F(m0.clone()), Buf::F(v0.clone()));
        let mut args = vec![A::B(&mut bp), A::B(&mut bpx), A::B(&mut bg), A::B(&mut bm), A::B(&mut bv), A::I(n as i32)];
        args.extend(k.iter().map(|&x| A::F(x)));
        emu.run(Kernel::AdamW, &mut args);
        let (mut wp, mut wm, mut wv) = (p0.clone(), m0.clone(), v0.clone());
        for i in 0..n {
            wp[i] *= k[0];
            wm[i] += (g[i] - wm[i]) * k[1];
            wv[i] = wv[i] * k[2] + k[3] * g[i] * g[i];
            let denom = wv[i].sqrt() / k[4] + k[5];
            wp[i] += -k[6] * (wm[i] / denom);
        }
        close("adamw_update params", &bp.get(), &wp, 0.0, 0.0);
        close("adamw_update m", &bm.get(), &wm, 0.0, 0.0);
        close("adamw_update v", &bv.get(), &wv, 0.0, 0.0);
        close("adamw_update params_x", &bpx.get(), &rx(p, &wp), 0.0, 0.0);
        for (decay, first) in [(1, 0), (0, 1)] {
            let (mut bp, mut bg, mut bb) = (Buf::F(p0.clone()), Buf::F(g.clone()), Buf::F(m0.clone()));
            emu.run(
                Kernel::Sgd,
                &mut [
                    A::B(&mut bp),
                    A::Null,
                    A::B(&mut bg),
                    A::B(&mut bb),
                    A::I(n as i32),
                    A::I(decay),
                    A::F(0.1),
                    A::F(0.9),
                    A::F(-0.01),
                    A::I(first),
                ],
            );
            let (mut wp, mut wb) = (p0.clone(), m0.clone());
            for i in 0..n {
                let gg = if decay == 1 { wp[i].mul_add(0.1, g[i]) } else { g[i] };
                wb[i] = if first == 1 { gg } else { wb[i] * 0.9 + gg };
                wp[i] = wb[i].mul_add(-0.01, wp[i]);
            }
            close("sgd_update params", &bp.get(), &wp, 0.0, 0.0);
            close("sgd_update buf", &bb.get(), &wb, 0.0, 0.0);
        }
    });
}
