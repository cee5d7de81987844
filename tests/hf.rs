//! Hugging Face GPT-2 checkpoints: transformers' own files (tests/hf/, made by scripts/make_hf_tiny.py
//! with transformers 4.57.1) load and give transformers' logits; the same weights through quietgpt's own
//! checkpoint give bitwise the same logits; export → import round-trips bitwise; bad files get clear
//! errors; fine-tuning with a swapped attention starts from the variant's init.

mod common;

use common::temp_dir;
use quietgpt::config::{ActivationKind, AttentionKind, Config, GeluKind};
use quietgpt::engine::params::{init_params, Kind, ParamLayout};
use quietgpt::hf;
use quietgpt::rng::Rng;
use quietgpt::train::checkpoint;
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tiny(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hf").join(name)
}

/// The logits of a checkpoint's model on idx (b, t).
fn logits_of(ck: &checkpoint::Checkpoint, idx: &[u32], b: usize, t: usize) -> Vec<f32> {
    let mut m = ck.cpu_model(b).unwrap();
    m.forward(idx, None, b, t, None).unwrap();
    m.logits()[..b * t * ck.model.vocab_size].to_vec()
}

#[test]
fn logits_match_transformers() {
    let relu = ("tiny-gpt2-relu-untied", GeluKind::Erf, ActivationKind::Relu, false);
    for (name, gelu, activation, tied) in [
        ("tiny-gpt2", GeluKind::Tanh, ActivationKind::Gelu, true),
        ("tiny-gpt2-erf", GeluKind::Erf, ActivationKind::Gelu, true),
        relu,
    ] {
        let reference: Value =
            serde_json::from_str(&std::fs::read_to_string(tiny(&format!("{name}-logits.json"))).unwrap()).unwrap();
        let idx: Vec<u32> = reference["idx"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32))
            .collect();
        let want: Vec<f64> = reference["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let pre = hf::load(&tiny(name), None).unwrap();
        assert_eq!((pre.model.gelu, pre.model.activation, pre.model.tie_weights), (gelu, activation, tied), "{name}");
        assert_eq!((pre.model.vocab_size, pre.model.block_size, pre.model.n_embd), (96, 32, 32), "{name}");
        let ck = pre.into_checkpoint(None).unwrap();
        let got = logits_of(&ck, &idx, 2, 24);
        assert_eq!(got.len(), want.len());
        let worst = got.iter().zip(&want).map(|(g, w)| (*g as f64 - w).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "{name}: max |quietgpt − transformers| = {worst:e}");
    }
}

#[test]
fn same_logits_through_quietgpt_checkpoint_and_bitwise_round_trip() {
    let dir = temp_dir("hf-roundtrip");
    let pre = hf::load(&tiny("tiny-gpt2"), None).unwrap();
    let idx: Vec<u32> = (0..2 * 20).map(|i| (i * 7 + 3) % 96).collect();
    let mut ck = pre.clone().into_checkpoint(None).unwrap();
    ck.tokenizer = quietgpt::data::Tokenizer::char_from_text("abc"); // a checkpoint's tokenizer fits its vocab
    let direct = logits_of(&ck, &idx, 2, 20);
    // the same weights saved and loaded as a quietgpt checkpoint
    let path = dir.join("ckpt.safetensors");
    let zeros = vec![0.0f32; ck.params.len()];
    checkpoint::save_host(&path, &ck.config, &ck.model, &ck.params, &zeros, &zeros, &ck.state, &ck.tokenizer).unwrap();
    let again = checkpoint::load(&path).unwrap();
    assert_eq!(again.model.gelu, GeluKind::Tanh);
    let through = logits_of(&again, &idx, 2, 20);
    assert!(direct.iter().zip(&through).all(|(a, b)| a.to_bits() == b.to_bits()));
    // export → import: the same parameters, bit for bit, and every tensor as transformers wrote it
    let out = dir.join("exported");
    hf::export(&out, &pre.model, &pre.params).unwrap();
    let back = hf::load(&out, None).unwrap();
    assert_eq!(back.model, pre.model);
    assert!(back.params.iter().zip(&pre.params).all(|(a, b)| a.to_bits() == b.to_bits()));
    let (orig, ours) = (
        std::fs::read(tiny("tiny-gpt2/model.safetensors")).unwrap(),
        std::fs::read(out.join("model.safetensors")).unwrap(),
    );
    let (orig, ours) = (SafeTensors::deserialize(&orig).unwrap(), SafeTensors::deserialize(&ours).unwrap());
    let mut names = ours.names();
    names.sort();
    let mut want = orig.names();
    want.sort();
    assert_eq!(names, want, "exported names are save_pretrained's");
    for n in names {
        let (a, b) = (orig.tensor(n).unwrap(), ours.tensor(n).unwrap());
        assert_eq!((a.shape(), a.data()), (b.shape(), b.data()), "{n}");
    }
    let (_, header) = SafeTensors::read_metadata(&std::fs::read(out.join("model.safetensors")).unwrap()).unwrap();
    assert_eq!(header.metadata().as_ref().unwrap()["format"], "pt", "transformers needs format = pt");
    let config: Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        (config["activation_function"].as_str(), config["model_type"].as_str()),
        (Some("gelu_new"), Some("gpt2"))
    );
    // the exact-erf GELU exports as "gelu"
    let erf = hf::load(&tiny("tiny-gpt2-erf"), None).unwrap();
    hf::export(&dir.join("erf"), &erf.model, &erf.params).unwrap();
    let config: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("erf/config.json")).unwrap()).unwrap();
    assert_eq!(config["activation_function"].as_str(), Some("gelu"));
    assert_eq!(hf::load(&dir.join("erf"), None).unwrap().model.gelu, GeluKind::Erf);
}

#[test]
fn a_model_without_biases_exports_with_zero_biases_and_variants_are_refused() {
    let dir = temp_dir("hf-export-nobias");
    let mut m = quietgpt::config::ModelConfig::new(1, 2, 8, 8, 11, false, 0.0, AttentionKind::Softmax);
    let lay = ParamLayout::new(&m);
    let mut p = vec![0.0f32; lay.total];
    init_params(&m, &lay, &mut Rng::new(5, 1), &mut p);
    hf::export(&dir, &m, &p).unwrap();
    let back = hf::load(&dir, None).unwrap();
    assert!(back.model.bias);
    let idx: Vec<u32> = (0..8).map(|i| i % 11).collect();
    let mut ours = quietgpt::engine::cpu::Gpt::<f32>::new(m.clone(), 1).unwrap();
    ours.params.copy_from_slice(&p);
    ours.forward(&idx, None, 1, 8, None).unwrap();
    let ck = back.into_checkpoint(None).unwrap();
    assert!(logits_of(&ck, &idx, 1, 8).iter().zip(ours.logits()).all(|(a, b)| a.to_bits() == b.to_bits()));
    for a in [AttentionKind::Quiet, AttentionKind::Sink, AttentionKind::Gated] {
        m.attention = a;
        let lay = ParamLayout::new(&m);
        let e = hf::export(&dir, &m, &vec![0.0; lay.total]).unwrap_err().to_string();
        assert!(e.contains(a.name()) && e.contains("softmax") && e.contains("GPT2LMHeadModel"), "{e}");
    }
}

/// Re-serialise the tiny model's tensors, renamed by `rename` (None drops one), with `extra` added.
fn rewrite(to: &Path, rename: impl Fn(&str) -> Option<String>, extra: Vec<(String, Vec<usize>, Vec<u8>)>) {
    let bytes = std::fs::read(tiny("tiny-gpt2/model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .names()
        .into_iter()
        .filter_map(|n| {
            let t = st.tensor(n).unwrap();
            Some((rename(n)?, t.shape().to_vec(), t.data().to_vec()))
        })
        .collect();
    owned.extend(extra);
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, s, d)| (n.clone(), TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap()))
        .collect();
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::write(to, safetensors::serialize(views, Some(HashMap::from([("format".into(), "pt".into())]))).unwrap())
        .unwrap();
}

#[test]
fn a_bare_weights_file_without_prefix_loads_with_n_head() {
    let dir = temp_dir("hf-bare");
    let file = dir.join("model.safetensors");
    let bytes = std::fs::read(tiny("tiny-gpt2/model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let wte = st.tensor("transformer.wte.weight").unwrap();
    // the hub's original gpt2 files: no prefix, the mask buffers stored, lm_head equal to wte
    let mask = vec![0u8; 4 * 32 * 32];
    rewrite(
        &file,
        |n| Some(n.strip_prefix("transformer.").unwrap().to_string()),
        vec![
            ("h.0.attn.bias".into(), vec![1, 1, 32, 32], mask.clone()),
            ("h.1.attn.masked_bias".into(), vec![1, 1, 32, 32], mask),
            ("lm_head.weight".into(), wte.shape().to_vec(), wte.data().to_vec()),
        ],
    );
    assert!(hf::is_hf(&file));
    let e = hf::load(&file, None).unwrap_err().to_string();
    assert!(e.contains("--n_head") && e.contains("config.json"), "{e}");
    let bare = hf::load(&file, Some(2)).unwrap();
    let full = hf::load(&tiny("tiny-gpt2"), None).unwrap();
    assert_eq!((bare.model.n_layer, bare.model.gelu), (2, GeluKind::Tanh));
    assert!(bare.params.iter().zip(&full.params).all(|(a, b)| a.to_bits() == b.to_bits()));
    // an lm_head that is not wte is refused
    let other: Vec<u8> = wte.data().iter().map(|b| b ^ 1).collect();
    rewrite(&file, |n| Some(n.to_string()), vec![("lm_head.weight".into(), wte.shape().to_vec(), other)]);
    let e = hf::load(&file, Some(2)).unwrap_err().to_string();
    assert!(e.contains("lm_head") && e.contains("tied") || e.contains("ties"), "{e}");
}

/// A copy of the tiny model directory whose config.json is edited by `edit`.
fn with_config(name: &str, edit: impl Fn(&mut serde_json::Map<String, Value>)) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::copy(tiny("tiny-gpt2/model.safetensors"), dir.join("model.safetensors")).unwrap();
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(tiny("tiny-gpt2/config.json")).unwrap()).unwrap();
    edit(c.as_object_mut().unwrap());
    std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
    dir
}

#[test]
fn bad_files_get_clear_errors() {
    let err = |p: &Path| hf::load(p, None).unwrap_err().to_string();
    let d = with_config("hf-nokey", |c| {
        c.remove("n_head");
    });
    let e = err(&d);
    assert!(e.contains("\"n_head\" is missing") && e.contains("config.json"), "{e}");
    let d = with_config("hf-shape", |c| {
        c.insert("n_embd".into(), 64.into());
    });
    let e = err(&d);
    assert!(e.contains("has shape") && e.contains("n_embd 64") && e.contains("disagree"), "{e}");
    let d = with_config("hf-neox", |c| {
        c.insert("model_type".into(), "gpt_neox".into());
    });
    let e = err(&d);
    assert!(e.contains("gpt_neox") && e.contains("model_type \"gpt2\""), "{e}");
    let d = with_config("hf-llama", |c| {
        c.insert("model_type".into(), "llama".into());
    });
    assert!(err(&d).contains("\"llama\" is not supported"), "{}", err(&d));
    let d = with_config("hf-act", |c| {
        c.insert("activation_function".into(), "silu".into());
    });
    assert!(err(&d).contains("silu"), "{}", err(&d));
    let d = with_config("hf-eps", |c| {
        c.insert("layer_norm_epsilon".into(), 1e-6.into());
    });
    assert!(err(&d).contains("layer_norm_epsilon"), "{}", err(&d));
    // a LLaMA-style weights file without config.json
    let dir = temp_dir("hf-llama-file");
    let file = dir.join("model.safetensors");
    rewrite(
        &file,
        |n| Some(n.replace("transformer.h.", "model.layers.").replace("attn.c_attn", "self_attn.q_proj")),
        vec![],
    );
    let e = err(&file);
    assert!(e.contains("LLaMA") && e.contains("gpt2"), "{e}");
    let dir = temp_dir("hf-neox-file");
    let file = dir.join("model.safetensors");
    rewrite(&file, |n| Some(n.replace("transformer.", "gpt_neox.")), vec![]);
    assert!(err(&file).contains("GPT-NeoX"), "{}", err(&file));
    // a missing tensor, and a tensor GPT-2 does not have
    let dir = temp_dir("hf-missing");
    std::fs::copy(tiny("tiny-gpt2/config.json"), dir.join("config.json")).unwrap();
    rewrite(&dir.join("model.safetensors"), |n| (!n.ends_with("h.1.mlp.c_fc.bias")).then(|| n.to_string()), vec![]);
    let e = err(&dir);
    assert!(e.contains("h.1.mlp.c_fc.bias") && e.contains("missing"), "{e}");
    rewrite(
        &dir.join("model.safetensors"),
        |n| Some(n.to_string()),
        vec![("transformer.h.2.ln_1.weight".into(), vec![32], vec![0; 128])],
    );
    let e = err(&dir);
    assert!(e.contains("h.2.ln_1.weight") && e.contains("not part of a GPT-2"), "{e}");
    // a directory without config.json
    let dir = temp_dir("hf-noconfig");
    std::fs::copy(tiny("tiny-gpt2/model.safetensors"), dir.join("model.safetensors")).unwrap();
    assert!(err(&dir).contains("has no config.json"), "{}", err(&dir));
}

#[test]
fn fine_tuning_with_a_variant_starts_from_its_init() {
    let pre = hf::load(&tiny("tiny-gpt2"), None).unwrap();
    for a in [AttentionKind::Quiet, AttentionKind::Sink, AttentionKind::Gated, AttentionKind::Outgate] {
        let cfg = Config { attention: a, block_size: 16, ..Config::default() };
        let model = pre.train_config(&cfg).model_config(0);
        assert_eq!((model.block_size, model.vocab_size, model.gelu, model.attention), (16, 96, GeluKind::Tanh, a));
        let lay = ParamLayout::new(&model);
        let mut init = vec![0.0f32; lay.total];
        init_params(&model, &lay, &mut Rng::new(1, 1), &mut init);
        let mut p = init.clone();
        pre.transplant(&model, &mut p).unwrap();
        let src = ParamLayout::new(&pre.model);
        for t in lay.named() {
            let got = &p[t.offset..t.offset + t.len];
            match src.find(&t.name) {
                Some(s) => assert_eq!(got, &pre.params[s.offset..s.offset + t.len], "{}", t.name),
                None => {
                    assert_eq!(got, &init[t.offset..t.offset + t.len], "{a}: {} keeps its init", t.name);
                    if t.kind == Kind::Sink {
                        assert!(got.iter().all(|&x| x == 0.0), "sink starts as quiet");
                    }
                }
            }
        }
    }
}

#[test]
fn gelu_key_defaults_to_erf_and_parses() {
    assert_eq!(Config::default().gelu, GeluKind::Erf);
    let c = Config::build(None, None, &["--gelu=tanh".into()]).unwrap();
    assert_eq!((c.gelu, c.model_config(5).gelu), (GeluKind::Tanh, GeluKind::Tanh));
    let e = Config::build(None, None, &["--gelu=relu".into()]).unwrap_err().to_string();
    assert!(e.contains("gelu"), "{e}");
    let old = Config::default().to_toml().replace("gelu = \"erf\"\n", "");
    assert_eq!(toml::from_str::<Config>(&old).unwrap().gelu, GeluKind::Erf);
    let m = quietgpt::config::ModelConfig::new(1, 1, 4, 4, 5, true, 0.0, AttentionKind::Softmax);
    let json = serde_json::to_string(&m).unwrap().replace(",\"gelu\":\"erf\"", "");
    assert!(!json.contains("\"gelu\":"), "{json}"); // (the activation key's value is "gelu" too)
    assert_eq!(serde_json::from_str::<quietgpt::config::ModelConfig>(&json).unwrap(), m);
}

/// The whole path on the command line, at toy scale: sample, analyze and quantize-eval a Hugging Face
/// model; fine-tune it with quiet attention; analyze the result; export refuses it.
#[test]
fn command_line_end_to_end() {
    let dir = temp_dir("hf-cli");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_quietgpt")).args(args).current_dir(&dir).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(!text.contains("panicked"), "{args:?}:\n{text}");
        (out.status.success(), text)
    };
    let model = tiny("tiny-gpt2");
    let model = model.to_str().unwrap();
    // GPT-2 BPE of single letters and punctuation stays below 94 (the printable bytes)
    let text: String = (0..2000).map(|i| ["a", "!", "b", "?", "c", ",", "x", "."][i % 8]).collect();
    std::fs::write(dir.join("eval.txt"), &text).unwrap();
    let (ok, out) =
        run(&["sample", "--init_from", model, "--start", "a", "--num_samples", "1", "--max_new_tokens", "5"]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["analyze", model, "--input", "eval.txt", "--windows", "2", "--block_size", "16"]);
    assert!(ok && out.contains("2 val windows of 16 tokens"), "{out}");
    let (ok, out) = run(&["quantize-eval", "--init_from", model, "--input", "eval.txt", "--max_windows", "2"]);
    assert!(ok && out.contains("W8A8"), "{out}");
    let (ok, out) = run(&["analyze", model]);
    assert!(!ok && out.contains("--input FILE"), "{out}");
    // fine-tune with quiet attention on char-level data that fits the 96-token vocabulary
    let (ok, out) = run(&["prepare", "--input", "eval.txt", "--out", "data"]);
    assert!(ok, "{out}");
    let (ok, out) = run(&[
        "train",
        &format!("--init_from={model}"),
        "--attention=quiet",
        "--data_dir=data",
        "--out_dir=ft",
        "--block_size=16",
        "--batch_size=2",
        "--max_iters=3",
        "--eval_interval=3",
        "--eval_iters=1",
        "--warmup_iters=1",
        "--lr_decay_iters=3",
        "--n_layer=7", // the model's shape follows the file
    ]);
    assert!(ok && out.contains("init_from") && out.contains("2 layers"), "{out}");
    let ck = checkpoint::load(&dir.join("ft/ckpt.safetensors")).unwrap();
    assert_eq!(
        (ck.model.n_layer, ck.model.gelu, ck.model.attention, ck.model.block_size),
        (2, GeluKind::Tanh, AttentionKind::Quiet, 16)
    );
    let (ok, out) = run(&["analyze", "ft", "--windows", "1"]);
    assert!(ok && out.contains("quiet attention"), "{out}");
    let (ok, out) = run(&["export", "--format", "hf", "ft", "hf-out"]);
    assert!(!ok && out.contains("softmax"), "{out}");
    // char-level data cannot feed a GPT-2-sized vocabulary
    let (ok, out) = run(&["train", "--init_from=nowhere", "--data_dir=data"]);
    assert!(!ok && out.contains("nowhere"), "{out}");
}
