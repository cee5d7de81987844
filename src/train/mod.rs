//! Training: the optimizer, the learning-rate schedule, checkpoints and the loop.

pub mod adamw;
