//! Analysis of trained models: activation statistics, outliers and post-training quantization.

pub mod analyze;
pub mod experiment;
pub mod params;
pub mod plot;
pub mod quant;
pub mod quantize_eval;
pub mod record;
pub mod report;
pub mod stats;
pub mod ttest;
pub mod windows;
