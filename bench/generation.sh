#!/usr/bin/env bash
# Generation-speed benchmark: kandle-runtime against llama.cpp (llama-cpp-python's OpenAI server)
# and mistral.rs (its Python API, in-process: the wheel has no server), one engine at a time on
# the same machine and thread count, all on SmolLM2-135M-Instruct GGUF Q4_1, greedy, 256 new
# tokens per request with EOS ignored where the engine allows it.
#
# For each engine: prefill time of a 512-token prompt (time to first token, max_tokens 1, median
# of 3), then one stream (3 requests one after another: decode tokens/s, TTFT, inter-token
# latency p50/p99), then 16 concurrent streams (aggregate tokens/s, TTFT and ITL p50/p99 across
# streams). Prompts of the streams are 64 tokens (+1 per stream). HTTP engines are driven by
# bench/generation_load.py (any OpenAI-compatible streaming server); mistral.rs by
# bench/mistralrs_bench.py with the same workload and figures. llama-cpp-python's server runs one
# request at a time (started with --interrupt_requests False, so a new request waits instead of
# cutting off the one streaming), so its 16 streams queue: that is part of the comparison.
#
# Installs what it lacks: llama-cpp-python[server] (built from source, CPU, several minutes; the
# build runs under `nice`) and mistralrs (a prebuilt wheel). kandle is skipped, with a message,
# when target/release/kandle-runtime is missing or not ready within 60 s (build it first with
# `cargo build --release -p kandle-runtime`).
#
# Usage: bench/generation.sh
#   env: THREADS (2), ENGINES ("llama.cpp mistral.rs kandle"), PORT (18090), MAX_TOKENS (256),
#        PROMPT_TOKENS (64, the streams' prompt), PREFILL_TOKENS (512), STREAMS (16),
#        ROUNDS (3, single-stream requests, one after another), KANDLE_ARGS (extra flags),
#        OUT_DIR (target/bench/generation: servers' logs and a JSON-lines file of the figures),
#        QUIET_WAIT (0: seconds to wait, before each engine, for the machine to be under 10% busy;
#        the figures move a lot when other jobs share the cores, mistral.rs's most of all)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
python="${PYTHON:-python3}"
threads="${THREADS:-2}"
engines="${ENGINES:-llama.cpp mistral.rs kandle}"
port="${PORT:-18090}"
max_tokens="${MAX_TOKENS:-256}"
prompt_tokens="${PROMPT_TOKENS:-64}"
prefill_tokens="${PREFILL_TOKENS:-512}"
streams="${STREAMS:-16}"
rounds="${ROUNDS:-3}"
llama_version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
mistralrs_version="${MISTRALRS_VERSION:-0.9.5}"
file="SmolLM2-135M-Instruct.Q4_1.gguf"
name="smollm2"

model_dir="$(scripts/fetch-llm.sh)"
out="${OUT_DIR:-target/bench/generation}"
mkdir -p "$out"
results="$out/results-$(date +%Y%m%d-%H%M%S).jsonl"

server=""
stop_server() {
  if [[ -n "$server" ]]; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
  fi
}
trap stop_server EXIT

# wait_ready URL SECONDS: 0 once URL answers 200, 1 if the server exits or time runs out.
wait_ready() {
  local url="$1" deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    kill -0 "$server" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# busy_pct: percent of all CPU time spent busy over the next 2 s (others' jobs, on a shared box).
busy_pct() {
  local a b
  read -r -a a < <(head -n 1 /proc/stat)
  sleep 2
  read -r -a b < <(head -n 1 /proc/stat)
  local total=0 idle i
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  idle=$((b[4] - a[4] + b[5] - a[5]))
  echo $((total > 0 ? 100 * (total - idle) / total : 0))
}

# settle: before each engine, with QUIET_WAIT=SECONDS, wait up to that long for the machine to
# be under 10% busy; always print how busy it was.
settle() {
  local deadline=$((SECONDS + ${QUIET_WAIT:-0})) busy
  busy="$(busy_pct)"
  while ((busy >= 10 && SECONDS < deadline)); do busy="$(busy_pct)"; done
  echo "== machine ${busy}% busy before the run (load average $(loadavg))"
}

# load_http LABEL [generation_load.py flags...]: prefill + one stream, then STREAMS streams,
# against the server on $port.
load_http() {
  local label="$1"
  shift
  local common=(--url "http://127.0.0.1:$port" --model "$name" --label "$label"
    --max-tokens "$max_tokens" --prompt-tokens "$prompt_tokens" "$@")
  "$python" bench/generation_load.py "${common[@]}" --streams 1 --rounds "$rounds" \
    --prefill-tokens "$prefill_tokens" | tee -a "$results"
  "$python" bench/generation_load.py "${common[@]}" --streams "$streams" | tee -a "$results"
}

ensure() {  # ensure IMPORT PIP_SPEC
  "$python" -c "import $1" 2>/dev/null && return 0
  echo "== installing $2" >&2
  local start=$SECONDS
  nice -n 19 "$python" -m pip install --quiet --disable-pip-version-check "$2" >&2
  echo "== installed $2 in $((SECONDS - start)) s" >&2
}

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "== machine: $(nproc) cores, $(uname -m), $cpu"
echo "== model: $model_dir/$file; threads=$threads; max_tokens=$max_tokens (EOS ignored where" \
  "supported); stream prompts $prompt_tokens tokens (+1 per stream); prefill $prefill_tokens tokens"

for engine in $engines; do
  case "$engine" in
  llama.cpp)
    ensure llama_cpp.server "llama-cpp-python[server]==$llama_version"
    settle
    version="$("$python" -c 'import llama_cpp; print(llama_cpp.__version__)')"
    echo "== llama.cpp (llama-cpp-python $version OpenAI server)"
    "$python" -m llama_cpp.server --model "$model_dir/$file" --model_alias "$name" \
      --n_threads "$threads" --n_threads_batch "$threads" --n_ctx 2048 --interrupt_requests False \
      --host 127.0.0.1 --port "$port" > "$out/llama.cpp.log" 2>&1 &
    server=$!
    if wait_ready "http://127.0.0.1:$port/v1/models" 120; then
      # llama-cpp-python has no ignore_eos: a -1000 logit bias on the model's end-of-generation
      # tokens (<|endoftext|> 0, <|im_end|> 2, <reponame> 4) makes every request run to
      # max_tokens. It runs as a Python logits callback, about 0.1 ms per token.
      load_http llama.cpp --extra '{"logit_bias": {"0": -1000, "2": -1000, "4": -1000}}' ||
        echo "== llama.cpp: the load generator failed"
    else
      echo "== llama.cpp server did not start; log:" >&2
      tail -n 30 "$out/llama.cpp.log" >&2
    fi
    stop_server
    ;;
  mistral.rs)
    ensure mistralrs "mistralrs==$mistralrs_version"
    settle
    echo "== mistral.rs $mistralrs_version (Python API, in-process)"
    "$python" bench/mistralrs_bench.py "$model_dir" --file "$file" --threads "$threads" \
      --streams "1,$streams" --rounds "$rounds" --max-tokens "$max_tokens" \
      --prompt-tokens "$prompt_tokens" --prefill-tokens "$prefill_tokens" \
      2> "$out/mistral.rs.log" | tee -a "$results" ||
      { echo "== mistral.rs failed; log:" >&2; tail -n 30 "$out/mistral.rs.log" >&2; }
    grep -E '^(mistral.rs|prompt|prefill)' "$out/mistral.rs.log" >&2 || true
    ;;
  kandle)
    binary=target/release/kandle-runtime
    if [[ ! -x "$binary" ]]; then
      echo "== kandle: skipped, $binary is missing (cargo build --release -p kandle-runtime)"
      continue
    fi
    settle
    echo "== kandle-runtime over HTTP"
    # shellcheck disable=SC2086
    "$binary" --model-dir "$model_dir" --task generation --host 127.0.0.1 --port "$port" \
      --threads "$threads" --served-name "$name" ${KANDLE_ARGS:-} > "$out/kandle.log" 2>&1 &
    server=$!
    if wait_ready "http://127.0.0.1:$port/readyz" 60; then
      load_http kandle || echo "== kandle: the load generator failed"
    else
      echo "== kandle: skipped, the server was not ready within 60 s (or exited); log tail:"
      tail -n 20 "$out/kandle.log"
    fi
    stop_server
    ;;
  *) echo "unknown engine: $engine" >&2; exit 2 ;;
  esac
done
echo "== load average at the end: $(loadavg); figures in $results"

"$python" - "$results" <<'PY'
import json, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
if not rows:
    sys.exit("no results")
f = lambda v, d=1: "" if v is None else f"{v:,.{d}f}"  # noqa: E731
print()
print("| Engine | Streams | tokens/s | decode tokens/s per stream | TTFT p50 ms | TTFT p99 ms "
      "| ITL p50 ms | ITL p99 ms | new tokens per stream | prefill s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    lo, hi = r["completion_tokens_min"], r["completion_tokens_max"]
    toks = f"{lo}" if lo == hi else f"{lo}–{hi}"
    prefill = f"{r['prefill_s']:.2f} ({r['prefill_tokens']} tokens)" if "prefill_s" in r else ""
    err = f" ({r['errors']} errors)" if r["errors"] else ""
    print(f"| {r['engine']}{err} | {r['streams']} | {f(r['tokens_per_s'])} "
          f"| {f(r['decode_tokens_per_s_per_stream_p50'])} | {f(r['ttft_p50_ms'], 0)} "
          f"| {f(r['ttft_p99_ms'], 0)} | {f(r['itl_p50_ms'])} | {f(r['itl_p99_ms'])} "
          f"| {toks} | {prefill} |")
PY
