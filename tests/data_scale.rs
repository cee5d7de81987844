//! Data at scale: memory-mapped splits read as the in-memory ones, and the streamed GPT-2 BPE `prepare`
//! writes byte for byte what the in-memory one does (nanoGPT's 301,966 / 36,059 tokens on Tiny Shakespeare).

mod common;

use common::{shakespeare, temp_dir};
use quietgpt::data::{prepare, prepare_file, Dataset, Split, Tokenizer, TokenizerKind};
use quietgpt::rng::Rng;
use quietgpt::Error;
use std::path::Path;

fn read_u16_le(path: &Path) -> Vec<u16> {
    let b = std::fs::read(path).unwrap();
    b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
}

/// Every file of `a` is in `b` with the same bytes, and the other way round.
fn same_files(a: &Path, b: &Path) {
    let names = |d: &Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    assert_eq!(names(a), names(b));
    for n in names(a) {
        assert!(std::fs::read(a.join(&n)).unwrap() == std::fs::read(b.join(&n)).unwrap(), "{n} differs");
    }
}

#[test]
fn mapped_dataset_gives_the_batches_of_the_in_memory_one() {
    let d = temp_dir("scale-mmap");
    let text = std::fs::read_to_string(shakespeare()).unwrap();
    prepare(&text, &d, TokenizerKind::Gpt2).unwrap();
    let mapped = Dataset::open(&d).unwrap();
    assert_eq!(mapped.train.is_mapped(), cfg!(target_endian = "little"));
    let train = read_u16_le(&d.join("train.bin"));
    let val = read_u16_le(&d.join("val.bin"));
    let owned = Dataset::from_tokens(train.clone(), val.clone(), Tokenizer::gpt2(), &d);
    assert!(!owned.train.is_mapped());
    assert_eq!((mapped.train.as_slice(), mapped.val.as_slice()), (train.as_slice(), val.as_slice()));
    assert_eq!((mapped.train.len(), mapped.val.len()), (301_966, 36_059));

    for (m, o) in [(mapped.clone(), owned.clone()), (mapped.clone().with_bos(), owned.with_bos())] {
        let (b, t) = (8, 64);
        let (mut rm, mut ro) = (Rng::new(1337, 1), Rng::new(1337, 1));
        let (mut xm, mut ym, mut xo, mut yo) = (vec![0; b * t], vec![0; b * t], vec![0; b * t], vec![0; b * t]);
        for split in [Split::Train, Split::Val, Split::Train] {
            for _ in 0..50 {
                m.get_batch(split, b, t, &mut rm, &mut xm, &mut ym);
                o.get_batch(split, b, t, &mut ro, &mut xo, &mut yo);
                assert_eq!((&xm, &ym), (&xo, &yo));
            }
            assert_eq!(m.num_windows(split, t), o.num_windows(split, t));
            let (mut xm, mut ym, mut xo, mut yo) = (vec![0; t], vec![0; t], vec![0; t], vec![0; t]);
            for i in (0..m.num_windows(split, t)).step_by(97) {
                assert!(m.window(split, i, t, &mut xm, &mut ym) && o.window(split, i, t, &mut xo, &mut yo));
                assert_eq!((&xm, &ym), (&xo, &yo));
            }
        }
    }
    // An empty split maps nothing and reads as empty (the file is rewritten in place: drop the map first).
    drop(mapped);
    std::fs::write(d.join("val.bin"), b"").unwrap();
    let empty = Dataset::open(&d).unwrap();
    assert!(empty.val.is_empty() && empty.check_block_size(4).is_err());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn streamed_gpt2_prepare_is_byte_identical_to_in_memory() {
    let d = temp_dir("scale-stream");
    let text = std::fs::read_to_string(shakespeare()).unwrap();
    let r = prepare(&text, &d.join("mem"), TokenizerKind::Gpt2).unwrap();
    assert_eq!((r.train_tokens, r.val_tokens), (301_966, 36_059));
    // 4 KiB chunks: about 270 of them, tokenized a batch at a time; and the automatic size.
    for (name, chunk) in [("4k", Some(4096)), ("auto", None), ("odd", Some(1237))] {
        let out = d.join(name);
        let s = prepare_file(&shakespeare(), &out, TokenizerKind::Gpt2, chunk).unwrap();
        assert_eq!(s, r, "chunk {chunk:?}");
        same_files(&d.join("mem"), &out);
    }
    // Char-level through the same entry point: in memory, the same files.
    prepare(&text, &d.join("char-mem"), TokenizerKind::Char).unwrap();
    prepare_file(&shakespeare(), &d.join("char"), TokenizerKind::Char, Some(4096)).unwrap();
    same_files(&d.join("char-mem"), &d.join("char"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn streamed_prepare_with_multibyte_characters_at_chunk_edges() {
    // Tiny Shakespeare is ASCII: make it multi-byte (2, 3 and 4 bytes, and non-ASCII whitespace) so that
    // reads, cuts and the 90% split fall next to and inside multi-byte characters.
    let d = temp_dir("scale-utf8");
    let text = std::fs::read_to_string(shakespeare()).unwrap()[..200_000]
        .replace('e', "é")
        .replace("th", "þ中")
        .replace('!', "😀")
        .replace(", ", ",\u{a0}")
        .replace(".\n", ".\u{3000}\n");
    let input = d.join("input.txt");
    std::fs::write(&input, &text).unwrap();
    let r = prepare(&text, &d.join("mem"), TokenizerKind::Gpt2).unwrap();
    for chunk in [4096, 4099, 333, 5] {
        let out = d.join(format!("c{chunk}"));
        assert_eq!(prepare_file(&input, &out, TokenizerKind::Gpt2, Some(chunk)).unwrap(), r, "chunk {chunk}");
        same_files(&d.join("mem"), &out);
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn streamed_prepare_errors_match_the_in_memory_ones() {
    let d = temp_dir("scale-errors");
    let gpt2 = |name: &str, bytes: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        prepare_file(&p, &d.join(format!("out-{name}")), TokenizerKind::Gpt2, Some(4)).unwrap_err()
    };
    let e = gpt2("empty.txt", b"");
    assert!(matches!(e, Error::Data(ref m) if m.contains("input text is empty")), "{e}");
    // A bad byte far into the file, and a character cut off by the end of the file: named by offset.
    let mut bad = "ok é ".repeat(100).into_bytes();
    let at = bad.len();
    bad.extend_from_slice(b"caf\xe9 au lait");
    let e = gpt2("latin1.txt", &bad).to_string();
    assert!(e.contains("not valid UTF-8") && e.contains(&format!("offset {}", at + 3)), "{e}");
    let e = gpt2("cut.txt", "abc é".as_bytes().split_last().unwrap().1).to_string();
    assert!(e.contains("not valid UTF-8") && e.contains("offset 4"), "{e}");
    assert!(!d.join("out-latin1.txt").join("train.bin").exists());
    let e = prepare_file(&d.join("missing.txt"), &d.join("o"), TokenizerKind::Gpt2, None).unwrap_err();
    assert!(matches!(e, Error::Io { ref path, .. } if path.ends_with("missing.txt")), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn gpt2_data_trains_with_the_presets_padded_vocabulary() {
    use quietgpt::config::Config;
    use quietgpt::train::trainer::Trainer;
    // The gpt2-124m preset's vocab_size 50304 over GPT-2 BPE data (50257 ids) in a model small enough for CI
    // (on the CPU engine: the preset's device is cuda).
    let d = temp_dir("scale-pad");
    prepare_file(&shakespeare(), &d.join("data"), TokenizerKind::Gpt2, None).unwrap();
    let build = |extra: &[&str]| {
        let mut o: Vec<String> = [
            "n_layer=1",
            "n_head=2",
            "n_embd=16",
            "block_size=32",
            "batch_size=2",
            "gradient_accumulation_steps=2",
            "max_iters=2",
            "warmup_iters=1",
            "lr_decay_iters=2",
            "eval_interval=2",
            "eval_iters=1",
            "threads=1",
            "device=cpu",
        ]
        .map(String::from)
        .to_vec();
        o.push(format!("data_dir={:?}", d.join("data").display().to_string()));
        o.push(format!("out_dir={:?}", d.join("out").display().to_string()));
        o.extend(extra.iter().map(|s| s.to_string()));
        Config::build(Some("gpt2-124m"), None, &o).unwrap()
    };
    let (tr, evals) = common::train_collecting_val_losses(build(&[]));
    assert_eq!((tr.engine.config().vocab_size, tr.data.vocab_size()), (50304, 50257));
    assert!(evals.iter().all(|l| l.is_finite() && (l - 50304f64.ln()).abs() < 0.5), "{evals:?}");
    drop(tr);
    // Smaller than the data's vocabulary is an error that names both sizes; equal is fine.
    let e = Trainer::new(build(&["vocab_size=50000"])).err().unwrap().to_string();
    assert!(e.contains("vocab_size = 50000") && e.contains("vocabulary of 50257"), "{e}");
    assert_eq!(Trainer::new(build(&["vocab_size=50257"])).unwrap().engine.config().vocab_size, 50257);
    let _ = std::fs::remove_dir_all(&d);
}
