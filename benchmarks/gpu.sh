#!/usr/bin/env bash
# Training throughput on a CUDA GPU (images/s, plain GFL and LD; AMP bf16/fp16 and fp32; eager,
# channels-last, torch.compile; batch 16 of 800x1333). Writes benchmarks/results/gpu_train_step.json.
#   bash benchmarks/gpu.sh                 # on a machine with a CUDA GPU, from the repository root
#   bash benchmarks/gpu.sh --dry-run       # checks the script on the CPU with tiny sizes (prints the JSON)
# Extra arguments go to benchmarks/bench_gpu.py (see its --help). Fails with a one-line error and exit
# code 2 when there is no CUDA device and --dry-run is not given.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
out="benchmarks/results/gpu_train_step.json"
for arg in "$@"; do
    if [[ "$arg" == "--dry-run" ]]; then out=""; fi  # a dry run prints its JSON, writes no result
    if [[ "$arg" == "--out" || "$arg" == --out=* ]]; then out=""; fi
done
if [[ -n "$out" ]]; then set -- "$@" --out "$out"; fi
exec "$PYTHON" benchmarks/bench_gpu.py "$@"
