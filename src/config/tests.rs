//! Tests of the config: presets, overrides, round trips.

use super::*;

#[test]
fn presets_parse_and_validate() {
    for p in PRESETS {
        Config::preset(p.name).unwrap();
        assert!(!p.about().is_empty(), "configs/{}.toml should start with a # description", p.name);
    }
    let c = Config::preset("shakespeare-char-cpu").unwrap();
    assert_eq!((c.n_layer, c.n_head, c.n_embd, c.block_size, c.batch_size), (4, 4, 128, 64, 12));
    assert_eq!((c.max_iters, c.lr_decay_iters, c.eval_iters, c.dropout), (2000, 2000, 20, 0.0));
}

#[test]
fn gpt2_124m_is_nanogpts_train_gpt2() {
    // nanoGPT config/train_gpt2.py over train.py's defaults, vocab_size 50304 (model.py's padded GPT-2).
    let c = Config::preset("gpt2-124m").unwrap();
    assert_eq!((c.n_layer, c.n_head, c.n_embd, c.block_size, c.vocab_size), (12, 12, 768, 1024, 50304));
    assert_eq!((c.batch_size, c.gradient_accumulation_steps), (12, 40));
    assert_eq!(c.batch_size * c.block_size * c.gradient_accumulation_steps, 491_520);
    assert_eq!((c.max_iters, c.lr_decay_iters, c.warmup_iters), (600_000, 600_000, 2000));
    assert_eq!((c.learning_rate, c.min_lr, c.weight_decay, c.beta1, c.beta2), (6e-4, 6e-5, 0.1, 0.9, 0.95));
    assert_eq!((c.dropout, c.bias, c.grad_clip, c.decay_lr, c.always_save_checkpoint), (0.0, false, 1.0, true, true));
    assert_eq!((c.eval_interval, c.eval_iters, c.log_interval), (1000, 200, 10));
    assert_eq!((c.data_dir.as_str(), c.device.as_str()), ("data/openwebtext", "cuda"));
    assert_eq!(c.vocab_size % 64, 0);
}

#[test]
fn overrides_win_and_unknown_keys_fail() {
    let c = Config::build(
        Some("shakespeare-char"),
        None,
        &["--attention=quiet".into(), "--n_layer=2".into(), "--learning_rate=3e-4".into(), "--out_dir=x/y".into()],
    )
    .unwrap();
    assert_eq!(c.attention, AttentionKind::Quiet);
    assert_eq!((c.n_layer, c.learning_rate, c.out_dir.as_str()), (2, 3e-4, "x/y"));
    let e = Config::build(None, None, &["--n_layayer=2".into()]).unwrap_err().to_string();
    assert!(e.contains("n_layayer"), "{e}");
    let e = Config::build(None, None, &["--n_embd=100".into(), "--n_head=3".into()]).unwrap_err().to_string();
    assert!(e.contains("divisible"), "{e}");
    let e = Config::build(None, None, &["--attention=loud".into()]).unwrap_err().to_string();
    assert!(e.contains("loud"), "{e}");
}

#[test]
fn toml_round_trip() {
    // every preset, and a config with every kind of override, comes back equal from its TOML
    let mut all: Vec<Config> = PRESETS.iter().map(|p| Config::preset(p.name).unwrap()).collect();
    let o = ["--attention=sink", "--out_dir=2024", "--learning_rate=3e-4", "--bias=true"].map(String::from);
    all.push(Config::build(None, None, &o).unwrap());
    for c in all {
        let t: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(c, t);
    }
}

#[test]
fn floats_print_as_written_and_old_checkpoint_floats_read_back() {
    let c = Config::preset("shakespeare-char-cpu").unwrap();
    let text = c.to_toml();
    assert!(text.contains("learning_rate = 0.001\n") && text.contains("eps = 0.00000001\n"), "{text}");
    // What a checkpoint written when these fields were f32 holds.
    let old = text
        .replace("learning_rate = 0.001\n", "learning_rate = 0.0010000000474974513\n")
        .replace("min_lr = 0.0001\n", "min_lr = 0.00009999999747378752\n")
        .replace("eps = 0.00000001\n", "eps = 0.00000000999999993922529\n");
    assert_eq!(toml::from_str::<Config>(&old).unwrap(), c);
    // A value that is no f32 stays as written; the model gets the nearest f32, as before.
    let c = Config::build(None, None, &["learning_rate=3e-4".into()]).unwrap();
    assert_eq!((c.learning_rate, c.learning_rate as f32), (3e-4, 3e-4f32));
}

#[test]
fn device_is_validated() {
    assert_eq!(Config::default().device, "cpu");
    Config::build(None, None, &["device=cpu".into()]).unwrap();
    // cuda is a valid setting; whether a GPU is there is found when the engine is made
    Config::build(None, None, &["device=cuda".into()]).unwrap();
    Config::build(None, None, &["device=cuda:1".into()]).unwrap();
    for bad in ["device=tpu", "device=cuda:x"] {
        let e = Config::build(None, None, &[bad.into()]).unwrap_err().to_string();
        assert!(e.contains("cpu, cuda"), "{e}");
    }
    // Checkpoints from before the key existed read as "cpu".
    let old = Config::default().to_toml().replace("device = \"cpu\"\n", "");
    assert_eq!(toml::from_str::<Config>(&old).unwrap().device, "cpu");
}

#[test]
fn dtype_is_validated_for_the_device() {
    assert_eq!(Config::default().dtype, "auto");
    Config::build(None, None, &["device=cuda".into(), "dtype=bfloat16".into()]).unwrap();
    Config::build(None, None, &["device=cuda".into(), "dtype=float32".into()]).unwrap();
    Config::build(None, None, &["dtype=float32".into()]).unwrap();
    let e = Config::build(None, None, &["dtype=bfloat16".into()]).unwrap_err().to_string();
    assert!(e.contains("needs device = \"cuda\""), "{e}");
    let e = Config::build(None, None, &["device=cuda".into(), "dtype=float16".into()]).unwrap_err().to_string();
    assert!(e.contains("loss scaling"), "{e}");
    let e = Config::build(None, None, &["dtype=f8".into()]).unwrap_err().to_string();
    assert!(e.contains("auto, bfloat16, float32"), "{e}");
    // Checkpoints from before the key existed read as "auto".
    let old = Config::default().to_toml().replace("dtype = \"auto\"\n", "");
    assert_eq!(toml::from_str::<Config>(&old).unwrap().dtype, "auto");
}

fn build(overrides: &[&str]) -> Result<Config> {
    Config::build(None, None, &overrides.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

#[test]
fn overrides_parse_by_the_keys_type() {
    // A string key takes the text as it is, whatever it looks like.
    assert_eq!(build(&["--out_dir=2024"]).unwrap().out_dir, "2024");
    assert_eq!(build(&["--out_dir=inf"]).unwrap().out_dir, "inf");
    assert_eq!(build(&["--data_dir=true"]).unwrap().data_dir, "true");
    assert_eq!(build(&["--out_dir=\"a b\""]).unwrap().out_dir, "a b"); // TOML string syntax still works
                                                                       // Numbers and booleans parse as their type; a bad one names the key, the value and the type.
    let c = build(&["--learning_rate=1", "--max_iters=1_000", "--bias=true", "--seed=7"]).unwrap();
    assert_eq!((c.learning_rate, c.max_iters, c.bias, c.seed), (1.0, 1000, true, 7));
    for (o, want) in [
        ("--max_iters=abc", ["max_iters", "'abc'", "non-negative integer"]),
        ("--max_iters=-1", ["max_iters", "'-1'", "non-negative integer"]),
        ("--seed=1e3", ["seed", "'1e3'", "non-negative integer"]),
        ("--learning_rate=fast", ["learning_rate", "'fast'", "a number"]),
        ("--bias=yes", ["bias", "'yes'", "true or false"]),
        ("--eval_only=1", ["eval_only", "'1'", "true or false"]),
    ] {
        let e = build(&[o]).unwrap_err().to_string();
        assert!(want.iter().all(|w| e.contains(w)), "{o}: {e}");
    }
}
#[test]
fn floats_must_be_finite() {
    for key in [
        "learning_rate",
        "min_lr",
        "weight_decay",
        "grad_clip",
        "beta1",
        "beta2",
        "eps",
        "dropout",
        "clip_zeta",
        "clip_alpha",
        "gate_init",
    ] {
        for v in ["inf", "-inf", "nan", "1e300"] {
            let e = build(&[&format!("--{key}={v}")]).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("must be a finite number"), "{key}={v}: {e}");
        }
    }
    // In a TOML file too.
    let dir = std::env::temp_dir().join(format!("quietgpt-finite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("c.toml");
    std::fs::write(&f, "learning_rate = inf\n").unwrap();
    let e = Config::build(None, Some(&f), &[]).unwrap_err().to_string();
    assert!(e.contains("learning_rate") && e.contains("must be a finite number"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    // The range rules stay as they were.
    let e = build(&["--learning_rate=-1"]).unwrap_err().to_string();
    assert!(e.contains("non-negative"), "{e}");
}

#[test]
fn every_float_key_is_checked_for_finiteness() {
    let defaults = toml::Table::try_from(Config::default()).unwrap();
    let mut want: Vec<&str> = defaults.iter().filter(|(_, v)| v.is_float()).map(|(k, _)| k.as_str()).collect();
    let mut have: Vec<&str> = Config::default().floats().iter().map(|(k, _)| *k).collect();
    want.sort();
    have.sort();
    assert_eq!(want, have);
}
