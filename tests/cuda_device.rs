//! `--device cuda` where CUDA is not usable (CI and the development machines have no GPU and no CUDA
//! libraries on the loader's path): every command that makes an engine fails with exit code 1 and one
//! line (the experiment: its last line), the probe's message naming each missing library and its fix,
//! never a panic.

mod common;

use common::cli::{fails_one_line, quietgpt_split};
use common::temp_dir;
use quietgpt::engine::cuda::device::libs::{probe, Lib};

#[test]
fn cuda_without_a_gpu_is_a_clear_error() {
    let msg = match probe() {
        Ok(found) => {
            eprintln!("CUDA is usable here ({} GPUs): this test is about machines without it", found.devices);
            return;
        }
        Err(e) => e.to_string(),
    };
    assert!(msg.starts_with("device error: "), "{msg}");
    let missing: Vec<Lib> = Lib::ALL.into_iter().filter(|l| !l.present()).collect();
    for l in &missing {
        assert!(msg.contains(l.file()), "{msg}");
    }
    assert!(!missing.is_empty() || msg.contains("no usable GPU"), "{msg}");
    let d = temp_dir("cuda-device");
    // train on the generated backcopy task (no data to prepare), bench, experiment.
    let train = ["train", "--preset=tiny", "--data=backcopy", "--device=cuda", "--max_iters=1", "--out_dir=o"];
    fails_one_line(&d, &train, &[&msg]);
    fails_one_line(&d, &["bench", "--device", "cuda", "--iters", "1"], &[&msg]);
    // The experiment reports its plan first; its error is the last line.
    let (code, _, stderr) = quietgpt_split(&d, &["experiment", "--quick", "--device=cuda", "--out=e"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.trim_end().lines().last().unwrap_or("").contains(&msg), "{stderr}");
}
