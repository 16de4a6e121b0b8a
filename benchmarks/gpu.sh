#!/usr/bin/env bash
# Run one of the prepared GPU scripts on a machine with CUDA (or as a smoke run anywhere):
#
#   benchmarks/gpu.sh gpu_check                  # correctness of the CUDA path: renderer, manipulator,
#                                                # DECA backend, torchrun; one PASS/FAIL/SKIP line each
#   benchmarks/gpu.sh gpu_check --device cpu     # smoke run anywhere (torchrun checks skipped)
#   benchmarks/gpu.sh gpu_neural_renderer        # neural-renderer throughput: 256 px, 300 steps, AMP
#   benchmarks/gpu.sh gpu_neural_renderer --device cpu --size 64 --arch unet_tiny --steps 3 \
#       --warmup 1 --e2e_steps 2 --batch_size 2 --num_workers 0 --frames 8   # smoke run anywhere
#
# Prints the GPU and torch build first. Extra arguments go to benchmarks/<script>.py
# (--help lists them); its JSON goes to $OUT/<script>.json when OUT is set (a lent
# machine's output folder), else to benchmarks/results/<script>.json.
set -euo pipefail
name="${1:?usage: benchmarks/gpu.sh gpu_check|gpu_neural_renderer [args]}"; shift
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
[ -f "$here/$name.py" ] || { echo "no benchmark script $here/$name.py" >&2; exit 2; }
py="$root/.venv/bin/python"; [ -x "$py" ] || py=python3
out_dir="${OUT:-$root/benchmarks/results}"
mkdir -p "$out_dir"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
cd "$root"
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$py" "$here/$name.py" --json "$out_dir/$name.json" "$@"
