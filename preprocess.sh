#!/usr/bin/env bash
# Seed-compatible entry point (NED release): ./preprocess.sh <celeb_path> <train|test|reference>
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="$here/.venv/bin/python"; [ -x "$py" ] || py=python3
if [ "$#" -lt 2 ]; then echo "usage: $0 <celeb_path> <train|test|reference> [ned preprocess options]" >&2; exit 2; fi
celeb="$1"; mode="$2"; shift 2
exec "$py" -m ned preprocess "$celeb" --mode "$mode" "$@"
