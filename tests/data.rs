//! The data module against nanoGPT's numbers on Tiny Shakespeare, plus its error paths.

use std::path::{Path, PathBuf};

use quietgpt::data::{prepare, read_input, Dataset, Split, Tokenizer, TokenizerKind};
use quietgpt::rng::Rng;
use quietgpt::Error;

const SHAKESPEARE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/tinyshakespeare.txt");

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("quietgpt-data-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn shakespeare() -> String {
    std::fs::read_to_string(SHAKESPEARE).expect("assets/tinyshakespeare.txt")
}

fn read_u16_le(path: &Path) -> Vec<u16> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(b.len() % 2, 0);
    b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
}

fn wide(ids: &[u16]) -> Vec<u32> {
    ids.iter().map(|&i| i as u32).collect()
}

#[test]
fn char_level_matches_nanogpt() {
    let text = shakespeare();
    let dir = TempDir::new("char");
    let out = dir.path().join("shakespeare_char"); // created by prepare
    let r = prepare(&text, &out, TokenizerKind::Char).unwrap();
    assert_eq!((r.vocab_size, r.train_tokens, r.val_tokens), (65, 1_003_854, 111_540));

    // Bins are little-endian u16; vocab.json is readable and complete.
    let train = read_u16_le(&out.join("train.bin"));
    let val = read_u16_le(&out.join("val.bin"));
    assert_eq!((train.len(), val.len()), (1_003_854, 111_540));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("vocab.json")).unwrap()).unwrap();
    assert_eq!(v["tokenizer"], "char");
    assert_eq!(v["vocab_size"], 65);
    let itos: Vec<String> = serde_json::from_value(v["itos"].clone()).unwrap();
    assert_eq!(itos.concat(), "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
    assert_eq!(train[0], itos.iter().position(|s| s == "F").unwrap() as u16); // "First Citizen:"
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Dataset::open reads the same ids back, and decoding restores the text.
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.tokenizer.name(), "char");
    assert_eq!(ds.tokenizer.vocab_size(), 65);
    assert_eq!((ds.train.as_slice(), ds.val.as_slice()), (train.as_slice(), val.as_slice()));
    let decoded = ds.tokenizer.decode(&wide(&ds.train)) + &ds.tokenizer.decode(&wide(&ds.val));
    assert_eq!(decoded, text);
    assert_eq!(ds.tokenizer.encode(&decoded[..1000]).unwrap(), ds.train[..1000]);
}

#[test]
fn gpt2_matches_nanogpt() {
    let text = shakespeare();
    let dir = TempDir::new("gpt2");
    let r = prepare(&text, dir.path(), TokenizerKind::Gpt2).unwrap();
    assert_eq!((r.vocab_size, r.train_tokens, r.val_tokens), (50257, 301_966, 36_059));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("vocab.json")).unwrap()).unwrap();
    assert_eq!(v, serde_json::json!({"tokenizer": "gpt2", "vocab_size": 50257}));

    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!(ds.tokenizer, Tokenizer::gpt2());
    assert_eq!(ds.train.len(), 301_966);
    let decoded = ds.tokenizer.decode(&wide(&ds.train)) + &ds.tokenizer.decode(&wide(&ds.val));
    assert_eq!(decoded, text);
}

#[test]
fn get_batch_targets_are_inputs_shifted_by_one() {
    let dir = TempDir::new("batch");
    let text: String = (0..3000).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
    prepare(&text, dir.path(), TokenizerKind::Char).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    let (b, t) = (4, 16);
    ds.check_block_size(t).unwrap();
    let mut rng = Rng::new(1337, 0);
    let (mut x, mut y) = (vec![0u32; b * t], vec![0u32; b * t]);
    for split in [Split::Train, Split::Val] {
        ds.get_batch(split, b, t, &mut rng, &mut x, &mut y);
        let data = wide(if split == Split::Train { &ds.train } else { &ds.val });
        for row in 0..b {
            let (xr, yr) = (&x[row * t..(row + 1) * t], &y[row * t..(row + 1) * t]);
            assert_eq!(xr[1..], yr[..t - 1]);
            // The row is a contiguous run of the split, with its target one further on.
            let i = (0..data.len() - t).find(|&i| data[i..i + t] == *xr && data[i + 1..i + t + 1] == *yr);
            assert!(i.is_some(), "{split} row {row} is not a window of the data");
        }
    }
    // Same seed, same batch.
    let (mut x2, mut y2) = (vec![0u32; b * t], vec![0u32; b * t]);
    let mut rng2 = Rng::new(1337, 0);
    ds.get_batch(Split::Train, b, t, &mut rng2, &mut x2, &mut y2);
    let mut rng3 = Rng::new(1337, 0);
    ds.get_batch(Split::Train, b, t, &mut rng3, &mut x, &mut y);
    assert_eq!((x, y), (x2, y2));
}

#[test]
fn check_block_size_names_the_split_and_the_fix() {
    let dir = TempDir::new("block");
    prepare("abcdefghijklmnopqrstuvwxyz0123456789", dir.path(), TokenizerKind::Char).unwrap();
    let ds = Dataset::open(dir.path()).unwrap(); // 32 train, 4 val tokens
    assert!(ds.check_block_size(3).is_ok());
    let e = ds.check_block_size(8).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Data(_)));
    assert!(msg.contains("val") && msg.contains(" 4 tokens") && msg.contains("block_size 8"), "{msg}");
    assert!(msg.contains("smaller block_size"), "{msg}");
}

/// nanoGPT's meta.pkl for the text "to be, or not\nto bé!" (pickle.dump, default protocol 4).
const META_PKL: &[u8] = b"\x80\x04\x95\x99\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x0avocab_size\x94K\x0b\x8c\x04itos\x94}\x94(K\x00\x8c\x01\x0a\x94K\x01\x8c\x01 \x94K\x02\x8c\x01!\x94K\x03\x8c\x01,\x94K\x04\x8c\x01b\x94K\x05\x8c\x01e\x94K\x06\x8c\x01n\x94K\x07\x8c\x01o\x94K\x08\x8c\x01r\x94K\x09\x8c\x01t\x94K\x0a\x8c\x02\xc3\xa9\x94u\x8c\x04stoi\x94}\x94(h\x04K\x00h\x05K\x01h\x06K\x02h\x07K\x03h\x08K\x04h\x09K\x05h\x0aK\x06h\x0bK\x07h\x0cK\x08h\x0dK\x09h\x0eK\x0auu.";

fn write_bin(path: &Path, ids: &[u16]) {
    let b: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(path, b).unwrap();
}

#[test]
fn reads_nanogpt_meta_pkl() {
    let dir = TempDir::new("meta");
    std::fs::write(dir.path().join("meta.pkl"), META_PKL).unwrap();
    let tok = Tokenizer::load(dir.path()).unwrap();
    let expect: Vec<char> = "\n !,benorté".chars().collect();
    assert_eq!(tok, Tokenizer::Char { itos: expect });
    let ids = tok.encode("to bé\n").unwrap();
    assert_eq!(ids, vec![9, 7, 1, 4, 10, 0]);

    write_bin(&dir.path().join("train.bin"), &ids);
    write_bin(&dir.path().join("val.bin"), &[3, 2]);
    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!(ds.tokenizer.decode(&wide(&ds.train)), "to bé\n");

    // An id beyond the 11-token vocabulary is caught at open, naming the file, the id and the size.
    write_bin(&dir.path().join("val.bin"), &[3, 11]);
    let msg = Dataset::open(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("val.bin") && msg.contains("11 at position 1") && msg.contains("11 tokens"), "{msg}");

    // vocab.json takes precedence over meta.pkl.
    Tokenizer::gpt2().save(dir.path()).unwrap();
    assert_eq!(Tokenizer::load(dir.path()).unwrap(), Tokenizer::Gpt2);
}

#[test]
fn no_vocabulary_means_gpt2() {
    let dir = TempDir::new("novocab");
    assert_eq!(Tokenizer::load(dir.path()).unwrap(), Tokenizer::gpt2());
}

#[test]
fn unknown_char_and_empty_input() {
    let tok = Tokenizer::char_from_text(&shakespeare());
    let e = tok.encode("café").unwrap_err();
    assert!(matches!(e, Error::Data(_)));
    let msg = e.to_string();
    assert!(msg.contains("'é' (U+00E9)") && msg.contains("not in the vocabulary of 65 characters"), "{msg}");

    let dir = TempDir::new("empty");
    let e = prepare("", dir.path(), TokenizerKind::Char).unwrap_err();
    assert!(matches!(e, Error::Data(ref m) if m.contains("input text is empty")), "{e}");
    assert!(!dir.path().join("train.bin").exists());
}

#[test]
fn open_reports_missing_and_truncated_bins() {
    let dir = TempDir::new("bins");
    let e = Dataset::open(dir.path()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Io { .. }));
    assert!(msg.contains("train.bin") && msg.contains("quietgpt prepare"), "{msg}");

    write_bin(&dir.path().join("train.bin"), &[1, 2, 3]);
    std::fs::write(dir.path().join("val.bin"), [1u8, 0, 2]).unwrap();
    let msg = Dataset::open(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("val.bin") && msg.contains("truncated"), "{msg}");
}

#[test]
fn read_input_paths() {
    let dir = TempDir::new("input");
    let missing = dir.path().join("nope.txt");
    assert!(matches!(read_input(Some(&missing), dir.path()), Err(Error::Io { .. })));

    let latin1 = dir.path().join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9").unwrap();
    let e = read_input(Some(&latin1), dir.path()).unwrap_err();
    assert!(matches!(e, Error::Data(ref m) if m.contains("UTF-8")), "{e}");

    // With no path, a cached input.txt is used and nothing is downloaded.
    std::fs::write(dir.path().join("input.txt"), "hello").unwrap();
    assert_eq!(read_input(None, dir.path()).unwrap(), "hello");
}

#[test]
fn tokenizer_kind_from_str() {
    assert_eq!("char".parse::<TokenizerKind>().unwrap(), TokenizerKind::Char);
    assert_eq!("gpt2".parse::<TokenizerKind>().unwrap(), TokenizerKind::Gpt2);
    let e = "sentencepiece".parse::<TokenizerKind>().unwrap_err();
    assert!(matches!(e, Error::Config(ref m) if m.contains("char") && m.contains("gpt2")), "{e}");
}
