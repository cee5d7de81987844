//! The CPU engine, the reference: one file per kernel (forward and backward side by side, same names),
//! the GPT that strings them (`gpt`: buffers and entry points; `pass`: the forward and backward pass,
//! one kernel call per line), and `CpuEngine`, its `Engine` implementation with the optimizers (AdamW, SGD) inside.

pub mod acts;
pub mod adamw;
pub mod attention;
pub mod attention_fused;
pub mod attention_gate;
pub mod attention_gemm;
pub mod attention_rows;
pub mod crossentropy;
pub mod encoder;
pub mod engine;
pub mod flops;
pub mod gelu;
pub mod gpt;
pub mod layernorm;
pub mod matmul;
pub mod memory;
mod pass;
pub mod probe;
pub mod real;
pub mod relu;
pub mod sgd;
pub mod shard;
pub mod simd;
pub mod weights;

pub use engine::CpuEngine;
pub use gpt::Gpt;
pub use probe::{Linear, Point, Probe};
pub use real::Real;
