"""ONNX Runtime (CPU, in-process) throughput on the benchmark sentences.

Exports the sentence-transformers model's transformer to ONNX with `torch.onnx` and fuses it with
ONNX Runtime's transformer optimizer (bias + GELU, residual + layer norm, as optimum's O2 does;
once, cached under target/bench, never committed), runs it with `onnxruntime` at the given batch
size and thread count, and pools as sentence-transformers does (mean over the attention mask, then L2
normalize). Before timing it checks its embeddings against sentence-transformers' on the first
sentences and fails below a cosine of 0.9999, so the figure is for the same function.

Batches are formed as `SentenceTransformer.encode` forms them (sorted by length, padded to the
longest in the batch), and tokenization is inside the timed loop, as it is there.

    python bench/ort_reference.py MODEL_DIR target/bench/sentences.txt [--batch-size 32] [--threads N]
"""

import argparse
import json
import logging
import os
import time
import warnings

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.transformers import optimizer
from sentence_transformers import SentenceTransformer

MIN_COSINE = 0.9999
CHECK_SENTENCES = 256


def export(model: SentenceTransformer, path: str) -> None:
    """Writes the fused transformer body (ids, mask, token types -> last hidden state) to `path`."""
    body = model[0].auto_model.eval()
    sample = model.tokenizer(["a short sentence", "and a longer one to pad the batch"],
                             padding=True, return_tensors="pt")
    inputs = (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"])
    names = ["input_ids", "attention_mask", "token_type_ids"]
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", max=512)
    tmp = path + ".partial"
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            body, inputs, tmp,
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_shapes={name: {0: batch, 1: seq} for name in names},
            opset_version=18,
            external_data=False,
            verbose=False,
        )
    config = body.config
    fused = optimizer.optimize_model(tmp, model_type="bert", num_heads=config.num_attention_heads,
                                     hidden_size=config.hidden_size)
    fused.save_model_to_file(tmp)
    os.replace(tmp, path)


class OrtEncoder:
    def __init__(self, model: SentenceTransformer, onnx_path: str, threads: int):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = model.tokenizer
        self.max_length = model.max_seq_length

    def embed_batch(self, sentences: list[str]) -> np.ndarray:
        tok = self.tokenizer(sentences, padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="np")
        feed = {k: v.astype(np.int64) for k, v in tok.items() if k in self.inputs}
        (hidden,) = self.session.run(["last_hidden_state"], feed)
        mask = tok["attention_mask"].astype(np.float32)[:, :, None]
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def encode(self, sentences: list[str], batch_size: int) -> np.ndarray:
        order = np.argsort([-len(s) for s in sentences], kind="stable")
        parts = [self.embed_batch([sentences[i] for i in order[start:start + batch_size]])
                 for start in range(0, len(sentences), batch_size)]
        result = np.empty((len(sentences), parts[0].shape[1]), dtype=np.float32)
        result[order] = np.concatenate(parts)
        return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("sentences")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--onnx",
                        help="exported model path (default: target/bench/<model>.fused.onnx)")
    args = parser.parse_args()

    with open(args.sentences, encoding="utf-8") as f:
        sentences = [line.rstrip("\n") for line in f if line.strip()]
    torch.set_num_threads(args.threads)
    model = SentenceTransformer(args.model_dir, device="cpu")
    onnx_path = args.onnx or os.path.join(
        "target", "bench", os.path.basename(os.path.normpath(args.model_dir)) + ".fused.onnx")
    if not os.path.exists(onnx_path):
        os.makedirs(os.path.dirname(onnx_path) or ".", exist_ok=True)
        export(model, onnx_path)
    encoder = OrtEncoder(model, onnx_path, args.threads)

    check = sentences[:CHECK_SENTENCES]
    reference = model.encode(check, batch_size=args.batch_size, normalize_embeddings=True)
    cosine = float(np.min(np.sum(encoder.encode(check, args.batch_size) * reference, axis=1)))
    if cosine < MIN_COSINE:
        raise SystemExit(f"ONNX Runtime embeddings differ from sentence-transformers: "
                         f"min cosine {cosine:.6f} < {MIN_COSINE}")
    tokens = sum(len(ids) for ids in model.tokenizer(sentences)["input_ids"])

    encoder.encode(sentences[: args.batch_size * 4], args.batch_size)
    start = time.perf_counter()
    for _ in range(args.passes):
        encoder.encode(sentences, args.batch_size)
    elapsed = time.perf_counter() - start

    result = {
        "engine": "onnxruntime",
        "onnxruntime": ort.__version__,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "sentences": len(sentences) * args.passes,
        "sentences_per_s": len(sentences) * args.passes / elapsed,
        "tokens_per_s": tokens * args.passes / elapsed,
        "min_cosine_vs_sentence_transformers": cosine,
    }
    print(
        f"onnxruntime {result['onnxruntime']} threads={args.threads} "
        f"batch={args.batch_size}: {result['sentences_per_s']:.1f} sentences/s, "
        f"{result['tokens_per_s']:.0f} tokens/s (min cosine vs sentence-transformers "
        f"{cosine:.6f})"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
