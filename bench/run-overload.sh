#!/usr/bin/env bash
# Overload benchmark: kandle-runtime at several times the load it sustains (default 4x).
#
# Builds the release binary, starts it on loopback with a short request deadline, measures the
# rate it sustains with a closed loop, then offers MULTIPLIER times that rate open-loop and prints
# what clients got (status counts, latency percentiles, 200s within the deadline, 429s within
# 10 ms), whether /readyz stayed 200, and the server's peak memory.
#
# Usage: bench/run-overload.sh [SENTENCES]  (env: THREADS, PORT, DEADLINE, MULTIPLIER, DURATION,
#        BATCH)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source bench/serve.sh
python="${PYTHON:-python3}"
threads="${THREADS:-$(nproc)}"
port="${PORT:-18181}"
deadline="${DEADLINE:-2s}"
multiplier="${MULTIPLIER:-4}"
duration="${DURATION:-30}"
batch="${BATCH:-8}"
sentences="${1:-target/bench/sentences.txt}"

model_dir="$(scripts/fetch-model.sh)"
mkdir -p target/bench
[[ -s "$sentences" ]] || "$python" bench/make_sentences.py 2048 > "$sentences"
cargo build --release -p kandle-runtime --bin kandle-runtime --example overload >&2

echo "== machine: $(nproc) cores; server threads=$threads, deadline=$deadline"
start_server "$port" target/bench/overload-server.log --model-dir "$model_dir" \
  --served-name bench --threads "$threads" --request-timeout "$deadline"
grep -o '"max_queued_tokens":[0-9]*' target/bench/overload-server.log | head -n 1 || true

target/release/examples/overload --url "http://127.0.0.1:$port" --sentences "$sentences" \
  --batch "$batch" --multiplier "$multiplier" --seconds "$duration" --deadline "$deadline" \
  --pid "$server"
