#!/bin/bash
# Runs on the GPU machine from the .gpu/ folder that bench/gpu/prepare.sh makes.
# Fidelity of kandle-runtime on the GPU against sentence-transformers in f32 on the same GPU.
set -u
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=$(python3 -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13", "lib"))')
[ -x kandle-runtime ] || { xz -d kandle-runtime.xz && chmod +x kandle-runtime; }
./kandle-runtime --model-dir model --served-name minilm --device auto --port 18080 --host 127.0.0.1 > gpu.log 2>&1 &
pid=$!
for _ in $(seq 1 600); do curl -fsS http://127.0.0.1:18080/readyz >/dev/null 2>&1 && break; sleep 0.1; done
python3 - <<'PY'
import json, urllib.request, random
import numpy as np, torch
from sentence_transformers import SentenceTransformer
random.seed(3)
words = "model serving kandle kubernetes operator canary rollout embedding vector token batch latency throughput cluster node pod replica héllo wörld".split()
texts = [" ".join(random.choice(words) for _ in range(random.randint(3, 60))) for _ in range(64)]
req = urllib.request.Request("http://127.0.0.1:18080/v1/embeddings", json.dumps({"input": texts}).encode(), {"content-type": "application/json"})
got = np.array([d["embedding"] for d in json.load(urllib.request.urlopen(req))["data"]], dtype=np.float64)
st = SentenceTransformer("model", device="cuda", model_kwargs={"torch_dtype": torch.float32})
ref = st.encode(texts, normalize_embeddings=True).astype(np.float64)
cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
print(f"64 texts, kandle f16 on cuda vs sentence-transformers f32 on cuda (f16-rounded weights): cosine min {cos.min():.6f} mean {cos.mean():.6f}, max abs diff {np.abs(got-ref).max():.2e}")
PY
kill -TERM $pid; wait $pid
