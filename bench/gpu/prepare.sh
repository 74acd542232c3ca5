#!/usr/bin/env bash
# Prepares .gpu/ (git-ignored) for the GPU checks: the CUDA build of kandle-runtime, the overload
# client, and all-MiniLM-L6-v2 in f16 (the f32 weights would not fit what travels to the GPU
# machine), xz-compressed to stay under 64 MiB. Then run bench/gpu/check.sh and
# bench/gpu/fidelity.sh there with `.gpu` carried (see ../shared/gpu/README.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
model_dir="$(scripts/fetch-model.sh)"
eval "$(../shared/gpu/cuda-build-env.sh)"
CARGO_TARGET_DIR=target/cuda cargo build --release --locked -p kandle-runtime --features cuda
cargo build --release --locked -p kandle-runtime --example overload
rm -rf .gpu && mkdir -p .gpu/model/1_Pooling
python3 - "$model_dir" <<'PY'
import shutil, sys
from safetensors.torch import load_file, save_file
src, dst = sys.argv[1], ".gpu/model"
weights = load_file(f"{src}/model.safetensors")
save_file({k: v.half().contiguous() for k, v in weights.items()}, f"{dst}/model.safetensors")
for name in ["config.json", "tokenizer.json", "modules.json", "sentence_bert_config.json",
             "1_Pooling/config.json"]:
    shutil.copy(f"{src}/{name}", f"{dst}/{name}")
PY
cp target/cuda/release/kandle-runtime target/release/examples/overload .gpu/
strip .gpu/kandle-runtime .gpu/overload
xz -T2 -6 .gpu/kandle-runtime .gpu/overload
cp bench/gpu/check.sh bench/gpu/fidelity.sh .gpu/
du -sh .gpu
