//! TEMPORARY: the stated interface of `engine::cuda::nvrtc` (written by the kernels' helper), so that
//! the executor builds before it lands. Deleted when main has the real module.

use super::super::plan::Precision;
use crate::{Error, Result};

/// One `.cu` file compiled for one architecture.
#[allow(dead_code)]
pub struct Module {
    pub file: String,
    pub cubin: Vec<u8>,
    pub ptx: String,
    pub log: String,
}

pub fn compile(file: &str, precision: Precision, arch: &str) -> Result<Module> {
    Err(Error::Device(format!(
        "{file} ({}, {arch}): this branch has no NVRTC compiler yet (engine::cuda::nvrtc)",
        precision.name()
    )))
}
