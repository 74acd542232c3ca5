#!/bin/bash
# Runs on the GPU machine from the .gpu/ folder that bench/gpu/prepare.sh makes.
# Device check for kandle-runtime's hardening on a real GPU. Writes its log to $OUT/check.log.
set -u
cd "$(dirname "$0")"
exec > >(tee "$OUT/check.log") 2>&1
export LD_LIBRARY_PATH=$(python3 -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13", "lib"))')
nvidia-smi -L
xz -d kandle-runtime.xz overload.xz && chmod +x kandle-runtime overload
wait_ready() { for _ in $(seq 1 600); do curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0; kill -0 "$2" 2>/dev/null || return 1; sleep 0.1; done; return 1; }

echo "== 1. --device auto with no GPU visible must fail, naming --device cpu"
CUDA_VISIBLE_DEVICES="" timeout 60 ./kandle-runtime --model-dir model --device auto --port 18090 --host 127.0.0.1 > nogpu.log 2>&1
echo "exit code: $?"; grep -o 'kandle-runtime failed.*' nogpu.log | head -c 600; echo

echo "== 2. --device auto on the GPU: warm-up at the largest batch, budget, device"
./kandle-runtime --model-dir model --served-name minilm --device auto --port 18080 --host 127.0.0.1 --request-timeout 2s --log-format json > gpu.log 2>&1 &
pid=$!
if ! wait_ready 18080 $pid; then echo "not ready"; cat gpu.log; exit 1; fi
grep -E 'warmed up|model loaded' gpu.log
curl -s http://127.0.0.1:18080/metrics | grep -E '^kandle_(max_queued_tokens|model_info|model_load_seconds)'

echo "== 3. fidelity against sentence-transformers on the same GPU"
python3 - <<'PY'
import json, urllib.request
from sentence_transformers import SentenceTransformer
import numpy as np
texts = ["kandle serves embeddings", "The quick brown fox jumps over the lazy dog.", "héllo wörld ✓"]
req = urllib.request.Request("http://127.0.0.1:18080/v1/embeddings", json.dumps({"input": texts}).encode(), {"content-type": "application/json"})
got = np.array([d["embedding"] for d in json.load(urllib.request.urlopen(req))["data"]])
ref = SentenceTransformer("model", device="cuda").encode(texts, normalize_embeddings=True)
cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
print("cosine vs sentence-transformers:", [round(float(c), 6) for c in cos])
PY

echo "== 4. overload at 4x on the GPU (deadline 2s)"
python3 -c "
import random
random.seed(7)
words = 'model serving kandle kubernetes operator canary rollout embedding vector token batch latency throughput cluster node pod replica'.split()
print('\n'.join(' '.join(random.choice(words) for _ in range(random.randint(8, 40))) for _ in range(2048)))" > sentences.txt
./overload --url http://127.0.0.1:18080 --sentences sentences.txt --batch 8 --clients 32 --multiplier 4 --seconds 15 --deadline 2s --pid $pid --uploads 100
kill -TERM $pid; wait $pid; echo "server exit code: $?"
