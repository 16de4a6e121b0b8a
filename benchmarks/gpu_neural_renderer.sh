#!/usr/bin/env bash
# Prepared GPU check of the neural renderer: AMP on, a few hundred steps on synthetic data,
# throughput (train steps/s, frames/s, peak memory, render frames/s) printed and written as JSON.
#
#   benchmarks/gpu_neural_renderer.sh                       # on a GPU machine: 256 px, 300 steps
#   benchmarks/gpu_neural_renderer.sh --device cpu --size 64 --arch unet_tiny --steps 3 \
#       --warmup 1 --e2e_steps 2 --batch_size 2 --num_workers 0 --frames 8   # smoke run anywhere
#
# Extra arguments go to benchmarks/gpu_neural_renderer.py; results go to $OUT when set
# (the device machine's output folder), else benchmarks/results/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
py="$root/.venv/bin/python"; [ -x "$py" ] || py=python3
out_dir="${OUT:-$root/benchmarks/results}"
mkdir -p "$out_dir"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
cd "$root"
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$py" "$here/gpu_neural_renderer.py" \
    --json "$out_dir/gpu_neural_renderer.json" "$@"
