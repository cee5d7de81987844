#!/usr/bin/env bash
# quietgpt experiment on a Slurm cluster: one array task per shard of the runs, then one job that merges
# them into the report. From the repository (or any directory the jobs share), with N shards:
#
#   OUT=exp-sinks N=4
#   quietgpt prepare --input my.txt --out $OUT/data        # once, before the shards (see below)
#   jid=$(sbatch --parsable --array=0-$((N-1)) scripts/slurm-experiment.sh \
#           --out $OUT --data_dir $OUT/data --variants softmax,quiet,lowlr:learning_rate=3e-4 --seeds 5)
#   sbatch --dependency=afterok:$jid scripts/slurm-experiment.sh --merge --out $OUT
#
# Array task i runs `quietgpt experiment --shard i/N ARGS...` (N = the array's task count) into the shared
# --out: run k of the experiment's plan is shard k mod N's. Give every task the same ARGS (one sbatch
# does). A job without an array index (the merge job) runs `quietgpt experiment ARGS...` as given.
# With afterok the merge waits for every shard to succeed; with afterany it also runs after a failed
# shard and writes the report of the finished runs, naming the missing ones (re-submit the array with
# the same ARGS to finish them: finished runs are skipped, interrupted ones continue from their
# checkpoint).
#
# Data: shards on one machine prepare it in turn (under a lock), but that lock cannot see processes on
# other machines, so prepare the data once before submitting (as above) and pass --data_dir; without
# --input and --data_dir, Tiny Shakespeare must already be in data/shakespeare_char (`quietgpt prepare`).
# Relative paths are taken from the directory sbatch was called in (Slurm's default working directory).
#
# QUIETGPT names the binary (default: quietgpt on PATH, else target/release/quietgpt). Each shard uses
# --threads=$SLURM_CPUS_PER_TASK; runs on other thread counts agree to the last bits only.
#SBATCH --job-name=quietgpt-exp
#SBATCH --cpus-per-task=4
#SBATCH --time=08:00:00
#SBATCH --output=%x-%A_%a.out
set -euo pipefail

if [[ -z "${QUIETGPT:-}" ]]; then
    if command -v quietgpt >/dev/null 2>&1; then
        QUIETGPT=quietgpt
    else
        QUIETGPT=target/release/quietgpt
    fi
fi

if [[ -z "${SLURM_ARRAY_TASK_ID:-}" ]]; then
    exec "$QUIETGPT" experiment "$@"
fi

if [[ "${SLURM_ARRAY_TASK_MIN:-0}" != 0 ]]; then
    echo "slurm-experiment.sh: submit the shards as --array=0-(N-1) (this array starts at ${SLURM_ARRAY_TASK_MIN})" >&2
    exit 2
fi
n=${SLURM_ARRAY_TASK_COUNT:-$(( ${SLURM_ARRAY_TASK_MAX:?not an array job} + 1 ))}
threads=()
if [[ -n "${SLURM_CPUS_PER_TASK:-}" ]]; then
    threads=(--threads="$SLURM_CPUS_PER_TASK")
fi
exec "$QUIETGPT" experiment --shard "$SLURM_ARRAY_TASK_ID/$n" "$@" ${threads[@]+"${threads[@]}"}
