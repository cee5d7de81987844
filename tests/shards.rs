//! The batch runs as one shard per worker thread (`model::shard`). The same model and batch on pools of
//! 1, 2 and 3 threads must give the same loss, logits and gradients, up to rounding: the GEMM crate
//! blocks a product differently for other shapes and thread counts, and the gradients are summed over
//! shards. Dropout masks are keyed by place in the whole batch, so they must not change either (a
//! different mask would change the loss far beyond rounding). Shapes are chosen to cut unevenly (5 sequences over 3 shards:
//! 1, 2, 2) with T shorter than block_size, for every attention variant, with dropout and biases.

use quietgpt::config::{AttentionKind, ModelConfig};
use quietgpt::engine::cpu::Gpt;
use quietgpt::engine::dropout::Dropout;
use quietgpt::rng::Rng;

struct Run {
    loss: f64,
    logits: Vec<f64>,
    grads: Vec<f64>,
}

fn run(threads: usize, cfg: &ModelConfig, b: usize, t: usize, dropout: f32) -> Run {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        // f64: the shard logic is the same as f32's, and the rounding of the gradient sum stays far
        // below the tolerance. Every parameter non-trivial, as in the finite-difference checks.
        let mut m = Gpt::<f64>::new(cfg.clone(), b).unwrap();
        let mut rng = Rng::new(3, 3);
        m.init(&mut rng);
        m.params.iter_mut().for_each(|p| *p += 0.1 * rng.normal());
        let idx: Vec<u32> = (0..b * t).map(|_| rng.below(cfg.vocab_size as u64) as u32).collect();
        let tg: Vec<u32> = (0..b * t).map(|_| rng.below(cfg.vocab_size as u64) as u32).collect();
        let drop = Dropout::new(dropout, 99, 4, 0);
        m.zero_grad();
        // two micro-steps accumulate, as in training
        let loss = m.forward(&idx, Some(&tg), b, t, drop).unwrap().unwrap();
        let logits = m.logits().to_vec(); // (backward writes ∂L/∂logits over them)
        m.backward(0.5).unwrap();
        m.forward(&idx, Some(&tg), b, t, drop).unwrap();
        m.backward(0.5).unwrap();
        Run { loss, logits, grads: m.grads.clone() }
    })
}

#[test]
fn any_number_of_shards_gives_the_same_model() {
    let (b, t) = (5, 5);
    for kind in AttentionKind::ALL {
        for (bias, dropout) in [(true, 0.0), (false, 0.3)] {
            let cfg = ModelConfig::new(2, 2, 8, 7, 11, bias, 0.0, kind);
            let one = run(1, &cfg, b, t, dropout);
            assert!(one.grads.iter().any(|&g| g != 0.0));
            for threads in [2, 3] {
                let many = run(threads, &cfg, b, t, dropout);
                let tag = format!("{kind} bias={bias} dropout={dropout} on {threads} threads");
                assert!((many.loss - one.loss).abs() <= 1e-14, "{tag}: loss {} vs {}", many.loss, one.loss);
                let close = |what: &str, x: &[f64], y: &[f64]| {
                    let scale = y.iter().fold(0.0f64, |a, &g| a.max(g.abs()));
                    let err = x.iter().zip(y).fold(0.0f64, |a, (p, q)| a.max((p - q).abs()));
                    assert!(
                        x.len() == y.len() && err <= 1e-13 * scale,
                        "{tag}: {what} differ by {err:e} (max |x| {scale:e})"
                    );
                };
                close("logits", &many.logits, &one.logits);
                close("gradients", &many.grads, &one.grads);
            }
        }
    }
}

/// Backward uses up its forward (it overwrites c_fc's output with GELU's derivative): a second backward
/// without a new forward is an error, not wrong gradients; after a new forward it works again.
#[test]
fn one_backward_per_forward() {
    let cfg = ModelConfig::new(2, 2, 8, 7, 11, true, 0.0, AttentionKind::Softmax);
    let mut m = Gpt::<f32>::new(cfg, 2).unwrap();
    m.init(&mut Rng::new(1, 1));
    let (x, y) = ([1u32, 2, 3, 4, 5, 6], [2u32, 3, 4, 5, 6, 7]);
    m.forward(&x, Some(&y), 2, 3, None).unwrap();
    m.backward(1.0).unwrap();
    let err = m.backward(1.0).unwrap_err().to_string();
    assert!(err.contains("one forward per backward"), "{err}");
    m.forward(&x, Some(&y), 2, 3, None).unwrap();
    m.backward(1.0).unwrap();
}
