//! Writing to stdout without dying when it closes (`quietgpt train | head -2`): `println!` panics on a
//! broken pipe, which would kill a training run before its first checkpoint. `say!` and `show!` write
//! and flush; once a write fails, stdout counts as closed and everything after is dropped. Training goes
//! on (its checkpoints and metrics.jsonl are its product); the commands whose only product is their
//! output (sample, config, presets, …) stop early and exit 0 when the reader has gone (see `finish`).

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicU8, Ordering};

const OPEN: u8 = 0;
/// The reader went away (EPIPE): a normal end for `… | head`.
const GONE: u8 = 1;
/// Another write error (a full disk, …): worth an error where the output is the product.
const FAILED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(OPEN);
static ERROR: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Writes and flushes; false once stdout is closed (then nothing is written).
#[must_use = "false means stdout is closed"]
pub fn write(args: fmt::Arguments<'_>) -> bool {
    if STATE.load(Ordering::Relaxed) != OPEN {
        return false;
    }
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) => {
            let state = if e.kind() == ErrorKind::BrokenPipe { GONE } else { FAILED };
            STATE.store(state, Ordering::Relaxed);
            if let Ok(mut slot) = ERROR.lock() {
                *slot = Some(e.to_string());
            }
            false
        }
    }
}

/// For a command whose product is its output, at its end: Ok when every write went through or the reader
/// went away (`| head`); an error when a write failed otherwise (the output is incomplete).
pub fn finish() -> anyhow::Result<()> {
    if STATE.load(Ordering::Relaxed) == FAILED {
        let e = ERROR.lock().ok().and_then(|e| e.clone()).unwrap_or_default();
        anyhow::bail!("cannot write to stdout: {e}; the output is incomplete");
    }
    Ok(())
}

/// `print!` that survives a closed stdout (see `write`, which also tells whether it still is open).
macro_rules! show {
    ($($arg:tt)*) => {{
        let _ = $crate::cmd::out::write(format_args!($($arg)*));
    }};
}

/// `println!` that survives a closed stdout.
macro_rules! say {
    () => {{
        let _ = $crate::cmd::out::write(format_args!("\n"));
    }};
    ($($arg:tt)*) => {{
        let _ = $crate::cmd::out::write(format_args!("{}\n", format_args!($($arg)*)));
    }};
}

pub(crate) use {say, show};
