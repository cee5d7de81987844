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
};
