//! The library's error type: a small enum, each variant a kind of failure the caller can act on.
//! The CLI adds context (which file, which flag) with anyhow.

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// An I/O failure, with the path it concerns.
    Io { path: String, source: std::io::Error },
    /// A config value or combination that cannot work (n_embd % n_head != 0, unknown key, ...).
    Config(String),
    /// Input data that cannot be used (empty text, data shorter than block_size, unknown character, ...).
    Data(String),
    /// A checkpoint that is missing, truncated, corrupt or does not fit the model.
    Checkpoint(String),
    /// Training diverged: a non-finite loss or gradient norm (the message says where and what to do).
    Diverged(String),
    /// Another process holds the output directory's lock (the message names it).
    Locked(String),
    /// The GPU side: no GPU, a CUDA library that cannot be found or loaded, a kernel that does not
    /// compile (the message names the library or file and the fix).
    Device(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{path}: {source}"),
            Error::Config(m) => write!(f, "config error: {m}"),
            Error::Data(m) => write!(f, "data error: {m}"),
            Error::Checkpoint(m) => write!(f, "checkpoint error: {m}"),
            Error::Diverged(m) => write!(f, "training diverged: {m}"),
            Error::Locked(m) => write!(f, "output directory locked: {m}"),
            Error::Device(m) => write!(f, "device error: {m}"),
        }
    }
}

impl std::error::Error for Error {
    // The I/O cause is already part of the message (Display), so it is not repeated as a source:
    // anyhow's "{:#}" would print it twice.
}
