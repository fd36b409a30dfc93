#!/usr/bin/env bash
# CUDA path check for issue 6: uint8 upload from pinned memory, device normalisation, channels_last, AMP, and images/s
# for batch sizes 1..256. Exits 1 when a CUDA-path property does not hold. Without CUDA it runs a short CPU dry run.
# Usage (repository root): benchmarks/gpu_check.sh [--max-batch 256] [--seconds 2]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
export HF_HUB_OFFLINE=1 PYTHONPATH=$PWD
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
