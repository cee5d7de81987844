//! The vocabulary file beside train.bin/val.bin.
//!
//! quietgpt writes a readable `vocab.json`:
//!   {"tokenizer": "char", "vocab_size": 65, "itos": ["\n", " ", "!", ...]}  or
//!   {"tokenizer": "gpt2", "vocab_size": 50257}
//! and also reads nanoGPT's `meta.pkl` ({'vocab_size': int, 'itos': {int: str}, 'stoi': {str: int}}).
//! A directory with neither holds GPT-2 BPE ids, which is what nanoGPT assumes too.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::dataset::Dataset;
use super::pickle::{self, Value};
use super::tokenizer::{Tokenizer, GPT2_VOCAB_SIZE};
use crate::error::{Error, Result};
use crate::fs::write_atomic;

pub const VOCAB_FILE: &str = "vocab.json";
pub const META_PKL: &str = "meta.pkl";

/// The data's vocabulary must be the one the checkpoint at `ckpt_path` was trained on (token ids of
/// one vocabulary mean nothing to a model of another).
pub fn check_same_vocab(data: &Dataset, ckpt_path: &Path, ckpt_tokenizer: &Tokenizer) -> Result<()> {
    if data.tokenizer == *ckpt_tokenizer {
        return Ok(());
    }
    if let (Tokenizer::Char { itos: a }, Tokenizer::Char { itos: b }) = (&data.tokenizer, ckpt_tokenizer) {
        if a.len() == b.len() {
            let i = a.iter().zip(b).position(|(x, y)| x != y).expect("equal lengths, not equal: they differ");
            return Err(Error::Data(format!(
                "vocabulary mismatch: {} and {} both have {} characters, but not the same ones: token {i} is {:?} in \
                 the data and {:?} in the checkpoint",
                data.dir.display(),
                ckpt_path.display(),
                a.len(),
                a[i],
                b[i]
            )));
        }
    }
    Err(Error::Data(format!(
        "vocabulary mismatch: {} holds a {} vocabulary of {} tokens, but {} was trained on a {} vocabulary of {}",
        data.dir.display(),
        data.tokenizer.name(),
        data.tokenizer.vocab_size(),
        ckpt_path.display(),
        ckpt_tokenizer.name(),
        ckpt_tokenizer.vocab_size()
    )))
}

#[derive(Serialize, Deserialize)]
struct VocabFile {
    tokenizer: String,
    vocab_size: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    itos: Option<Vec<char>>,
}

impl Tokenizer {
    /// The vocab.json text (also embedded in checkpoints, so that a checkpoint is self-contained).
    pub fn to_json(&self) -> String {
        let file = VocabFile {
            tokenizer: self.name().to_string(),
            vocab_size: self.vocab_size(),
            itos: match self {
                Tokenizer::Char { itos } => Some(itos.clone()),
                Tokenizer::Gpt2 => None,
            },
        };
        let mut json = serde_json::to_string_pretty(&file).expect("a vocabulary always serialises");
        json.push('\n');
        json
    }

    /// Parse the text of a vocab.json.
    pub fn from_json(text: &str) -> Result<Tokenizer> {
        parse_vocab_json(text).map_err(|m| Error::Data(format!("vocabulary: {m}")))
    }

    /// Write `dir/vocab.json` (atomically).
    pub fn save(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(VOCAB_FILE), self.to_json().as_bytes())
    }

    /// The tokenizer of a prepared data directory: `vocab.json`, else nanoGPT's `meta.pkl`, else GPT-2.
    pub fn load(dir: &Path) -> Result<Tokenizer> {
        let json = dir.join(VOCAB_FILE);
        if json.exists() {
            let text = std::fs::read_to_string(&json).map_err(|e| Error::io(&json, e))?;
            return parse_vocab_json(&text).map_err(|m| Error::Data(format!("{}: {m}", json.display())));
        }
        let pkl = dir.join(META_PKL);
        if pkl.exists() {
            let bytes = std::fs::read(&pkl).map_err(|e| Error::io(&pkl, e))?;
            return tokenizer_from_meta_pkl(&bytes);
        }
        Ok(Tokenizer::gpt2())
    }
}

fn parse_vocab_json(text: &str) -> std::result::Result<Tokenizer, String> {
    let f: VocabFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    match f.tokenizer.as_str() {
        "char" => {
            let itos = f.itos.ok_or("a char tokenizer needs an \"itos\" list")?;
            if itos.len() != f.vocab_size {
                return Err(format!("vocab_size is {} but itos has {} entries", f.vocab_size, itos.len()));
            }
            check_unique(&itos)?;
            Ok(Tokenizer::Char { itos })
        }
        "gpt2" if f.vocab_size == GPT2_VOCAB_SIZE => Ok(Tokenizer::Gpt2),
        "gpt2" => Err(format!("gpt2 has vocab_size {GPT2_VOCAB_SIZE}, not {}", f.vocab_size)),
        other => Err(format!("unknown tokenizer {other:?} (expected \"char\" or \"gpt2\")")),
    }
}

fn check_unique(itos: &[char]) -> std::result::Result<(), String> {
    let mut seen = HashSet::with_capacity(itos.len());
    for (i, c) in itos.iter().enumerate() {
        if !seen.insert(*c) {
            return Err(format!("character {c:?} appears twice in itos (again at index {i})"));
        }
    }
    Ok(())
}

/// nanoGPT's char-level `meta.pkl`: `itos` must map 0..vocab_size to single characters.
pub fn tokenizer_from_meta_pkl(bytes: &[u8]) -> Result<Tokenizer> {
    let bad = |m: String| Error::Data(format!("meta.pkl: {m}"));
    let meta = pickle::parse(bytes)?;
    let Some(Value::Dict(itos_map)) = meta.get("itos") else {
        return Err(bad("no 'itos' dict (only nanoGPT's char-level meta.pkl is understood)".into()));
    };
    let vocab_size = match meta.get("vocab_size") {
        Some(Value::Int(n)) if *n >= 0 => *n as usize,
        Some(_) => return Err(bad("'vocab_size' is not a non-negative int".into())),
        None => itos_map.len(),
    };
    let mut itos: Vec<Option<char>> = vec![None; vocab_size];
    for (k, v) in itos_map {
        let (Value::Int(i), Value::Str(s)) = (k, v) else {
            return Err(bad("'itos' must map ints to strings".into()));
        };
        let slot = usize::try_from(*i).ok().and_then(|i| itos.get_mut(i));
        let slot = slot.ok_or_else(|| bad(format!("itos key {i} is outside 0..{vocab_size}")))?;
        let mut cs = s.chars();
        match (cs.next(), cs.next()) {
            (Some(c), None) => *slot = Some(c),
            _ => return Err(bad(format!("itos[{i}] = {s:?} is not a single character"))),
        }
    }
    let itos: Vec<char> = itos
        .into_iter()
        .enumerate()
        .map(|(i, c)| c.ok_or_else(|| bad(format!("itos has no entry for token {i}"))))
        .collect::<Result<_>>()?;
    check_unique(&itos).map_err(bad)?;
    Ok(Tokenizer::Char { itos })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_json_round_trip_and_checks() {
        let t = Tokenizer::char_from_text("hi \"there\"\n\u{e9}");
        let Tokenizer::Char { itos } = &t else { unreachable!() };
        let json = serde_json::to_string(&VocabFile {
            tokenizer: "char".into(),
            vocab_size: itos.len(),
            itos: Some(itos.clone()),
        })
        .unwrap();
        assert_eq!(parse_vocab_json(&json).unwrap(), t);
        assert_eq!(parse_vocab_json(r#"{"tokenizer":"gpt2","vocab_size":50257}"#).unwrap(), Tokenizer::Gpt2);
        assert!(parse_vocab_json(r#"{"tokenizer":"gpt2","vocab_size":50304}"#).is_err());
        assert!(parse_vocab_json(r#"{"tokenizer":"char","vocab_size":3,"itos":["a","b"]}"#).is_err());
        assert!(parse_vocab_json(r#"{"tokenizer":"char","vocab_size":2,"itos":["a","a"]}"#).is_err());
        assert!(parse_vocab_json(r#"{"tokenizer":"char","vocab_size":1,"itos":["ab"]}"#).is_err());
        assert!(parse_vocab_json(r#"{"tokenizer":"wordpiece","vocab_size":1}"#).is_err());
    }
}
