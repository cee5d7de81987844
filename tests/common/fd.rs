//! Finite-difference checking (f64), shared by the kernel tests and the attention-variant tests.
//!
//! Method: a random upstream gradient G, the scalar L = Σ G ∘ forward(x), the analytical ∂L/∂x from the
//! backward kernel (which accumulates: it starts from random values that are subtracted afterwards),
//! and (L(x + h e_i) − L(x − h e_i)) / 2h with h = 1e-6 for every element (a sample for the model),
//! evaluated as Σ_k G_k (y_k(x + h e_i) − y_k(x − h e_i)) / 2h: differencing the outputs before the sum
//! keeps the rounding noise to that of the outputs the element actually moves.

use quietgpt::config::ModelConfig;
use quietgpt::engine::cpu::Gpt;
use quietgpt::engine::dropout::Dropout;
use quietgpt::rng::Rng;

pub const H: f64 = 1e-6;
/// An element passes if |a − n| / (|a| + |n|) ≤ REL_TOL or |a − n| ≤ ABS_TOL·max(1, max_i |n_i|).
/// With h = 1e-6 the central difference has truncation error ~h²·f'''/6 ≲ 1e-11 here and rounding error
/// ~1e-16·|y|/h ≈ 1e-10·|y| per output moved; the absolute term is scaled by the tensor's largest
/// gradient because an element that is a cancelling sum of large terms (a matmul gradient) carries the
/// noise of those terms. Observed worst errors are printed with --nocapture (≈ 10× below the bounds or
/// better); a gradient off by 1e-4 relative or by a factor fails (see `checker_rejects_wrong_gradients`).
pub const REL_TOL: f64 = 1e-6;
pub const ABS_TOL: f64 = 1e-8;

pub fn randn(rng: &mut Rng, n: usize, std: f64) -> Vec<f64> {
    (0..n).map(|_| rng.normal() * std).collect()
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn all(n: usize) -> Vec<usize> {
    (0..n).collect()
}

/// Central differences of L = Σ g ∘ f(x) at x for the elements `which`.
pub fn numeric(x: &[f64], which: &[usize], g: &[f64], mut f: impl FnMut(&[f64]) -> Vec<f64>) -> Vec<f64> {
    let mut xp = x.to_vec();
    which
        .iter()
        .map(|&i| {
            let x0 = xp[i];
            xp[i] = x0 + H;
            let fp = f(&xp);
            xp[i] = x0 - H;
            let fm = f(&xp);
            xp[i] = x0;
            assert_eq!((fp.len(), fm.len()), (g.len(), g.len()));
            (0..g.len()).map(|k| g[k] * (fp[k] - fm[k])).sum::<f64>() / (2.0 * H)
        })
        .collect()
}

pub struct Errors {
    pub max_abs: f64,
    /// max |a − n| / (|a| + |n|) over the elements with |a| + |n| ≥ 1e-6
    pub max_rel: f64,
    pub bad: Vec<(usize, f64, f64)>,
}

/// Analytical gradient `a` (full tensor) at the elements `which` against `num` (one per element of which).
pub fn errors(a: &[f64], num: &[f64], which: &[usize]) -> Errors {
    let abs_tol = ABS_TOL * num.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let mut e = Errors { max_abs: 0.0, max_rel: 0.0, bad: Vec::new() };
    for (&i, &n) in which.iter().zip(num) {
        let (ai, d) = (a[i], (a[i] - n).abs());
        let rel = d / (ai.abs() + n.abs()).max(1e-300);
        e.max_abs = e.max_abs.max(d);
        if ai.abs() + n.abs() >= 1e-6 {
            e.max_rel = e.max_rel.max(rel);
        }
        if !(d <= abs_tol || rel <= REL_TOL) {
            e.bad.push((i, ai, n));
        }
    }
    e
}

pub fn check(what: &str, a: &[f64], num: &[f64], which: &[usize]) {
    let e = errors(a, num, which);
    let scale = num.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    println!(
        "{what:48} {:4} elements  max|grad| {scale:.2e}  max abs err {:.1e}  max rel err {:.1e}",
        which.len(),
        e.max_abs,
        e.max_rel
    );
    assert!(scale > 1e-4, "{what}: the gradient is (almost) zero everywhere; the check would be vacuous");
    assert!(
        e.bad.is_empty(),
        "{what}: {} of {} elements disagree with finite differences; first (index, analytic, numeric): {:?}",
        e.bad.len(),
        which.len(),
        &e.bad[..e.bad.len().min(6)]
    );
}

/// `acc` − `pre`: what a backward kernel added to a buffer that held `pre`.
pub fn added(acc: &[f64], pre: &[f64]) -> Vec<f64> {
    acc.iter().zip(pre).map(|(a, p)| a - p).collect()
}

// ---------------------------------------------------------------------------------------- whole model

/// A model with every parameter non-trivial: nanoGPT's init plus N(0, 0.1) noise everywhere
/// (LayerNorm weights and biases included).
pub fn random_model(cfg: ModelConfig, seed: u64) -> Gpt<f64> {
    let mut m = Gpt::<f64>::new(cfg, 2).unwrap();
    let mut rng = Rng::new(seed, 0);
    m.init(&mut rng);
    m.params.iter_mut().for_each(|p| *p += 0.1 * rng.normal());
    m
}

pub fn batch(rng: &mut Rng, b: usize, t: usize, v: usize) -> (Vec<u32>, Vec<u32>) {
    let mut idx: Vec<u32> = (0..b * t).map(|_| rng.below(v as u64) as u32).collect();
    idx[2] = idx[0];
    let tg = (0..b * t).map(|_| rng.below(v as u64) as u32).collect();
    (idx, tg)
}

/// The whole model's gradient against finite differences: ~48 parameters spread over every tensor.
pub fn model_case_cfg(cfg: ModelConfig, dropout: f32, b: usize, t: usize) {
    let (attention, bias) = (cfg.attention, cfg.bias);
    let mut m = random_model(cfg.clone(), 11 + bias as u64);
    let mut rng = Rng::new(12, 1);
    let (idx, tg) = batch(&mut rng, b, t, cfg.vocab_size);
    let drop = Dropout::new(dropout, 1234, 5, 1); // a fixed key: the loss is a function of the params
    m.zero_grad();
    let loss0 = m.forward(&idx, Some(&tg), b, t, drop).unwrap().unwrap();
    m.backward(1.0).unwrap();
    let grads = m.grads.clone();
    // ~48 parameters, spread over every tensor
    let named = m.layout.named().to_vec();
    let per = 48usize.div_ceil(named.len()).max(2);
    let mut which = Vec::new();
    for tensor in &named {
        for _ in 0..per.min(tensor.len) {
            which.push(tensor.offset + rng.below(tensor.len as u64) as usize);
        }
    }
    let params = m.params.clone();
    let num = numeric(&params, &which, &[1.0], |p| {
        m.params.copy_from_slice(p);
        vec![m.forward(&idx, Some(&tg), b, t, drop).unwrap().unwrap()]
    });
    m.params.copy_from_slice(&params);
    let tag = format!("gpt {attention} bias={bias} dropout={dropout} {b}x{t}");
    println!("{tag}: loss {loss0:.6}, {} tensors", named.len());
    check(&tag, &grads, &num, &which);
    // per tensor, so that a failure names the tensor
    for tensor in &named {
        let idx_t: Vec<usize> =
            which.iter().copied().filter(|&i| i >= tensor.offset && i < tensor.offset + tensor.len).collect();
        let num_t: Vec<f64> = which.iter().zip(&num).filter(|(i, _)| idx_t.contains(i)).map(|(_, n)| *n).collect();
        let e = errors(&grads, &num_t, &idx_t);
        assert!(e.bad.is_empty(), "{tag}: {} disagrees: {:?}", tensor.name, e.bad);
    }
    // positions ≥ T of wpe get nothing
    let wpe = m.layout.find("transformer.wpe.weight").unwrap();
    assert!(grads[wpe.offset + t * cfg.n_embd..wpe.offset + wpe.len].iter().all(|&g| g == 0.0));
    // the loss is a deterministic function: the same forward again gives the same loss
    assert_eq!(m.forward(&idx, Some(&tg), b, t, drop).unwrap().unwrap(), loss0);
}

/// Each of q, k and v gets a non-trivial part of ∂L/∂qkv (B·T, 3C): a kernel that drops one of them would
/// still pass a finite-difference check of the others.
pub fn assert_qkv_parts_nonzero(tag: &str, d: &[f64], bt: usize, c: usize) {
    for (part, name) in ["q", "k", "v"].iter().enumerate() {
        let m = (0..bt)
            .flat_map(|r| (0..c).map(move |ch| r * 3 * c + part * c + ch))
            .fold(0.0f64, |m, i| m.max(d[i].abs()));
        assert!(m > 1e-4, "{tag}: d{name} is zero");
    }
}
