"""Fetches a repository with huggingface_hub's snapshot_download, the Hub client KServe's
storage initializer and most Python serving stacks use: the peer of `kandle-runtime fetch hf`
in bench/fetch.sh. Prints the wall-clock seconds of the download.

Usage: python3 bench/hf_hub_fetch.py ENDPOINT REPO REVISION DEST
"""

import os
import sys
import time

endpoint, repo, revision, dest = sys.argv[1:5]
# The same files as kandle's default patterns; no Xet (the local Hub speaks plain HTTP).
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

from huggingface_hub import snapshot_download  # noqa: E402  (after the environment is set)

start = time.perf_counter()
snapshot_download(
    repo_id=repo,
    revision=revision,
    endpoint=endpoint,
    local_dir=dest,
    cache_dir=os.path.join(dest, ".cache"),
    allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.gguf", "1_Pooling/*"],
)
print(f"{time.perf_counter() - start:.3f}")
