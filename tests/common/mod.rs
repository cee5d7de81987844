//! Shared test helpers: where the golden files are and how to read them.
#![allow(dead_code)]

pub mod attn;
pub mod cli;
pub mod engines;
pub mod fd;
pub mod golden;

use quietgpt::config::AttentionKind;
use quietgpt::engine::cpu::attention::Variant;
use quietgpt::engine::cpu::Real;
use std::path::PathBuf;

/// Attention variants built by hand for the kernel tests (the model makes its own with `Variant::of`).
pub trait VariantExt<'a, F>: Sized {
    /// `kind` with ζ = 1, γ = 0 and no sink logits (enough for every kind but `Sink`).
    fn new(kind: AttentionKind) -> Self;
    fn with_sink(self, sink: &'a [F]) -> Self;
    fn with_clip(self, zeta: F, gamma: F) -> Self;
}

impl<'a, F: Real> VariantExt<'a, F> for Variant<'a, F> {
    fn new(kind: AttentionKind) -> Self {
        Variant { kind, sink: &[], zeta: F::ONE, gamma: F::ZERO }
    }
    fn with_sink(self, sink: &'a [F]) -> Self {
        Variant { sink, ..self }
    }
    fn with_clip(self, zeta: F, gamma: F) -> Self {
        Variant { zeta, gamma, ..self }
    }
}

/// `$QUIETGPT_GOLDEN` if set, else the golden cases kept in the repository, `tests/golden`
/// (made by `scripts/make_golden.py`; see `tests/golden/README.md`).
pub fn golden_dir() -> PathBuf {
    match std::env::var_os("QUIETGPT_GOLDEN") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden")),
    }
}

/// Tiny Shakespeare, kept in the repository (`assets/tinyshakespeare.txt`, public domain).
pub const SHAKESPEARE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/tinyshakespeare.txt");

pub fn shakespeare() -> PathBuf {
    PathBuf::from(SHAKESPEARE)
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("quietgpt-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// max |a − b|
pub fn max_abs_diff<A: Copy + Into<f64>, B: Copy + Into<f64>>(a: &[A], b: &[B]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(&x, &y)| (x.into() - y.into()).abs()).fold(0.0, f64::max)
}

pub fn max_abs<A: Copy + Into<f64>>(a: &[A]) -> f64 {
    a.iter().map(|&x| x.into().abs()).fold(0.0, f64::max)
}

/// Train `cfg` to the end; returns the trainer and the val loss of every evaluation, in order.
pub fn train_collecting_val_losses(cfg: quietgpt::config::Config) -> (quietgpt::train::trainer::Trainer, Vec<f64>) {
    use quietgpt::train::trainer::{Event, Trainer};
    let mut tr = Trainer::new(cfg).unwrap();
    let mut evals = vec![];
    tr.run(&mut |e| {
        if let Event::Eval { val_loss, .. } = e {
            evals.push(*val_loss)
        }
    })
    .unwrap();
    (tr, evals)
}
