#!/usr/bin/env bash
# Installs NVIDIA's CUDA 13.0 compiler wheels from PyPI (no GPU, no driver needed) into a folder outside the
# repository, for the CUDA compile checks (tests/cuda_compile.rs) and for `quietgpt` on a machine without a
# CUDA toolkit: NVRTC (libnvrtc.so.13, libnvrtc-builtins.so.13.0), the headers it needs (cuda_bf16.h from
# the runtime wheel, cuda/std and nv/target from cccl, crt/*), and ptxas (from the nvcc wheel).
#
#   scripts/cuda-wheels.sh [DIR]      DIR defaults to $QUIETGPT_CUDA_WHEELS, else ~/.cache/quietgpt/cuda-wheels-13.0
#
# Skips the download when DIR already holds them. Prints DIR on the last line of stdout (the rest goes to
# stderr), so that `export QUIETGPT_CUDA_WHEELS="$(scripts/cuda-wheels.sh | tail -n1)"` works.
# Needs python3 with pip (`pip install --target` bypasses PEP 668's externally-managed check); about 350 MB on disk.
set -euo pipefail

dir="${1:-${QUIETGPT_CUDA_WHEELS:-$HOME/.cache/quietgpt/cuda-wheels-13.0}}"
cu="$dir/nvidia/cu13"
have() {
  [ -e "$cu/lib/libnvrtc.so.13" ] && [ -e "$cu/include/cuda_bf16.h" ] && [ -d "$cu/include/cccl" ] \
    && [ -e "$cu/include/crt/host_defines.h" ] && [ -x "$cu/bin/ptxas" ]
}
if have; then
  echo "cuda-wheels: already in $dir" >&2
  echo "$dir"
  exit 0
fi
repo="$(cd "$(dirname "$0")/.." && pwd)"
case "$(realpath -m "$dir")/" in
  "$repo"/*) echo "cuda-wheels: $dir is inside the repository; choose a folder outside it" >&2; exit 1 ;;
esac
py="${PYTHON:-python3}"
if ! command -v "$py" >/dev/null || ! "$py" -m pip --version >/dev/null 2>&1; then
  echo "cuda-wheels: needs python3 with pip (Debian: apt-get install python3-pip), or set PYTHON" >&2
  exit 1
fi
echo "cuda-wheels: installing the CUDA 13.0 NVRTC, headers and ptxas wheels into $dir" >&2
# Into a fresh folder beside the target, moved into place when complete: an interrupted download
# never leaves a half-installed folder that `have` would take for a whole one.
tmp="$(mktemp -d "$dir.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# --no-deps: the five are the whole set (nvcc's own dependencies are runtime and crt, listed, and nvvm, which
# ptxas does not need: 170 MB saved).
PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
  --no-deps --target "$tmp" \
  'nvidia-cuda-nvrtc==13.0.*' 'nvidia-cuda-runtime==13.0.*' 'nvidia-cuda-cccl==13.0.*' \
  'nvidia-cuda-crt==13.0.*' 'nvidia-cuda-nvcc==13.0.*' >&2
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
have || { echo "cuda-wheels: installed, but $cu lacks libnvrtc.so.13, cuda_bf16.h, cccl, crt or bin/ptxas" >&2; exit 1; }
echo "$dir"
