//! Turning a text file into train.bin / val.bin / vocab.json, as nanoGPT's prepare.py scripts do:
//! the first 90% of the characters train, the rest validate; ids are little-endian u16. `prepare` works on
//! text in memory; `prepare_file` streams a GPT-2 BPE file of any size (`stream`) with the same result.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::stream::prepare_gpt2_file;
use super::tokenizer::{Tokenizer, TokenizerKind};
use crate::error::{Error, Result};
use crate::fs::{tmp_path, write_atomic};

pub const TRAIN_BIN: &str = "train.bin";
pub const VAL_BIN: &str = "val.bin";
pub const INPUT_TXT: &str = "input.txt";
pub const TINY_SHAKESPEARE_URL: &str =
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrepareReport {
    pub vocab_size: usize,
    pub train_tokens: usize,
    pub val_tokens: usize,
}

/// Split, tokenize and write `out_dir/{train.bin, val.bin, vocab.json}` (created if needed).
pub fn prepare(text: &str, out_dir: &Path, kind: TokenizerKind) -> Result<PrepareReport> {
    let (tok, train_ids, val_ids) = tokenize(text, kind)?;
    fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    write_atomic(&out_dir.join(TRAIN_BIN), &to_le_bytes(&train_ids))?;
    write_atomic(&out_dir.join(VAL_BIN), &to_le_bytes(&val_ids))?;
    tok.save(out_dir)?;
    Ok(PrepareReport { vocab_size: tok.vocab_size(), train_tokens: train_ids.len(), val_tokens: val_ids.len() })
}

/// `prepare` of the text file `input`: GPT-2 BPE streamed in chunks of about `chunk_bytes` (None: chosen
/// from the file's size, at most 32 MiB) tokenized in parallel, so memory stays bounded for any size of
/// file; char-level in memory (its vocabulary is the whole text's). The files are those of `prepare`, byte
/// for byte.
pub fn prepare_file(
    input: &Path,
    out_dir: &Path,
    kind: TokenizerKind,
    chunk_bytes: Option<usize>,
) -> Result<PrepareReport> {
    match kind {
        TokenizerKind::Gpt2 => prepare_gpt2_file(input, out_dir, chunk_bytes),
        TokenizerKind::Char => prepare(&read_text(input)?, out_dir, kind),
    }
}

/// What `prepare` writes, in memory: the tokenizer and the train and val ids.
pub fn tokenize(text: &str, kind: TokenizerKind) -> Result<(Tokenizer, Vec<u16>, Vec<u16>)> {
    if text.is_empty() {
        return Err(Error::Data("input text is empty; there is nothing to train on".into()));
    }
    let (train, val) = split_90_10(text);
    // Char-level: the vocabulary comes from the whole text, so val never holds an unknown character.
    let tok = match kind {
        TokenizerKind::Char => Tokenizer::char_from_text(text),
        TokenizerKind::Gpt2 => Tokenizer::gpt2(),
    };
    let train_ids = tok.encode(train)?;
    let val_ids = tok.encode(val)?;
    Ok((tok, train_ids, val_ids))
}

/// nanoGPT's `data[:int(n*0.9)]`, `data[int(n*0.9):]` with n counted in code points (Python `len`),
/// the product taken in f64 and truncated as Python's `int` does.
fn split_90_10(text: &str) -> (&str, &str) {
    let n_train = train_chars(text.chars().count() as u64) as usize;
    let at = text.char_indices().nth(n_train).map_or(text.len(), |(b, _)| b);
    text.split_at(at)
}

/// Characters of train among `n`: Python's `int(n * 0.9)`.
pub(super) fn train_chars(n: u64) -> u64 {
    (n as f64 * 0.9) as u64
}

pub(super) fn to_le_bytes(ids: &[u16]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_le_bytes()).collect()
}

/// Tiny Shakespeare (Karpathy's char-rnn `input.txt`, public domain), built into the binary from
/// `assets/tinyshakespeare.txt` so that `prepare` works offline and from an installed binary.
pub const TINY_SHAKESPEARE: &str = include_str!("../../assets/tinyshakespeare.txt");

/// The training text: `path` if given, else `cache_dir/input.txt`. When that is not cached yet,
/// Tiny Shakespeare is downloaded there; if the download fails (offline), the copy built into the
/// binary (`TINY_SHAKESPEARE`, the same file) is written there instead. Says on stderr which it used.
pub fn read_input(path: Option<&Path>, cache_dir: &Path) -> Result<String> {
    read_text(&input_path(path, cache_dir)?)
}

/// `read_input`'s file, without reading it: `path` if given, else `cache_dir/input.txt`, fetched or
/// written from the built-in copy as `read_input` says.
pub fn input_path(path: Option<&Path>, cache_dir: &Path) -> Result<PathBuf> {
    input_path_from(path, cache_dir, TINY_SHAKESPEARE_URL)
}

fn input_path_from(path: Option<&Path>, cache_dir: &Path, url: &str) -> Result<PathBuf> {
    let Some(p) = path else {
        let cached = cache_dir.join(INPUT_TXT);
        if cached.exists() {
            eprintln!("using the cached input text {}", cached.display());
        } else {
            match download(url, &cached) {
                Ok(()) => eprintln!("downloaded Tiny Shakespeare from {url} to {}", cached.display()),
                Err(e) => {
                    let why = match &e {
                        Error::Data(m) => m.clone(),
                        other => other.to_string(),
                    };
                    eprintln!(
                        "note: no download ({why})\nusing the copy of Tiny Shakespeare built into quietgpt (written to {})",
                        cached.display()
                    );
                    if let Some(dir) = cached.parent() {
                        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                    }
                    write_atomic(&cached, TINY_SHAKESPEARE.as_bytes())?;
                }
            }
        }
        return Ok(cached);
    };
    Ok(p.to_path_buf())
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        Error::Data(format!(
            "{}: not valid UTF-8 (first bad byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Fetch `url` into `dest` with curl (no HTTP stack in the binary); atomic like `write_atomic`.
fn download(url: &str, dest: &Path) -> Result<()> {
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = tmp_path(dest);
    let out = Command::new("curl")
        .args(["-fsSL", "--connect-timeout", "10", "--max-time", "60", "-o"])
        .arg(&tmp)
        .arg(url)
        .stdin(Stdio::null())
        .output();
    let why = match out {
        Err(e) => Some(format!("could not run curl: {e}")),
        Ok(o) if !o.status.success() => {
            let msg = String::from_utf8_lossy(&o.stderr).trim().to_string();
            Some(if msg.is_empty() { format!("curl exited with {}", o.status) } else { msg })
        }
        Ok(_) => None,
    };
    if let Some(why) = why {
        let _ = fs::remove_file(&tmp);
        return Err(Error::Data(format!(
            "downloading {url} failed ({why}); is the machine offline? \
             Pass `--input FILE` with a local text file instead"
        )));
    }
    fs::rename(&tmp, dest).map_err(|e| Error::io(dest, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_counts_code_points() {
        // 10 code points, 13 bytes: train is the first 9 characters.
        let (a, b) = split_90_10("ééé4567890");
        assert_eq!((a, b), ("ééé456789", "0"));
        assert_eq!(split_90_10("x"), ("", "x"));
    }

    #[test]
    fn failed_download_says_what_to_do() {
        let dir = std::env::temp_dir().join(format!("quietgpt-dl-{}", std::process::id()));
        let dest = dir.join(INPUT_TXT);
        // Port 9 on loopback: refused at once, so no network is touched and the test stays fast.
        let e = download("http://127.0.0.1:9/input.txt", &dest).unwrap_err().to_string();
        assert!(e.contains("--input") && e.contains("offline"), "{e}");
        assert!(!dest.exists() && !tmp_path(&dest).exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn offline_falls_back_to_the_built_in_copy() {
        let dir = std::env::temp_dir().join(format!("quietgpt-offline-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        // Port 9 on loopback refuses at once: the download fails as it would offline.
        let text = read_text(&input_path_from(None, &dir, "http://127.0.0.1:9/input.txt").unwrap()).unwrap();
        assert_eq!(text, TINY_SHAKESPEARE);
        assert_eq!(text.len(), 1_115_394);
        assert!(text.starts_with("First Citizen:"));
        // It was cached: the next call reads the file.
        assert_eq!(fs::read_to_string(dir.join(INPUT_TXT)).unwrap(), TINY_SHAKESPEARE);
        let _ = fs::remove_dir_all(&dir);
    }
}
