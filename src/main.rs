//! quietgpt's command line: parses arguments (clap), calls the library, adds context to errors.

mod cmd;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};
use cmd::out::say;
use quietgpt::config::PRESETS;
use std::process::ExitCode;

/// nanoGPT in Rust, with softmax or quiet (softmax1) attention
#[derive(Parser, Debug)]
#[command(
    name = "quietgpt",
    version,
    after_help = "Examples:
  quietgpt prepare --input input.txt
  quietgpt train --preset shakespeare-char-cpu
  quietgpt sample --out_dir out-shakespeare-char --start \"ROMEO:\"

`quietgpt <command> --help` shows a command's options; `quietgpt config` prints every training key with its
default. README.md has more examples."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Tokenize a text into train.bin, val.bin and vocab.json
    Prepare(cmd::prepare::PrepareArgs),
    /// Train a model: defaults, then --preset, then --config FILE, then --key=value overrides
    Train(cmd::train::TrainArgs),
    /// Generate text from a checkpoint, as nanoGPT's sample.py
    Sample(cmd::sample::SampleArgs),
    /// Activation, weight and attention outlier statistics of a checkpoint
    Analyze(cmd::analyze::AnalyzeArgs),
    /// Val loss of the fake-quantized model (W8A8, W8, A8, W4, ...) against float32
    QuantizeEval(cmd::quantize::QuantizeArgs),
    /// Train, analyse and compare attention variants over seeds, into a report
    Experiment(cmd::experiment::ExperimentArgs),
    /// Time training steps of a preset's shape on random tokens
    Bench(cmd::bench::BenchArgs),
    /// Write a checkpoint as a Hugging Face GPT-2 (config.json + model.safetensors)
    Export(cmd::export::ExportArgs),
    /// Self-test of the CUDA engine on a GPU: kernels against the CPU, training, benchmark, into one JSON
    GpuCheck(cmd::gpu_check::GpuCheckArgs),
    /// Print the resolved training config, every key
    Config(cmd::train::ConfigArgs),
    /// List the presets
    #[command(after_help = "Example:\n  quietgpt presets\n  quietgpt config --preset tiny    # one preset, resolved")]
    Presets,
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(arrange(std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect()));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        Cli::command().print_help()?;
        return Ok(());
    };
    match command {
        Command::Prepare(a) => cmd::prepare::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Sample(a) => cmd::sample::run(a),
        Command::Analyze(a) => cmd::analyze::run(a),
        Command::QuantizeEval(a) => cmd::quantize::run(a),
        Command::Experiment(a) => cmd::experiment::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::GpuCheck(a) => cmd::gpu_check::run(a),
        Command::Config(a) => cmd::train::config(a),
        Command::Presets => {
            for p in PRESETS {
                say!("{:22} {}", p.name, p.about());
            }
            cmd::out::finish()
        }
    }
}

/// The command line as clap should see it. Option names take `-` or `_` alike (`--num-samples` is
/// `--num_samples`), as config keys do. In the commands with `--key=value` overrides (train, config,
/// experiment) the overrides may come anywhere: the command's own options (with their values) are moved
/// in front of everything else, which clap then collects as the overrides (and which the command checks).
fn arrange(args: Vec<String>) -> Vec<String> {
    let mut cli = Cli::command();
    cli.build();
    let Some(sub) = args.get(1).and_then(|name| cli.find_subcommand(name)) else { return args };
    let takes_overrides = sub.get_arguments().any(|a| a.get_id() == "overrides");
    let (mut front, mut back) = (args[..2].to_vec(), vec![]);
    let mut it = args[2..].iter();
    while let Some(a) = it.next() {
        let option = a.strip_prefix("--").filter(|body| !body.is_empty()).and_then(|body| {
            let (name, value) = body.split_once('=').map_or((body, None), |(n, v)| (n, Some(v)));
            let name = name.replace('-', "_");
            let arg = sub.get_arguments().find(|arg| arg.get_long().is_some_and(|l| l.replace('-', "_") == name))?;
            let long = arg.get_long().expect("found by its long name");
            Some((
                value.map_or(format!("--{long}"), |v| format!("--{long}={v}")),
                value.is_none() && arg.get_action().takes_values(),
            ))
        });
        match option {
            Some((option, takes_next)) => {
                front.push(option);
                if takes_next {
                    front.extend(it.next().cloned());
                }
            }
            None if takes_overrides && !matches!(a.as_str(), "-h" | "-V") => back.push(a.clone()),
            None => front.push(a.clone()),
        }
    }
    front.extend(back);
    front
}
