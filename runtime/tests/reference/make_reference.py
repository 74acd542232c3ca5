"""Computes the reference embeddings the runtime's tests compare against.

Runs sentence-transformers (PyTorch, CPU) on all-MiniLM-L6-v2 as fetched by
scripts/fetch-model.sh and writes embeddings.json next to this file.

    pip install sentence-transformers torch
    python runtime/tests/reference/make_reference.py [MODEL_DIR]
"""

import json
import pathlib
import sys

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_MODEL = HERE.parents[2] / ".model-cache" / "all-MiniLM-L6-v2"

SENTENCES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "a",
    "Kubernetes schedules pods onto nodes based on resource requests.",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "I love pizza.",
    "I really do not like pizza at all.",
    "Transformers use self-attention to mix information across tokens.",
    "¿Dónde está la biblioteca?",
    "Das ist ein deutscher Satz mit Umlauten: äöü ß.",
    "東京は日本の首都です。",
    "Emoji test 🚀🔥 with symbols #hashtag @mention.",
    "fn main() { println!(\"{}\", 1 + 2); }",
    "Numbers: 3.14159, 2718, -42, 1e10 and 0xFF.",
    "   leading and trailing whitespace   ",
    "UPPERCASE SHOUTING SENTENCE",
    "The stock market fell sharply on Monday as investors worried about inflation.",
    "She sells sea shells by the sea shore.",
    "Machine learning models can be served on GPUs or CPUs.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "URL: https://example.com/path?query=1&other=two",
    "Short.",
    (
        "A much longer passage tests that attention works across many positions: "
        "the operator watches model deployments, plans replicas and canary steps, "
        "applies children with server-side apply, and reads runtime metrics such as "
        "request rates, error rates and latency histograms to decide whether a new "
        "revision is healthy enough to receive more traffic or should be rolled back "
        "to the stable revision that kept serving all along without interruption."
    ),
]


def main() -> None:
    model_dir = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_MODEL
    model = SentenceTransformer(str(model_dir), device="cpu")
    vectors = model.encode(SENTENCES, batch_size=8, convert_to_numpy=True)
    tokens = [len(model.tokenizer(s)["input_ids"]) for s in SENTENCES]
    out = {
        "model": "all-MiniLM-L6-v2",
        "generator": (
            f"sentence-transformers {sentence_transformers.__version__}, "
            f"torch {torch.__version__}, CPU, float32"
        ),
        "max_seq_length": model.max_seq_length,
        "sentences": SENTENCES,
        "tokens": tokens,
        "embeddings": [[float(x) for x in v] for v in vectors],
    }
    path = HERE / "embeddings.json"
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(SENTENCES)} embeddings of dim {vectors.shape[1]} to {path}")


if __name__ == "__main__":
    main()
