//! The CUDA kernels (`src/engine/cuda/kernels/*.cu`), run on the host by an emulator of the CUDA subset
//! they use (`tests/cuda_emu`), against the CPU reference kernels, for f32 and bf16, launched with the
//! contract's signatures and `kernel::geometry`. Odd shapes: T = 37 and 70 (not multiples of a warp),
//! C = 100, rows longer than a warp, V = 50257; in-place calls where the contract allows them.
//!
//! What it checks: index arithmetic, reductions, masks, in-place safety and the formulas, before a GPU
//! is at hand. What it cannot: the device's math library (expf, erff differ from the CPU's in the last
//! bits, as do sums in another order; hence f32 tolerances of a few ulp, and exact equality where a
//! kernel has neither), its memory system, or timing. bf16 is compared with the f32 reference on the
//! same rounded inputs at 2e-2.

mod cuda_emu;

use cuda_emu::{close, rand, rx, Buf, Emu, A};
use quietgpt::engine::cpu::{encoder, gelu, layernorm, relu};
use quietgpt::engine::cuda::kernel::{ActKernel, Kernel};
use quietgpt::engine::cuda::plan::Precision;
use quietgpt::rng::Rng;

const BOTH: [Precision; 2] = [Precision::F32, Precision::Bf16];

/// (atol, rtol) of results with transcendentals or reordered sums.
fn tol(p: Precision) -> (f32, f32) {
    match p {
        Precision::F32 => (1e-6, 2e-6),
        Precision::Bf16 => (2e-2, 2e-2),
    }
}

/// Runs `f` for both precisions unless the user skips the emulated checks.
fn each(f: impl Fn(Precision, &Emu, &mut Rng)) {
    if !cuda_emu::enabled() {
        return;
    }
    for p in BOTH {
        f(p, &Emu::new(p), &mut Rng::new(7, 1));
    }
}

#[test]
fn encoder_forward_and_backward() {
    each(|p, emu, r| {
        let (b, t, c, v) = (2usize, 37usize, 100usize, 101usize);
        let n = b * t;
        let idx: Vec<u32> = (0..n).map(|_| (r.next_u64() % 7) as u32).collect();
        let (wte, wpe) = (rx(p, &rand(r, v * c, 1.0)), rx(p, &rand(r, t * c, 1.0)));
        let mut out = Buf::x(p, &vec![0.0; n * c]);
        let (mut bi, mut bw, mut bp) = (Buf::U(idx.clone()), Buf::x(p, &wte), Buf::x(p, &wpe));
        let (bb, tt, cc) = (b as i32, t as i32, c as i32);
        emu.run(
            Kernel::EncoderForward,
            &mut [A::B(&mut out), A::B(&mut bi), A::B(&mut bw), A::B(&mut bp), A::I(bb), A::I(tt), A::I(cc)],
        );
        let mut want = vec![0.0f32; n * c];
        encoder::encoder_forward(&mut want, &idx, &wte, &wpe, b, t, c);
        close("encoder_forward", &out.get(), &rx(p, &want), 0.0, 0.0);

        let dout = rx(p, &rand(r, n * c, 1.0));
        let (dwte0, dwpe0) = (rand(r, v * c, 1.0), rand(r, t * c, 1.0));
        let (mut wdwte, mut wdwpe) = (dwte0.clone(), dwpe0.clone());
        encoder::encoder_backward(&mut wdwte, &mut wdwpe, &dout, &idx, b, t, c);
        // the host's buckets: positions sorted (stably) by token
        let mut pos: Vec<u32> = (0..n as u32).collect();
        pos.sort_by_key(|&i| idx[i as usize]);
        let (mut start, mut tok) = (Vec::new(), Vec::new());
        for (j, &q) in pos.iter().enumerate() {
            if j == 0 || idx[q as usize] != idx[pos[j - 1] as usize] {
                start.push(j as u32);
                tok.push(idx[q as usize]);
            }
        }
        start.push(n as u32);
        let nb = tok.len() as i32;
        let (mut dwte, mut dwpe, mut bd) = (Buf::F(dwte0), Buf::F(dwpe0), Buf::x(p, &dout));
        let (mut bs, mut bpos, mut bt) = (Buf::U(start), Buf::U(pos), Buf::U(tok));
        emu.run(
            Kernel::EncoderBackwardWte,
            &mut [A::B(&mut dwte), A::B(&mut bd), A::B(&mut bs), A::B(&mut bpos), A::B(&mut bt), A::I(nb), A::I(cc)],
        );
        emu.run(Kernel::EncoderBackwardWpe, &mut [A::B(&mut dwpe), A::B(&mut bd), A::I(bb), A::I(tt), A::I(cc)]);
        close("encoder_backward_wte", &dwte.get(), &wdwte, 0.0, 0.0);
        close("encoder_backward_wpe", &dwpe.get(), &wdwpe, 0.0, 0.0);
    });
}

#[test]
fn layernorm_forward_residual_backward_and_column_sums() {
    each(|p, emu, r| {
        let (at, rt) = tol(p);
        // 192 rows in 3 chunks of 64: the CPU engine's partial sums, so f32 weight gradients are bitwise
        let (n, c, chunks) = (192usize, 100usize, 3usize);
        let (ni, ci) = (n as i32, c as i32);
        for bias in [true, false] {
            let (x, x2) = (rx(p, &rand(r, n * c, 2.0)), rx(p, &rand(r, n * c, 2.0)));
            let (w, bb) = (rx(p, &rand(r, c, 1.0)), rx(p, &rand(r, c, 1.0)));
            let ob = bias.then_some(&bb[..]);
            let (mut out, mut mean, mut rstd) =
                (Buf::x(p, &vec![0.0; n * c]), Buf::F(vec![0.0; n]), Buf::F(vec![0.0; n]));
            let (mut bx, mut bx2, mut bw, mut bbias) = (Buf::x(p, &x), Buf::x(p, &x2), Buf::x(p, &w), Buf::x(p, &bb));
            let bptr = &mut bbias as *mut Buf;
            let barg = || if bias { A::At(bptr) } else { A::Null };
            emu.run(
                Kernel::LayerNormForward,
                &mut [
                    A::B(&mut out),
                    A::B(&mut mean),
                    A::B(&mut rstd),
                    A::B(&mut bx),
                    A::B(&mut bw),
                    barg(),
                    A::I(ni),
                    A::I(ci),
                ],
            );
            let (mut wo, mut wm, mut wr) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
            layernorm::layernorm_forward(&mut wo, &mut wm, &mut wr, &x, &w, ob, n, c);
            close("layernorm_forward out", &out.get(), &rx(p, &wo), at, rt);
            close("layernorm_forward mean", &mean.get(), &wm, at, rt);
            close("layernorm_forward rstd", &rstd.get(), &wr, at, rt);

            // the fused residual, in place over its first input
            let mut res = Buf::x(p, &x);
            let rptr = &mut res as *mut Buf;
            let (mut out2, mut m2, mut r2) = (Buf::x(p, &vec![0.0; n * c]), Buf::F(vec![0.0; n]), Buf::F(vec![0.0; n]));
            emu.run(
                Kernel::ResidualLayerNormForward,
                &mut [
                    A::At(rptr),
                    A::B(&mut out2),
                    A::B(&mut m2),
                    A::B(&mut r2),
                    A::At(rptr),
                    A::B(&mut bx2),
                    A::B(&mut bw),
                    barg(),
                    A::I(ni),
                    A::I(ci),
                ],
            );
            let (mut wres, mut wo2) = (vec![0.0; n * c], vec![0.0; n * c]);
            layernorm::residual_layernorm_forward(&mut wres, &mut wo2, &mut wm, &mut wr, &x, &x2, &w, ob, n, c);
            close("residual_layernorm_forward res", &res.get(), &rx(p, &wres), 0.0, 0.0);
            let (mut wo3, mut wm3, mut wr3) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
            layernorm::layernorm_forward(&mut wo3, &mut wm3, &mut wr3, &res.get(), &w, ob, n, c);
            close("residual_layernorm_forward out", &out2.get(), &rx(p, &wo3), at, rt);

            // backward, then the weight's and bias's gradients through the column sums
            let (dout, dinp0) = (rx(p, &rand(r, n * c, 1.0)), rx(p, &rand(r, n * c, 1.0)));
            let (mut wdinp, mut wdw, mut wdb) = (dinp0.clone(), vec![0.5f32; c], vec![0.25f32; c]);
            let (m, s) = (mean.get(), rstd.get());
            layernorm::layernorm_backward(
                &mut wdinp,
                &mut wdw,
                Some(&mut wdb),
                &dout,
                &x,
                &w,
                &m,
                &s,
                n,
                c,
                &mut Vec::new(),
            );
            let (mut dinp, mut dwr, mut bdo) = (Buf::x(p, &dinp0), Buf::x(p, &vec![0.0; n * c]), Buf::x(p, &dout));
            let (mut bm, mut bs) = (Buf::F(m), Buf::F(s));
            emu.run(
                Kernel::LayerNormBackward,
                &mut [
                    A::B(&mut dinp),
                    A::B(&mut dwr),
                    A::B(&mut bdo),
                    A::B(&mut bx),
                    A::B(&mut bw),
                    A::B(&mut bm),
                    A::B(&mut bs),
                    A::I(ni),
                    A::I(ci),
                ],
            );
            close("layernorm_backward dinp", &dinp.get(), &rx(p, &wdinp), at, rt);
            for (what, rows, want, init) in [("dweight", &mut dwr, &wdw, 0.5f32), ("dbias", &mut bdo, &wdb, 0.25)] {
                let mut part = Buf::F(vec![0.0; chunks * c]);
                let k = chunks as i32;
                emu.run(Kernel::ColumnSumPartial, &mut [A::B(&mut part), A::B(rows), A::I(ni), A::I(ci), A::I(k)]);
                let mut o = Buf::F(vec![init; c]);
                emu.run(Kernel::ColumnSumFinish, &mut [A::B(&mut o), A::B(&mut part), A::I(k), A::I(ci)]);
                let (a, rr) = if p == Precision::F32 { (0.0, 0.0) } else { (0.1, 0.05) };
                close(&format!("layernorm_backward {what} (column sums)"), &o.get(), want, a, rr);
            }
        }
    });
}

#[test]
fn reductions_scale_and_cast() {
    each(|p, emu, r| {
        let (n, parts) = (10007usize, 7usize);
        let x = rand(r, n, 3.0);
        let (mut part, mut bx) = (Buf::F(vec![0.0; parts]), Buf::F(x.clone()));
        emu.run(Kernel::NormSquaredPartial, &mut [A::B(&mut part), A::B(&mut bx), A::I(n as i32), A::I(parts as i32)]);
        let per = n.div_ceil(parts);
        let want: Vec<f32> = (0..parts)
            .map(|k| x[k * per..((k + 1) * per).min(n)].iter().map(|&v| v as f64 * v as f64).sum::<f64>() as f32)
            .collect();
        close("norm_squared_partial (f64 sums)", &part.get(), &want, 0.0, 1.2e-7);
        emu.run(Kernel::ScaleF32, &mut [A::B(&mut bx), A::I(n as i32), A::F(0.37)]);
        close("scale_f32", &bx.get(), &x.iter().map(|v| v * 0.37).collect::<Vec<_>>(), 0.0, 0.0);
        let mut out = Buf::x(p, &vec![0.0; n]);
        emu.run(Kernel::CastToX, &mut [A::B(&mut out), A::B(&mut bx), A::I(n as i32)]);
        close("cast_to_x", &out.get(), &rx(p, &bx.get()), 0.0, 0.0);
    });
}

#[test]
fn activations_forward_and_backward() {
    each(|p, emu, r| {
        let (at, rt) = tol(p);
        let n = 5000;
        for a in ActKernel::ALL {
            let (x, d) = (rx(p, &rand(r, n, 5.0)), rx(p, &rand(r, n, 1.0)));
            let (mut out, mut bx, mut bd) = (Buf::x(p, &vec![0.0; n]), Buf::x(p, &x), Buf::x(p, &d));
            emu.run(Kernel::ActForward(a), &mut [A::B(&mut out), A::B(&mut bx), A::I(n as i32)]);
            emu.run(Kernel::ActBackward(a), &mut [A::B(&mut bd), A::B(&mut bx), A::I(n as i32)]);
            type Fwd = fn(&mut [f32], &[f32]);
            type Remake = fn(&mut [f32], &mut [f32]);
            let (fwd, remake): (Fwd, Remake) = match a {
                ActKernel::GeluErf => (gelu::gelu_forward, gelu::gelu_remake_with_grad),
                ActKernel::GeluTanh => (gelu::gelu_tanh_forward, gelu::gelu_tanh_remake_with_grad),
                ActKernel::Relu => (relu::relu_forward, relu::relu_remake_with_grad),
            };
            let (mut wo, mut grad, mut wd) = (vec![0.0; n], x.clone(), d.clone());
            fwd(&mut wo, &x);
            remake(&mut vec![0.0; n], &mut grad);
            gelu::gelu_backward_from_grad(&mut wd, &grad);
            let exact = a == ActKernel::Relu;
            let (a0, r0) = if exact { (0.0, 0.0) } else { (at, rt) };
            close(&format!("{}_forward", a.name()), &out.get(), &rx(p, &wo), a0, r0);
            close(&format!("{}_backward", a.name()), &bd.get(), &rx(p, &wd), a0, r0);
        }
    });
}

#[test]
fn attention_permutes() {
    each(|p, emu, r| {
        let (b, t, nh, hs) = (2usize, 37usize, 3usize, 8usize);
        let (c, n) = (nh * hs, b * t);
        let dims = || [A::I(b as i32), A::I(t as i32), A::I(nh as i32), A::I(hs as i32)];
        let qkv = rx(p, &rand(r, n * 3 * c, 1.0));
        let mut bq = Buf::x(p, &qkv);
        let z = vec![0.0; n * c];
        let (mut q, mut k, mut v) = (Buf::x(p, &z), Buf::x(p, &z), Buf::x(p, &z));
        let [d0, d1, d2, d3] = dims();
        emu.run(
            Kernel::AttentionPermute,
            &mut [A::B(&mut q), A::B(&mut k), A::B(&mut v), A::B(&mut bq), d0, d1, d2, d3],
        );
        let mut want = [z.clone(), z.clone(), z.clone()];
        for bi in 0..b {
            for ti in 0..t {
                for h in 0..nh {
                    for d in 0..hs {
                        for (part, w) in want.iter_mut().enumerate() {
                            w[((bi * nh + h) * t + ti) * hs + d] = qkv[(bi * t + ti) * 3 * c + part * c + h * hs + d];
                        }
                    }
                }
            }
        }
        for (name, got, w) in [("q", &q, &want[0]), ("k", &k, &want[1]), ("v", &v, &want[2])] {
            close(&format!("attention_permute {name}"), &got.get(), w, 0.0, 0.0);
        }
        let mut back = Buf::x(p, &vec![0.0; n * 3 * c]);
        let [d0, d1, d2, d3] = dims();
        emu.run(
            Kernel::AttentionPermuteBackward,
            &mut [A::B(&mut back), A::B(&mut q), A::B(&mut k), A::B(&mut v), d0, d1, d2, d3],
        );
        close("attention_permute_backward", &back.get(), &qkv, 0.0, 0.0);
        let mut out = Buf::x(p, &z);
        let [d0, d1, d2, d3] = dims();
        emu.run(Kernel::AttentionUnpermute, &mut [A::B(&mut out), A::B(&mut q), d0, d1, d2, d3]);
        let q_bt: Vec<f32> = (0..n * c).map(|i| qkv[(i / c) * 3 * c + i % c]).collect();
        close("attention_unpermute", &out.get(), &q_bt, 0.0, 0.0);
        let mut dy = Buf::x(p, &z);
        let [d0, d1, d2, d3] = dims();
        emu.run(Kernel::AttentionUnpermuteBackward, &mut [A::B(&mut dy), A::B(&mut out), d0, d1, d2, d3]);
        close("attention_unpermute_backward", &dy.get(), &want[0], 0.0, 0.0);
    });
}

#[path = "cuda_emu/checks.rs"]
mod checks;
