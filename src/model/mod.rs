//! The model: one file per kernel (forward and backward side by side), and the GPT that strings them.

pub mod acts;
pub mod adamw;
pub mod attention;
pub mod attention_fused;
pub mod attention_gate;
pub mod attention_gemm;
pub mod cpu;
pub mod crossentropy;
pub mod dropout;
pub mod encoder;
pub mod flops;
pub mod gelu;
pub mod gpt;
pub mod layernorm;
pub mod matmul;
pub mod params;
mod pass;
pub mod probe;
pub mod profile;
pub mod real;
pub mod shard;
pub mod simd;
pub mod weights;

pub use cpu::CpuEngine;
pub use gpt::Gpt;
pub use probe::{Linear, Point, Probe};
pub use real::Real;
