//! The experiment presets: the config preset of the runs (`configs/experiment*.toml`) and evaluation sizes.

/// A named set of defaults: the config preset of the runs and evaluation sizes.
pub struct Preset {
    pub name: &'static str,
    /// The config preset (`configs/<name>.toml`) the runs start from, before the user's overrides.
    pub config: &'static str,
    pub seeds: usize,
    pub analyze_windows: usize,
    /// Val windows for quantize-eval (0 = all).
    pub quant_windows: usize,
    pub calib_windows: usize,
    pub hist_windows: usize,
    /// The arms compared when `--variants` is not given.
    pub arms: &'static str,
    /// Analyse every this many iterations when `--analyze_every` is not given (0 = the final model only).
    pub analyze_every: usize,
}

/// The default experiment: 2 variants × 3 seeds, about half an hour on a 2-core CPU (a run is
/// dominated by its 3000 training iterations; analysis and quantize-eval add a few seconds).
///
/// Why this shape. Within the budget, depth and training length are what outliers need: they are
/// absent at initialisation and grow as attention heads learn to "do nothing" (Bondarenko et al.
/// 2023), and the residual stream accumulates them block after block. So the budget goes to 6 layers
/// trained for 3000 iterations (2.3M tokens, about 2.3 epochs of Tiny Shakespeare; val loss ≈ 1.8)
/// rather than to width: 6/6/192 would fit only ~1700 iterations. Block 64 keeps attention cheap;
/// dropout 0 (as nanoGPT's CPU recipe), so that the only randomness is the initialisation and the
/// data order, both shared by a seed's runs. Quantize-eval over all val windows would take ~57 s per
/// run: capped at 256 windows (16k tokens), the gap is still measured on the same tokens for every
/// variant and seed.
pub const DEFAULT: Preset = Preset {
    name: "default",
    config: "experiment",
    seeds: 3,
    analyze_windows: 32,
    quant_windows: 256,
    calib_windows: 64,
    hist_windows: 8,
    arms: "softmax,quiet",
    analyze_every: 0,
};

/// `--quick`: a CI smoke test of the whole pipeline (2 layers of n_embd 32, 100 iterations, 2 seeds,
/// a handful of windows); a few seconds on 2 cores. The numbers it reports mean nothing.
pub const QUICK: Preset = Preset {
    name: "quick",
    config: "experiment-quick",
    seeds: 2,
    analyze_windows: 8,
    quant_windows: 16,
    calib_windows: 8,
    hist_windows: 4,
    arms: "softmax,quiet",
    analyze_every: 0,
};

/// The arms of the Bigram-Backcopy comparison: every normaliser and gate, and the two controls of Guo et
/// al. (ReLU attention; SGD with momentum instead of AdamW, at a learning rate that learns the copy rule
/// within the run: 0.1; Guo et al.'s 0.03 was for 10k steps and had not learned it after 400 of ours).
pub const BB_ARMS: &str =
    "softmax,quiet,sink,softpick,sigmoid,gated,outgate,clipped,relu,sgd:optimizer=sgd+learning_rate=0.1";

/// `--preset bb`: every attention variant and both controls on Guo et al.'s Bigram-Backcopy task, 3
/// seeds, analysed every 250 iterations (sink, first-position norm, massive activations over training).
///
/// Why this shape. The task is the documented route to attention sinks and massive activations in small
/// models (Guo et al. 2024, arXiv 2410.13835): their 3-layer, 1-head model (ReLU MLP, untied output,
/// PyTorch's init, AdamW betas 0.9/0.99, constant lr, no clipping) at width 256, T 256, batch 512 for
/// 10k steps is ~20 s/step on 2 cores. Scaled to width 64, T 64, batch 32 (about 60 ms/step), the copy
/// rule is learned within ~500 steps and the last layers' heads sink on BOS (pilot runs, README); 1500
/// steps × 10 arms × 3 seeds fits in about an hour. The learning rate is 1e-3 (Guo: 3e-4) because the
/// outliers at ordinary positions grow much faster with it.
pub const BB: Preset = Preset {
    name: "bb",
    config: "experiment-bb",
    seeds: 3,
    analyze_windows: 32,
    quant_windows: 256,
    calib_windows: 64,
    hist_windows: 8,
    arms: BB_ARMS,
    analyze_every: 250,
};

/// `--preset bb --quick`: the Bigram-Backcopy comparison as a CI smoke test (2 layers of n_embd 32, 60
/// iterations, every arm, 1 seed); numbers mean nothing.
pub const BB_QUICK: Preset = Preset {
    name: "bb-quick",
    config: "experiment-bb-quick",
    seeds: 1,
    analyze_windows: 4,
    quant_windows: 8,
    calib_windows: 4,
    hist_windows: 2,
    arms: BB_ARMS,
    analyze_every: 30,
};
