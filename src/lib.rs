//! quietgpt: nanoGPT in Rust, with the attention normalisation behind one switch.
//!
//! The layout follows the data flow: `data` (tokenizers, prepare, batches) → `engine` (the `Engine` trait,
//! the whole training step; `engine::cpu`, the reference engine: kernels, forward and backward side by
//! side) → `train` (the loop, schedule, checkpoints, bench) → `sample` → `analysis` (statistics,
//! quantization, experiments, reports; on the CPU engine). The library holds no CLI code; `src/main.rs`
//! and `src/cmd/` are a thin front end.

pub mod analysis;
pub mod config;
pub mod data;
pub mod engine;
pub mod error;
pub mod fs;
pub mod hf;
pub mod rng;
pub mod sample;
pub mod train;

pub use error::{Error, Result};
