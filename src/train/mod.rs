//! Training: the optimizer, the learning-rate schedule, checkpoints and the loop.

pub mod bench;
pub mod checkpoint;
pub mod schedule;
pub mod trainer;
