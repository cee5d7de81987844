//! Tokenizers: nanoGPT's character-level map and GPT-2's byte-level BPE.
//!
//! Token ids are stored on disk as u16 (as nanoGPT's `np.uint16` bins), so `encode` returns u16 and
//! refuses a vocabulary whose ids do not fit. `decode` takes u32 because that is what the model samples.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tiktoken_rs::CoreBPE;

use crate::error::{Error, Result};

/// GPT-2's vocabulary: 50,000 merges + 256 byte tokens + `<|endoftext|>` (id 50256).
pub const GPT2_VOCAB_SIZE: usize = 50257;

/// The r50k_base encoding (= GPT-2), built once from the vocabulary embedded in tiktoken-rs.
fn gpt2_bpe() -> &'static CoreBPE {
    static BPE: OnceLock<CoreBPE> = OnceLock::new();
    // The vocabulary is compiled into the binary, so failing to parse it is a build defect, not bad input.
    BPE.get_or_init(|| tiktoken_rs::r50k_base().expect("tiktoken-rs embedded r50k_base vocabulary"))
}

/// Which tokenizer `prepare` should build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    Char,
    Gpt2,
}

impl TokenizerKind {
    pub const CHOICES: &'static str = "char, gpt2";

    pub fn name(self) -> &'static str {
        match self {
            TokenizerKind::Char => "char",
            TokenizerKind::Gpt2 => "gpt2",
        }
    }
}

impl FromStr for TokenizerKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "char" => Ok(TokenizerKind::Char),
            "gpt2" => Ok(TokenizerKind::Gpt2),
            other => {
                Err(Error::Config(format!("unknown tokenizer {other:?}; choose one of: {}", TokenizerKind::CHOICES)))
            }
        }
    }
}

impl fmt::Display for TokenizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tokenizer {
    /// Character-level: token i is `itos[i]`.
    Char { itos: Vec<char> },
    /// GPT-2 BPE (tiktoken r50k_base), encoded without special tokens as nanoGPT's `encode_ordinary`.
    Gpt2,
}

impl Tokenizer {
    /// nanoGPT's `sorted(list(set(data)))`: the distinct characters, in code point order.
    pub fn char_from_text(text: &str) -> Tokenizer {
        let mut itos: Vec<char> = text.chars().collect();
        itos.sort_unstable();
        itos.dedup();
        Tokenizer::Char { itos }
    }

    pub fn gpt2() -> Tokenizer {
        Tokenizer::Gpt2
    }

    pub fn kind(&self) -> TokenizerKind {
        match self {
            Tokenizer::Char { .. } => TokenizerKind::Char,
            Tokenizer::Gpt2 => TokenizerKind::Gpt2,
        }
    }

    pub fn name(&self) -> &str {
        self.kind().name()
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Char { itos } => itos.len(),
            Tokenizer::Gpt2 => GPT2_VOCAB_SIZE,
        }
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u16>> {
        match self {
            Tokenizer::Char { itos } => {
                if itos.len() > usize::from(u16::MAX) + 1 {
                    return Err(Error::Data(format!(
                        "the character vocabulary has {} entries; token ids are stored as u16, \
                         so at most 65536 distinct characters are supported",
                        itos.len()
                    )));
                }
                let stoi: HashMap<char, u16> = itos.iter().enumerate().map(|(i, &c)| (c, i as u16)).collect();
                let mut unknown: Vec<char> = text.chars().filter(|c| !stoi.contains_key(c)).collect();
                if !unknown.is_empty() {
                    unknown.sort_unstable();
                    unknown.dedup();
                    let list: Vec<String> =
                        unknown.iter().take(10).map(|c| format!("{c:?} (U+{:04X})", *c as u32)).collect();
                    let more =
                        if unknown.len() > 10 { format!(" and {} more", unknown.len() - 10) } else { String::new() };
                    return Err(Error::Data(format!(
                        "{} character(s) not in the vocabulary of {} characters: {}{more}",
                        unknown.len(),
                        itos.len(),
                        list.join(", ")
                    )));
                }
                Ok(text.chars().map(|c| stoi[&c]).collect())
            }
            Tokenizer::Gpt2 => gpt2_bpe()
                .encode_ordinary(text)
                .into_iter()
                .map(|id| {
                    u16::try_from(id).map_err(|_| Error::Data(format!("GPT-2 token id {id} does not fit in u16")))
                })
                .collect(),
        }
    }

    /// Ids outside the vocabulary decode to U+FFFD; so do GPT-2 byte sequences that are not UTF-8
    /// (a BPE token can hold part of a multi-byte character).
    pub fn decode(&self, ids: &[u32]) -> String {
        match self {
            Tokenizer::Char { itos } => {
                ids.iter().map(|&i| itos.get(i as usize).copied().unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
            }
            Tokenizer::Gpt2 => {
                let bpe = gpt2_bpe();
                let mut bytes = Vec::with_capacity(ids.len() * 4);
                for &id in ids {
                    match bpe.decode_bytes(&[id]) {
                        Ok(b) => bytes.extend_from_slice(&b),
                        Err(_) => bytes.extend_from_slice("\u{FFFD}".as_bytes()),
                    }
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_vocab_is_sorted_unique_code_points() {
        let t = Tokenizer::char_from_text("banana\n é");
        assert_eq!(t, Tokenizer::Char { itos: vec!['\n', ' ', 'a', 'b', 'n', 'é'] });
        assert_eq!(t.vocab_size(), 6);
        let ids = t.encode("ban é").unwrap();
        assert_eq!(ids, vec![3, 2, 4, 1, 5]);
        let wide: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        assert_eq!(t.decode(&wide), "ban é");
        assert_eq!(t.decode(&[0, 99]), "\n\u{FFFD}");
    }

    #[test]
    fn unknown_char_is_named() {
        let t = Tokenizer::char_from_text("abc");
        let msg = t.encode("aé").unwrap_err().to_string();
        assert!(msg.contains("'é' (U+00E9)") && msg.contains("3 characters"), "{msg}");
    }

    #[test]
    fn gpt2_matches_known_ids() {
        let t = Tokenizer::gpt2();
        // "Hello world" in GPT-2 BPE.
        assert_eq!(t.encode("Hello world").unwrap(), vec![15496, 995]);
        assert_eq!(t.decode(&[15496, 995]), "Hello world");
        assert_eq!(t.decode(&[50256]), "<|endoftext|>");
        assert_eq!(t.decode(&[60000]), "\u{FFFD}");
        assert_eq!(t.vocab_size(), 50257);
    }

    #[test]
    fn kind_parses() {
        assert_eq!("char".parse::<TokenizerKind>().unwrap(), TokenizerKind::Char);
        assert_eq!("gpt2".parse::<TokenizerKind>().unwrap(), TokenizerKind::Gpt2);
        let e = "bpe".parse::<TokenizerKind>().unwrap_err();
        assert!(matches!(e, Error::Config(ref m) if m.contains("char, gpt2")), "{e}");
    }
}
