//! `quietgpt experiment` arms (`--variants NAME:key=value+...`), `--shard i/n` and `--merge`: the arms'
//! syntax and errors, shards run side by side plus a merge giving the report of one unsharded run, a
//! partial merge naming the missing runs, and the per-run lock.

mod common;

use common::cli::{quietgpt, quietgpt_split};
use common::{shakespeare, temp_dir};
use quietgpt::analysis::experiment::{Arm, QUICK};
use quietgpt::config::AttentionKind;
use quietgpt::fs::DirLock;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

#[test]
fn arms_parse_and_refuse_what_they_cannot_be() {
    let arms =
        Arm::parse_list("softmax, quiet,sgd:learning_rate=0.03+weight_decay=0,s2:attention=sink;eps=1e+3").unwrap();
    let got: Vec<(&str, AttentionKind, Vec<&str>)> =
        arms.iter().map(|a| (a.name.as_str(), a.attention, a.overrides.iter().map(|s| s.as_str()).collect())).collect();
    assert_eq!(
        got,
        [
            ("softmax", AttentionKind::Softmax, vec![]),
            ("quiet", AttentionKind::Quiet, vec![]),
            ("sgd", AttentionKind::Softmax, vec!["learning_rate=0.03", "weight_decay=0"]),
            ("s2", AttentionKind::Sink, vec!["eps=1e+3"]),
        ]
    );
    assert_eq!(arms[2].describe(), "sgd (softmax; learning_rate=0.03, weight_decay=0)");
    assert_eq!(arms[0].describe(), "softmax");
    // Named after a variant: that variant, with the overrides.
    let q = Arm::parse("quiet:learning_rate=1e-2").unwrap();
    assert_eq!((q.attention, q.overrides.len()), (AttentionKind::Quiet, 1));
    // An arm's own max_iters moves lr_decay_iters with it.
    let m = Arm::parse("long:max_iters=200").unwrap();
    assert_eq!(m.effective_overrides(), ["max_iters=200", "lr_decay_iters=200"]);

    for (entry, needle) in [
        ("loud", "loud"),
        ("quiet:attention=softmax", "named after the variant"),
        ("a b:learning_rate=1", "letters, digits"),
        ("x:seed=3", "--seeds"),
        ("x:data_dir=elsewhere", "--data_dir"),
        ("x:", "no key=value"),
        ("x:learning_rate", "key=value"),
        ("x:attention=loud", "loud"),
    ] {
        let e = Arm::parse(entry).unwrap_err().to_string();
        assert!(e.contains(needle) && e.contains(entry.split(':').next().unwrap()), "{entry}: {e}");
    }
    // An unknown key is refused when the arm's config is made.
    let base = quietgpt::config::Config::preset(QUICK.config).unwrap();
    let e = Arm::parse("x:n_layayer=2").unwrap().apply(&base).unwrap_err().to_string();
    assert!(e.contains("arm 'x'") && e.contains("n_layayer"), "{e}");
    let c = Arm::parse("x:learning_rate=0.03").unwrap().apply(&base).unwrap();
    assert_eq!((c.learning_rate, c.attention), (0.03, AttentionKind::Softmax));
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// metrics.json without what may differ between two runs of the same experiment: the wall times, the
/// output directory and the list of missing runs.
fn numbers(out: &Path) -> Value {
    let mut m = json(&out.join("metrics.json"));
    for r in m["runs"].as_array_mut().unwrap() {
        r.as_object_mut().unwrap().remove("seconds");
    }
    m.as_object_mut().unwrap().remove("experiment");
    m
}

#[test]
fn shards_side_by_side_then_merge_give_the_unsharded_report() {
    let dir = temp_dir("experiment-shards");
    let input = shakespeare();
    let input = input.to_str().unwrap();
    let common = [
        "experiment",
        "--quick",
        "--input",
        input,
        "--analyze_every",
        "50",
        "--variants",
        "softmax,quiet,lowlr:learning_rate=3e-4+weight_decay=0",
    ];
    let with = |extra: &[&str]| -> Vec<String> { common.iter().chain(extra).map(|s| s.to_string()).collect() };
    let whole = with(&["--out", "whole"]);
    let (ok, text) = quietgpt(&dir, &whole.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{text}");

    // Two shards at once into one directory (both prepare the same data), then the merge.
    let spawn = |shard: &str| {
        Command::new(env!("CARGO_BIN_EXE_quietgpt"))
            .args(with(&["--out", "sharded", "--shard", shard]))
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn("0/2"));
        let b = s.spawn(|| spawn("1/2"));
        (a.join().unwrap(), b.join().unwrap())
    });
    for (o, shard) in [(&a, "0/2"), (&b, "1/2")] {
        let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "shard {shard} failed:\n{text}");
        assert!(text.contains(&format!("shard {shard}: 3 of the 6 runs")), "{text}");
        assert!(!text.contains("writing the report"), "a shard wrote the report:\n{text}");
    }
    let sharded = dir.join("sharded");
    assert!(!sharded.join("report.md").exists());
    let (code, stdout, stderr) = quietgpt_split(&dir, &["experiment", "--merge", "--out", "sharded"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stderr.contains("missing"), "{stderr}");
    assert_eq!(numbers(&sharded), numbers(&dir.join("whole")), "sharded + merge differs from one unsharded run");
    for f in ["report.md", "traj_first_norm.png", "traj_massive.png", "traj_sink.png", "traj_logit_gap.png"] {
        assert!(sharded.join(f).exists(), "{f}");
    }
    let report = std::fs::read_to_string(sharded.join("report.md")).unwrap();
    assert!(report.contains("lowlr (softmax; learning_rate=3e-4, weight_decay=0)") && !report.contains("missing"));

    // The arm's record: its name, folder, overrides in the spec, and its config.
    let rec = json(&sharded.join("runs/lowlr-seed1/done.json"));
    assert_eq!((rec["arm"].as_str(), rec["variant"].as_str()), (Some("lowlr"), Some("softmax")));
    assert_eq!(rec["spec"]["overrides"], serde_json::json!(["learning_rate=3e-4", "weight_decay=0"]));
    assert_eq!(rec["spec"]["config"]["learning_rate"], 3e-4);
    assert!(json(&sharded.join("runs/quiet-seed0/done.json"))["spec"].get("overrides").is_none());

    // The resume check covers the arm's overrides: another learning rate for lowlr is refused.
    let (ok, text) = quietgpt(
        &dir,
        &[&common[..6], &["--variants", "softmax,quiet,lowlr:learning_rate=1e-3+weight_decay=0", "--out", "sharded"]]
            .concat(),
    );
    assert!(!ok && text.contains("learning_rate") && text.contains("lowlr-seed0"), "{text}");
}

#[test]
fn a_partial_merge_names_the_missing_runs_and_a_held_run_is_refused() {
    let dir = temp_dir("experiment-merge");
    let input = shakespeare();
    let args = ["experiment", "--quick", "--input", input.to_str().unwrap(), "--out", "exp"];
    // Nothing started: a clear error.
    let (ok, text) = quietgpt(&dir, &["experiment", "--merge", "--out", "exp"]);
    assert!(!ok && text.contains("experiment.json") && text.contains("no experiment"), "{text}");

    // A run held by another process: its shard stops there, naming the holder.
    // The plan is seed-major (softmax-seed0, quiet-seed0, softmax-seed1, quiet-seed1): shard 0 of 3 has runs
    // 0 and 3.
    let lock = DirLock::acquire(&dir.join("exp/locks/quiet-seed1"), "a test").unwrap();
    let (ok, text) = quietgpt(&dir, &[&args[..], &["--shard", "0/3"]].concat());
    assert!(!ok && text.contains("in use by process") && text.contains("a test"), "{text}");
    drop(lock);

    // Shard 1 of 3 too (softmax-seed0 was finished by the refused shard before it stopped).
    let (ok, text) = quietgpt(&dir, &[&args[..], &["--shard", "1/3"]].concat());
    assert!(ok && text.contains("shard 1/3: 1 of the 4 runs (quiet-seed0)"), "{text}");
    let (code, stdout, stderr) = quietgpt_split(&dir, &["experiment", "--merge", "--out", "exp"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("2 of 4 runs are missing") && stderr.contains("softmax-seed1, quiet-seed1"), "{stderr}");
    let report = std::fs::read_to_string(dir.join("exp/report.md")).unwrap();
    assert!(report.contains("2 of 4 runs are missing") && report.contains("softmax-seed1, quiet-seed1"), "{report}");
    let m = json(&dir.join("exp/metrics.json"));
    assert_eq!(m["runs"].as_array().unwrap().len(), 2);
    assert_eq!(m["experiment"]["missing_runs"], serde_json::json!(["softmax-seed1", "quiet-seed1"]));

    // A record written before arms and the sink metrics (no `arm`, no sink fields) still counts as finished.
    let done = dir.join("exp/runs/softmax-seed0/done.json");
    let mut old = json(&done);
    old.as_object_mut().unwrap().remove("arm");
    for key in ["first_norm_ratio", "massive_ratio", "logit_gap", "drain_ratio"] {
        old["summary"].as_object_mut().unwrap().remove(key);
    }
    for l in old["summary"]["layers"].as_array_mut().unwrap() {
        l.as_object_mut()
            .unwrap()
            .retain(|k, _| !k.contains("first_norm") && !k.contains("sink") && !k.contains("drain"));
    }
    std::fs::write(&done, serde_json::to_string(&old).unwrap()).unwrap();
    let (ok, text) = quietgpt(&dir, &[&args[..], &["--shard", "0/3"]].concat());
    assert!(ok && text.contains("softmax seed 0: already finished"), "{text}");
    let (ok, text) = quietgpt(&dir, &["experiment", "--merge", "--out", "exp"]);
    assert!(ok && text.contains("1 of 4 runs are missing"), "{text}");
    let m = json(&dir.join("exp/metrics.json"));
    assert_eq!(m["runs"][0]["arm"], "softmax");

    // Bad arguments: one clear line each.
    for (extra, needle) in [
        (&["--shard", "3/3"][..], "0 <= i < n"),
        (&["--shard", "one/two"], "i/n"),
        (&["--merge", "--variants", "quiet"], "--variants"),
        (&["--merge", "--learning_rate=1"], "--merge takes the settings"),
        (&["--shard", "0/2", "--plot_layer", "0"], "--plot_layer"),
        (&["--plot_layer", "7"], "--plot_layer 7"),
    ] {
        let all: Vec<&str> = if extra[0] == "--merge" {
            [&["experiment", "--out", "exp"][..], extra].concat()
        } else {
            [&args[..], extra].concat()
        };
        let (ok, text) = quietgpt(&dir, &all);
        assert!(!ok && text.contains(needle), "{all:?} should fail mentioning {needle:?}:\n{text}");
    }
}

#[test]
fn the_slurm_script_runs_its_shard_and_the_merge() {
    // scripts/slurm-experiment.sh as Slurm would run it: two array tasks, then the merge job.
    let dir = temp_dir("experiment-slurm");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slurm-experiment.sh");
    let input = shakespeare();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new("bash");
        c.arg(script).args(args).current_dir(&dir).env("QUIETGPT", env!("CARGO_BIN_EXE_quietgpt"));
        for v in ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX"] {
            c.env_remove(v);
        }
        let o = c.envs(env.iter().copied()).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        (o.status.success(), text)
    };
    let args = ["--quick", "--input", input.to_str().unwrap(), "--variants", "softmax", "--out", "exp"];
    for task in ["0", "1"] {
        let env = [
            ("SLURM_ARRAY_TASK_ID", task),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "1"),
            ("SLURM_CPUS_PER_TASK", "1"),
        ];
        let (ok, text) = run(&env, &args);
        assert!(ok && text.contains(&format!("shard {task}/2: 1 of the 2 runs")), "{text}");
    }
    let (ok, text) = run(&[], &["--merge", "--out", "exp"]);
    assert!(ok && text.contains("report: exp/report.md"), "{text}");
    assert_eq!(json(&dir.join("exp/metrics.json"))["runs"].as_array().unwrap().len(), 2);
    let (ok, text) =
        run(&[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_MAX", "2")], &args);
    assert!(!ok && text.contains("--array=0-(N-1)"), "{text}");
}
