//! The GPU engine, llm.c's `train_gpt2.cu` beside the CPU engine's `train_gpt2.c`: the same model and
//! step as `engine::cpu`, as a plan of GEMMs (cuBLASLt, bf16 with f32 accumulation, or f32 with TF32
//! off) and CUDA C kernels (`kernels/*.cu`, compiled at start-up by NVRTC for the card).
//!
//! - `plan`: buffers, GEMM descriptors, kernel launches — no CUDA in it.
//! - `kernel`: every kernel's name, file, C signature and launch geometry (the contract).
//! - `build`: the model's forward, backward and optimizer step as plan ops, one call per line.
//! - `replay`: the CPU executor: the plan run by the `gemm` crate and the CPU reference kernels, so that
//!   `cargo test` checks the plan against the CPU engine on a machine with no GPU.
//! - `engine`: `PlanEngine<E>`, the `Engine` over any executor (`replay::Replay` or the CUDA one).
//! - `device`: the CUDA executor (cudarc, loaded at run time: the program builds and runs without CUDA).
//! - `nvrtc`: the kernels' sources and their compilation (NVRTC, PTX and CUBIN, a disk cache).
//! - `libs`: where the CUDA libraries, headers and tools are (toolkit or Python wheels); loads them
//!   by path so that cudarc finds them without `LD_LIBRARY_PATH`.

pub mod build;
pub mod device;
pub mod engine;
pub mod kernel;
pub mod libs;
pub mod nvrtc;
pub mod plan;
pub mod replay;

use crate::Result;
use plan::{BufSpec, Op, Precision, View};

/// What runs a plan: allocates its buffers, runs its ops in order, moves data between host and device.
/// Host data is f32 (or u32 for token ids) whatever the buffer's type; the executor converts.
pub trait Executor: Send {
    /// "cuda", "replay".
    fn name(&self) -> &'static str;

    /// The precision the executor runs (`Precision::F32` for the replay).
    fn precision(&self) -> Precision;

    /// Allocates the buffers (once, before anything else), zero-filled.
    fn alloc(&mut self, bufs: &[BufSpec]) -> Result<()>;

    /// Runs the ops in order.
    fn run(&mut self, ops: &[Op]) -> Result<()>;

    /// Writes host f32 values into a view of an F32 or X buffer (rounded to X's type).
    fn upload(&mut self, view: View, data: &[f32]) -> Result<()>;

    /// Writes host token ids into a view of a U32 buffer.
    fn upload_u32(&mut self, view: View, data: &[u32]) -> Result<()>;

    /// The device's peak rate in FLOP/s in this precision, where known (for MFU).
    fn peak_flops(&self) -> Option<f64> {
        None
    }

    /// Reads a view of an F32 or X buffer into host f32 values (waits for the ops before it).
    fn download(&self, view: View, out: &mut [f32]) -> Result<()>;
}
