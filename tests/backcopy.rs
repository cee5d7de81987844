//! The Bigram-Backcopy generator (`data::Backcopy`) and the BOS token of text data: the copy rule at
//! every trigger, bigram frequencies against the table, determinism, and the windows' layout.

use quietgpt::config::Config;
use quietgpt::data::{Backcopy, Dataset, Split, TaskLoss, Tokenizer, TINY_SHAKESPEARE, VAL_SEQUENCES};
use quietgpt::rng::Rng;
use std::path::Path;

fn task() -> Dataset {
    Dataset::backcopy(3).unwrap()
}

#[test]
fn vocabulary_bos_and_triggers_follow_guo_et_al() {
    let d = task();
    let bb = d.task.as_ref().unwrap();
    assert_eq!(bb.text_vocab, 65);
    assert_eq!(d.vocab_size(), 66);
    assert_eq!(d.bos, Some(65));
    // The three most frequent characters of Tiny Shakespeare.
    let tok = Tokenizer::char_from_text(TINY_SHAKESPEARE);
    let names: String = tok.decode(&bb.triggers);
    assert_eq!(names, " et");
    let mut counts = bb.unigram.clone();
    counts.sort_unstable();
    assert_eq!(bb.unigram[bb.triggers[2] as usize], counts[counts.len() - 3]);
}

#[test]
fn the_copy_rule_holds_at_every_trigger_and_nowhere_else_is_forced() {
    let d = task();
    let bb = d.task.as_ref().unwrap();
    let mut rng = Rng::new(7, 0);
    let mut seq = vec![0u32; 257];
    let (mut copies, mut firsts) = (0usize, 0usize);
    for _ in 0..200 {
        bb.fill(&mut rng, &mut seq);
        assert_eq!(seq[0], bb.bos());
        assert!(!bb.is_trigger(seq[1]), "s_1 is never a trigger");
        firsts += 1;
        for t in 2..seq.len() {
            assert_ne!(seq[t], bb.bos(), "BOS only at position 0");
            if bb.is_trigger(seq[t - 1]) {
                assert_eq!(seq[t], seq[t - 2], "after a trigger the token before it is copied");
                assert!(!bb.is_trigger(seq[t]), "two triggers never follow each other");
                copies += 1;
            } else {
                assert!(bb.bigram_prob(seq[t - 1], seq[t]) > 0.0, "a bigram step follows the table");
            }
        }
    }
    assert!(copies > 200 * 256 / 10, "triggers are frequent ({copies} copies)");
    assert_eq!(firsts, 200);
}

#[test]
fn bigram_frequencies_match_the_table_within_sampling_error() {
    let d = task();
    let bb = d.task.as_ref().unwrap();
    let v = bb.text_vocab;
    let mut counts = vec![vec![0u64; v]; v];
    let mut rng = Rng::new(11, 0);
    let mut seq = vec![0u32; 513];
    for _ in 0..400 {
        bb.fill(&mut rng, &mut seq);
        for t in 2..seq.len() {
            if !bb.is_trigger(seq[t - 1]) {
                counts[seq[t - 1] as usize][seq[t] as usize] += 1;
            }
        }
    }
    // Every row seen often enough: each observed frequency within 5 standard errors of the table.
    let mut rows = 0;
    for (prev, row) in counts.iter().enumerate() {
        let n: u64 = row.iter().sum();
        if n < 2000 {
            continue;
        }
        rows += 1;
        for (next, &c) in row.iter().enumerate() {
            let p = bb.bigram_prob(prev as u32, next as u32);
            let se = (p * (1.0 - p) / n as f64).sqrt();
            let f = c as f64 / n as f64;
            assert!((f - p).abs() <= 5.0 * se + 1e-12, "P({next}|{prev}) = {p}, observed {f} over {n}");
        }
    }
    assert!(rows >= 15, "enough rows tested ({rows})");
    // The table is the text's: P(next | prev) = count(prev next) / count(prev followed by anything).
    let (h, e) = (46u32, 43u32); // 'h', 'e' in nanoGPT's Tiny Shakespeare vocabulary
    let row: u64 = bb.bigram[h as usize].iter().sum();
    assert!((bb.bigram_prob(h, e) - bb.bigram[h as usize][e as usize] as f64 / row as f64).abs() < 1e-12);
}

#[test]
fn the_same_seed_gives_the_same_stream_and_val_is_fixed() {
    let d = task();
    let (b, t) = (4, 32);
    let draw = |seed| {
        let mut rng = Rng::new(seed, 2);
        let (mut x, mut y) = (vec![0u32; b * t], vec![0u32; b * t]);
        d.get_batch(Split::Train, b, t, &mut rng, &mut x, &mut y);
        (x, y)
    };
    assert_eq!(draw(1), draw(1));
    assert_ne!(draw(1).0, draw(2).0);
    let (x, y) = draw(1);
    for (xr, yr) in x.chunks(t).zip(y.chunks(t)) {
        assert_eq!(xr[0], 65);
        assert_eq!(&xr[1..], &yr[..t - 1], "targets are the inputs shifted by one");
    }
    // Val windows are fixed sequences, different from train windows, and independent of any seed.
    let (mut v0, mut y0, mut v1, mut tr) = (vec![0; t], vec![0; t], vec![0; t], vec![0; t]);
    assert!(d.window(Split::Val, 5, t, &mut v0, &mut y0));
    assert!(task().window(Split::Val, 5, t, &mut v1, &mut y0));
    assert!(d.window(Split::Train, 5, t, &mut tr, &mut y0));
    assert_eq!(v0, v1);
    assert_ne!(v0, tr);
    assert_eq!(d.num_windows(Split::Val, t), VAL_SEQUENCES);
    assert!(!d.window(Split::Val, VAL_SEQUENCES, t, &mut v0, &mut y0));
}

#[test]
fn task_losses_split_copy_and_bigram_positions() {
    let d = task();
    let bb = d.task.as_ref().unwrap();
    let trig = bb.triggers[0];
    // Two positions, vocabulary 66: a trigger input whose target gets logit 0 among zeros (loss ln 66),
    // and a plain input whose target gets all the mass (loss ≈ 0).
    let x = [trig, 10];
    let y = [3, 4];
    let mut logits = vec![0.0f32; 2 * 66];
    logits[66 + 4] = 50.0;
    let mut l = TaskLoss::default();
    l.add(bb, &x, &y, &logits);
    assert_eq!((l.copy_n, l.bigram_n), (1, 1));
    assert!((l.copy() - (66f64).ln()).abs() < 1e-9);
    assert!(l.bigram() < 1e-15 + 66.0 * (-50f64).exp());
}

#[test]
fn text_windows_with_bos_start_with_it() {
    let tok = Tokenizer::char_from_text("abcdefgh");
    let ids = tok.encode("abcdefghabcdefgh").unwrap();
    let d = Dataset::from_tokens(ids.clone(), ids, tok, Path::new("")).with_bos();
    assert_eq!(d.vocab_size(), 9);
    let (mut x, mut y) = ([0u32; 4], [0u32; 4]);
    assert!(d.window(Split::Val, 0, 4, &mut x, &mut y));
    assert_eq!((x, y), ([8, 0, 1, 2], [0, 1, 2, 3]));
    assert!(d.window(Split::Val, 3, 4, &mut x, &mut y));
    assert_eq!((x, y), ([8, 4, 5, 6], [4, 5, 6, 7]));
    assert!(!d.window(Split::Val, 4, 4, &mut x, &mut y));
    assert_eq!(d.num_windows(Split::Val, 4), 4);
    let mut rng = Rng::new(0, 0);
    let (mut bx, mut by) = (vec![0u32; 4 * 16], vec![0u32; 4 * 16]);
    for _ in 0..10 {
        d.get_batch(Split::Train, 16, 4, &mut rng, &mut bx, &mut by);
        for (xr, yr) in bx.chunks(4).zip(by.chunks(4)) {
            assert_eq!(xr[0], 8);
            assert_eq!(&xr[1..], &yr[..3]);
        }
    }
    assert!(d.check_block_size(16).is_ok() && d.check_block_size(17).is_err());
}

#[test]
fn config_picks_the_task_and_rejects_bad_trigger_counts() {
    let cfg = Config::build(None, None, &["data=backcopy".into()]).unwrap();
    let d = Dataset::for_config(&cfg, Path::new("no such dir")).unwrap();
    assert!(d.task.is_some());
    assert!(Dataset::backcopy(0).is_err());
    assert!(Dataset::backcopy(65).is_err());
    let bad = Config::build(None, None, &["data=bigram".into()]).unwrap_err().to_string();
    assert!(bad.contains("backcopy"), "{bad}");
    let _ = Backcopy::from_ids(&[0, 1, 0, 1], 2, 1).unwrap();
}
