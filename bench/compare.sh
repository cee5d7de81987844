#!/usr/bin/env bash
# Side-by-side speed comparison with PyTorch nanoGPT on this machine (a benchmark run by hand; not part
# of the tests or CI). Runs quietgpt's bench and bench/torch_reference.py alternately
# (A B A B ...) on the same presets and attention variants, then prints the ratio of medians.
#
#   bench/compare.sh [rounds] [iters] [presets] [attentions]
#   bench/compare.sh 3 30 "tiny medium" "softmax quiet"
#
# It creates the PyTorch virtual environment it needs if it is missing ($TORCH_VENV, default .venv-torch).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
ITERS=${2:-30}
PRESETS=${3:-"tiny medium"}
ATTNS=${4:-"softmax quiet"}
THREADS=${THREADS:-$(nproc)}
TORCH_VENV=${TORCH_VENV:-.venv-torch}
REF=${TORCH_REF:-bench/torch_reference.py}

[ -f "$REF" ] || { echo "missing $REF (set TORCH_REF)" >&2; exit 1; }
if [ ! -x "$TORCH_VENV/bin/python" ]; then
  echo "creating $TORCH_VENV with torch and numpy (once)..." >&2
  python3 -m venv "$TORCH_VENV"
  "$TORCH_VENV/bin/pip" install -q torch numpy
fi
cargo build --release -q
Q=./target/release/quietgpt

results=$(mktemp)
for preset in $PRESETS; do
  for att in $ATTNS; do
    iters=$ITERS
    [ "$preset" = medium ] && iters=$(( ITERS < 5 ? ITERS : 5 ))
    for r in $(seq "$ROUNDS"); do
      $Q bench --preset "$preset" --attention "$att" --iters "$iters" --warmup 2 --threads "$THREADS" --json >> "$results"
      "$TORCH_VENV/bin/python" "$REF" --preset "$preset" --attention "$att" --iters "$iters" --warmup 2 --threads "$THREADS" >> "$results"
    done
  done
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
keys = sorted({(r["preset"], r["attention"]) for r in rows})
print(f"{'preset':8} {'attention':9} {'quietgpt ms':>12} {'pytorch ms':>11} {'speedup':>8} {'quietgpt MFU':>12} {'RSS MB':>7}")
for p, a in keys:
    q = [r for r in rows if (r["preset"], r["attention"]) == (p, a) and r["impl"] == "quietgpt"]
    t = [r for r in rows if (r["preset"], r["attention"]) == (p, a) and r["impl"] == "pytorch"]
    qm = statistics.median(r["ms_per_iter_median"] for r in q)
    tm = statistics.median(r["ms_per_iter_median"] for r in t)
    mfu = statistics.median(r["mfu"] for r in q)
    rss = max(r["peak_rss_mb"] for r in q)
    print(f"{p:8} {a:9} {qm:12.2f} {tm:11.2f} {tm / qm:7.2f}x {mfu * 100:11.1f}% {rss:7.0f}")
torch = {r.get("torch") for r in rows if r["impl"] == "pytorch"}
print("pytorch", ", ".join(sorted(t for t in torch if t)))
PY
rm -f "$results"
