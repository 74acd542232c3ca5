#!/usr/bin/env bash
# Fetch benchmark: `kandle-runtime fetch hf` against huggingface_hub's snapshot_download, both
# fetching all-MiniLM-L6-v2 (the default file set, 88 MiB) from the same local Hub server on
# loopback, RUNS times each into fresh folders. Loopback takes the network out: what is left is
# each client's own cost (requests, writing, hashing). kandle checks every file's hash;
# huggingface_hub checks none of them on this path.
#
# Usage: bench/fetch.sh  (env: RUNS, default 5)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
python="${PYTHON:-python3}"
runs="${RUNS:-5}"
repo="sentence-transformers/all-MiniLM-L6-v2"
commit="c9745ed1d9f207416be6d2e6f8de32d1f16199bf"

model_dir="$(scripts/fetch-model.sh)"
"$python" -c 'import huggingface_hub' 2>/dev/null \
  || "$python" -m pip install --quiet --disable-pip-version-check huggingface_hub >&2
cargo build -q -p kandle-runtime --bin kandle-runtime >&2
cargo build -q -p kandle-tests --example hub_serve >&2

work="$(mktemp -d)"
target/debug/examples/hub_serve --dir "$model_dir" --repo "$repo" --commit "$commit" \
  > "$work/hub.url" 2> "$work/hub.log" &
hub=$!
trap 'kill "$hub" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do [[ -s "$work/hub.url" ]] && break; sleep 0.1; done
url="$(head -n 1 "$work/hub.url")"

echo "== machine: $(nproc) cores; $runs runs each; huggingface_hub $("$python" -c \
  'import huggingface_hub; print(huggingface_hub.__version__)')"
printf '%-26s' "kandle-runtime fetch hf"
for run in $(seq "$runs"); do
  dest="$work/kandle-$run"
  start=$(date +%s.%N)
  RUST_LOG=warn target/debug/kandle-runtime fetch hf --repo "$repo" --revision main \
    --endpoint "$url" --dest "$dest" --termination-log /dev/null
  printf ' %6.3f' "$(echo "$(date +%s.%N) - $start" | bc)"
done
echo "  s"
printf '%-26s' "huggingface_hub"
for run in $(seq "$runs"); do
  printf ' %6.3f' "$("$python" bench/hf_hub_fetch.py "$url" "$repo" main "$work/hub-$run")"
done
echo "  s"
du -sh --exclude=.cache "$work/kandle-1" "$work/hub-1" | sed 's/^/== fetched: /'
