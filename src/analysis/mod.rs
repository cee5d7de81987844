//! Analysis of trained models: activation statistics, outliers and post-training quantization.

pub mod analyze;
pub mod plot;
pub mod quant;
pub mod quantize_eval;
pub mod stats;
