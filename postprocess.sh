#!/usr/bin/env bash
# Seed-compatible entry point (NED release): ./postprocess.sh <celeb_path> <exp_name> [<renderer_checkpoint>]
# Without a renderer checkpoint the training-free renderer is used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="$here/.venv/bin/python"; [ -x "$py" ] || py=python3
if [ "$#" -lt 2 ]; then echo "usage: $0 <celeb_path> <exp_name> [<renderer_checkpoint>]" >&2; exit 2; fi
celeb="$1"; exp="$2"; shift 2
if [ "$#" -ge 1 ] && [ "${1#-}" = "$1" ]; then
  ckpt="$1"; shift
  exec "$py" -m ned postprocess "$celeb" --exp_name "$exp" --renderer neural --renderer_checkpoint "$ckpt" "$@"
fi
exec "$py" -m ned postprocess "$celeb" --exp_name "$exp" "$@"
