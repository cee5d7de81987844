//! The engines under test, and `test_engine!`, which runs one test body on each of them (as candle's
//! `test_device!`). Every engine is checked against PyTorch (the golden cases) and against the f64 CPU
//! engine, through the `Engine` trait only. A new engine (CUDA) adds its constructor here and a line to
//! the macro.

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
        }
    };
}
