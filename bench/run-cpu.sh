#!/usr/bin/env bash
# CPU benchmark: kandle-runtime over HTTP vs sentence-transformers (PyTorch) and ONNX Runtime,
# both in-process, on the same sentences and thread count.
#
# Builds the release binary, fetches the model, installs the Python packages it lacks, runs
# sentence-transformers and ONNX Runtime at batch 32 (bench/st_reference.py,
# bench/ort_reference.py), then starts the server on loopback and drives it with the load
# generator at several concurrency levels, and prints kandle's best throughput as a ratio of
# each in-process engine's.
#
# Usage: bench/run-cpu.sh [SENTENCES]   (env: THREADS, PORT, LEVELS, PASSES)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source bench/serve.sh
python="${PYTHON:-python3}"
threads="${THREADS:-$(nproc)}"
port="${PORT:-18080}"
levels="${LEVELS:-1,8,32,64}"
passes="${PASSES:-1}"
sentences="${1:-target/bench/sentences.txt}"

model_dir="$(scripts/fetch-model.sh)"
mkdir -p target/bench
[[ -s "$sentences" ]] || "$python" bench/make_sentences.py 2048 > "$sentences"
cargo build --release -p kandle-runtime --bin kandle-runtime --example loadgen >&2
"$python" -c 'import sentence_transformers, onnxruntime, onnx, onnxscript' 2>/dev/null ||
  "$python" -m pip install --quiet sentence-transformers onnxruntime onnx onnxscript >&2

echo "== machine: $(nproc) cores, $(uname -m); threads=$threads"
echo "== sentence-transformers (PyTorch CPU), batch 32"
st_json="$("$python" bench/st_reference.py "$model_dir" "$sentences" --batch-size 32 \
  --threads "$threads" --passes "$passes" | tee >(cat >&2) | tail -n 1)"

echo "== ONNX Runtime (CPU), batch 32"
ort_json="$("$python" bench/ort_reference.py "$model_dir" "$sentences" --batch-size 32 \
  --threads "$threads" --passes "$passes" | tee >(cat >&2) | tail -n 1)"

echo "== kandle-runtime over HTTP (loopback)"
start_server "$port" target/bench/server.log --model-dir "$model_dir" --served-name bench \
  --threads "$threads"

run() {
  target/release/examples/loadgen --url "http://127.0.0.1:$port" --sentences "$sentences" \
    --passes "$passes" --json "$@"
}
single="$(run --concurrency "$levels" --batch 1 | tee >(cat >&2) | grep '^{' || true)"
batched="$(run --concurrency 1,2,4 --batch 32 | tee >(cat >&2) | grep '^{' || true)"

ST_JSON="$st_json" ORT_JSON="$ort_json" KANDLE_JSON="$single"$'\n'"$batched" "$python" - <<'PY'
import json, os
st = json.loads(os.environ["ST_JSON"])
ort = json.loads(os.environ["ORT_JSON"])
levels = [json.loads(l) for l in os.environ["KANDLE_JSON"].splitlines() if l.strip()]
best = max(levels, key=lambda l: l["sentences_per_s"])
print(f"== best kandle: {best['sentences_per_s']:.1f} sentences/s "
      f"(concurrency {best['concurrency']}, {best['batch']} per request, p99 {best['p99_ms']:.0f} ms)")
print(f"== sentence-transformers batch 32: {st['sentences_per_s']:.1f} sentences/s")
print(f"== ONNX Runtime batch 32: {ort['sentences_per_s']:.1f} sentences/s")
print(f"== ratio kandle / sentence-transformers: {best['sentences_per_s'] / st['sentences_per_s']:.2f}x")
print(f"== ratio kandle / ONNX Runtime: {best['sentences_per_s'] / ort['sentences_per_s']:.2f}x")
PY
