#!/usr/bin/env bash
# `quietgpt gpu-check` on a lent GPU machine, which has the NVIDIA driver and a torch venv with NVIDIA's
# CUDA 13 wheels but no Rust: the binary is built here and carried there.
#
# Here (a machine with Rust), once per build:
#   bash bench/gpu-check.sh --prepare
#     builds the release binary and puts a copy without debug info (13 MB; the full one is over the
#     64 MiB a call may carry) in .gpu/quietgpt, which git ignores (.git/info/exclude).
# There (the one command; carry .gpu):
#   bash bench/gpu-check.sh
#     puts the torch venv's nvidia/cu13/lib (cuBLASLt, NVRTC) on LD_LIBRARY_PATH, reports the machine,
#     runs `quietgpt gpu-check` (under 8 minutes) and copies gpu-check.json and its log to $OUT (or .).
#     Extra arguments go to gpu-check (e.g. --batch_sizes 16 --no_pytorch). PYTHON= names the python
#     with torch (default python3), QUIETGPT_BIN= another binary.
# Exit status: gpu-check's (non-zero on any tolerance failure or error).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    set -e
    cargo build --release
    mkdir -p .gpu
    objcopy --strip-debug target/release/quietgpt .gpu/quietgpt
    exclude=$(git rev-parse --git-path info/exclude)
    grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >>"$exclude"
    ls -l .gpu/quietgpt
    echo "carry .gpu and run: bash bench/gpu-check.sh"
    exit 0
fi

PY=${PYTHON:-python3}
OUT_DIR=${OUT:-.}
BIN=${QUIETGPT_BIN:-}
if [ -z "$BIN" ]; then
    for b in .gpu/quietgpt target/release/quietgpt; do
        if [ -x "$b" ]; then BIN=$b; break; fi
    done
fi
if [ -z "$BIN" ]; then
    echo "no quietgpt binary: run 'bash bench/gpu-check.sh --prepare' on a machine with Rust and carry .gpu" >&2
    exit 2
fi

# NVIDIA's wheels: `nvidia` is a namespace package (no __file__), its folder is __path__[0].
NV=$("$PY" -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null || true)
if [ -n "$NV" ] && [ -d "$NV/cu13/lib" ]; then
    export LD_LIBRARY_PATH="$NV/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
if [ -d /usr/local/cuda/lib64 ]; then
    export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/local/cuda/lib64"
fi

LOG="$OUT_DIR/gpu-check.log"
{
    echo "== machine"
    uname -srm
    ldd --version 2>&1 | head -1
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || echo "nvidia-smi failed"
    echo "python: $PY ($("$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)' 2>&1))"
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    ls "$NV/cu13/lib" 2>/dev/null | grep -E 'cublasLt|nvrtc' || echo "no wheel libraries under ${NV:-?}/cu13/lib"
    echo "binary: $BIN"
    ldd "$BIN" 2>&1 | grep -iE 'not found|GLIBC' || true
    echo "== quietgpt gpu-check"
} 2>&1 | tee "$LOG"

timeout 560 "$BIN" gpu-check --out "$OUT_DIR/gpu-check.json" --python "$PY" "$@" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
echo "gpu-check exit status: $rc" | tee -a "$LOG"
exit "$rc"
