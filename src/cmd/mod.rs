//! One file per subcommand. Each parses its arguments, calls the library and adds context to errors.

pub mod analyze;
pub mod args;
pub mod bench;
pub mod experiment;
pub mod export;
pub mod gpu_check;
pub mod out;
pub mod prepare;
pub mod quantize;
pub mod sample;
pub mod train;
