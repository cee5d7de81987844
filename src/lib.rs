//! quietgpt: nanoGPT in Rust, with the attention normalisation behind one switch.
//!
//! The layout follows the data flow: `data` (tokenizers, prepare, batches) → `model` (kernels and the
//! GPT that strings them together) → `train` (AdamW, schedule, checkpoints, the loop) → `sample`.
//! The library holds no CLI code; `src/main.rs` is a thin front end.

pub mod analysis;
pub mod config;
pub mod data;
pub mod engine;
pub mod error;
pub mod fs;
pub mod model;
pub mod rng;
pub mod sample;
pub mod train;

pub use error::{Error, Result};
