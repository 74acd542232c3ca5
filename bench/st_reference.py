"""sentence-transformers (PyTorch, CPU) throughput on the benchmark sentences.

Encodes the whole file at the given batch size after a warm-up pass and prints sentences/s and
tokens/s, plus a JSON line for bench/run-cpu.sh.

    python bench/st_reference.py MODEL_DIR bench/sentences.txt [--batch-size 32] [--threads N]
"""

import argparse
import json
import time

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("sentences")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--passes", type=int, default=1)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    with open(args.sentences, encoding="utf-8") as f:
        sentences = [line.rstrip("\n") for line in f if line.strip()]
    model = SentenceTransformer(args.model_dir, device="cpu")
    tokens = sum(len(ids) for ids in model.tokenizer(sentences)["input_ids"])

    model.encode(sentences[: args.batch_size * 4], batch_size=args.batch_size)
    start = time.perf_counter()
    for _ in range(args.passes):
        model.encode(sentences, batch_size=args.batch_size, convert_to_numpy=True)
    elapsed = time.perf_counter() - start

    result = {
        "engine": "sentence-transformers",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "sentences": len(sentences) * args.passes,
        "sentences_per_s": len(sentences) * args.passes / elapsed,
        "tokens_per_s": tokens * args.passes / elapsed,
    }
    print(
        f"sentence-transformers {result['sentence_transformers']} (torch {result['torch']}) "
        f"threads={result['threads']} "
        f"batch={args.batch_size}: {result['sentences_per_s']:.1f} sentences/s, "
        f"{result['tokens_per_s']:.0f} tokens/s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
