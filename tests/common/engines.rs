//! The engines under test, and `test_engine!`, which runs one test body on each of them (as candle's
//! `test_device!`). Every engine is checked against PyTorch (the golden cases) and against the f64 CPU
//! engine, through the `Engine` trait only. The CUDA engine is here as its plan on the CPU replay executor
//! (`cuda_plan_replay`); on a GPU, `quietgpt gpu-check` holds the CUDA executor to that replay.

use quietgpt::config::ModelConfig;
use quietgpt::engine::cpu::CpuEngine;
use quietgpt::engine::Engine;

/// Makes an engine for a model and a largest batch, all parameters zero.
pub type MakeEngine = fn(ModelConfig, usize) -> Box<dyn Engine>;

/// The CPU engine in f32, as training runs it (fused attention kernel).
pub fn cpu(config: ModelConfig, max_batch: usize) -> Box<dyn Engine> {
    Box::new(CpuEngine::<f32>::new(config, max_batch).unwrap())
}

/// The CPU engine in f32 with the reference attention kernel (stores the probabilities).
pub fn cpu_reference_attention(config: ModelConfig, max_batch: usize) -> Box<dyn Engine> {
    let mut e = CpuEngine::<f32>::new(config, max_batch).unwrap();
    e.model_mut().set_store_attention(true);
    Box::new(e)
}

/// The f64 CPU engine: the reference every other engine is held to.
pub fn cpu_f64(config: ModelConfig, max_batch: usize) -> Box<dyn Engine> {
    Box::new(CpuEngine::<f64>::new(config, max_batch).unwrap())
}

/// The GPU engine's plan (`engine::cuda`), run on the CPU by the replay executor: every GEMM descriptor
/// and kernel launch of a CUDA step, through the `gemm` crate and the CPU reference kernels.
pub fn cuda_plan_replay(config: ModelConfig, max_batch: usize) -> Box<dyn Engine> {
    use quietgpt::engine::cuda::{engine::PlanEngine, replay::Replay};
    Box::new(PlanEngine::new(config, max_batch, Replay::new()).unwrap())
}

/// `test_engine!(body, name)`: a module `name` with one test per engine present, each calling
/// `body(make: MakeEngine)`.
#[macro_export]
macro_rules! test_engine {
    ($body:ident, $name:ident) => {
        mod $name {
            #[test]
            fn cpu() {
                super::$body($crate::common::engines::cpu)
            }

            #[test]
            fn cpu_reference_attention() {
                super::$body($crate::common::engines::cpu_reference_attention)
            }

            #[test]
            fn cuda_plan_replay() {
                super::$body($crate::common::engines::cuda_plan_replay)
            }
        }
    };
}
