//! Data: tokenizers, `prepare` (text → train.bin / val.bin / vocab.json, as nanoGPT's prepare.py; GPT-2
//! BPE streamed over a file of any size), `Dataset` (the prepared bins, memory-mapped as `Tokens`, with
//! nanoGPT's random batches and fixed eval windows), and the synthetic Bigram-Backcopy task (`backcopy`)
//! behind the same `Dataset`.

mod backcopy;
mod dataset;
mod pickle;
mod prepare;
mod stream;
mod tokenizer;
mod tokens;
mod vocab;

pub use backcopy::{Backcopy, TaskLoss, DEFAULT_TRIGGERS, TRAIN_WINDOWS, VAL_SEQUENCES};
pub use dataset::{Dataset, Split};
pub use prepare::{
    input_path, prepare, prepare_file, read_input, tokenize, PrepareReport, INPUT_TXT, TINY_SHAKESPEARE,
    TINY_SHAKESPEARE_URL, TRAIN_BIN, VAL_BIN,
};
pub use tokenizer::{Tokenizer, TokenizerKind, GPT2_VOCAB_SIZE};
pub use tokens::Tokens;

/// 64-bit FNV-1a of a byte stream: the fingerprint of data (prepared tokens, the backcopy task's table).
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}
pub use vocab::{check_same_vocab, META_PKL, VOCAB_FILE};
