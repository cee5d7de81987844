//! One file per subcommand. Each parses its arguments, calls the library and adds context to errors.

pub mod args;
pub mod prepare;
pub mod sample;
pub mod train;
