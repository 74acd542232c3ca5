"""Generation speed of mistral.rs (the `mistralrs` Python package), in-process.

The `mistralrs` wheel has no HTTP server, so this drives its Runner directly with the same
workload and the same figures as bench/generation_load.py does over HTTP: greedy streamed
requests, `ignore_eos=True`, the same prompt text (a fixed sentence repeated, each prompt starting
with its own request number), and one JSON line per stream count with aggregate tokens/s,
per-stream decode tokens/s, time to first token p50/p99 and inter-token latency p50/p99, plus
the prefill time of a PREFILL_TOKENS-token prompt (time to first token, max_tokens 1).

The Python API streams only chat requests, and it renders the model's chat template around a
string prompt; prompt sizes therefore count the template's tokens too (as the engine reports
them in usage.prompt_tokens), so a 512-token prompt is 512 tokens of engine input, as for the
other engines. Concurrent streams are Python threads, each iterating its own stream (requests are
submitted one at a time, as the Runner cannot be entered from two threads at once); the Runner
batches up to --max-seqs sequences. As in bench/generation_load.py, stream i of a round has a
prompt of PROMPT_TOKENS + i tokens: mistral.rs 0.9.5 on CPU fails a batched prefill of
equal-length prompts ("input tensor is not contiguous" in its lm_head).

    python3 bench/mistralrs_bench.py MODEL_DIR [--file SmolLM2-135M-Instruct.Q4_1.gguf] \
        [--threads 2] [--streams 1,16] [--max-tokens 256] [--prompt-tokens 64] \
        [--prefill-tokens 512]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generation_load import fit_prompt, prompt_text, run_concurrent, summarize  # noqa: E402


class InProcess:
    def __init__(self, runner, model: str):
        self.runner = runner
        self.model = model
        # The Runner object cannot be entered from two threads at once ("Already borrowed"):
        # requests are submitted one at a time; their streams are then read concurrently.
        self.submit = threading.Lock()

    def _request(self, prompt: str, max_tokens: int, stream: bool):
        from mistralrs import ChatCompletionRequest

        return ChatCompletionRequest(messages=prompt, model=self.model, max_tokens=max_tokens,
                                     temperature=0.0, stream=stream, ignore_eos=True)

    def template_overhead(self, prompt: str) -> int:
        """Engine prompt tokens minus the raw text's tokens (the chat template's share)."""
        resp = self.runner.send_chat_completion_request(self._request(prompt, 1, False))
        return resp.usage.prompt_tokens - len(self.runner.tokenize_text(prompt, False, None))

    def stream(self, prompt: str, max_tokens: int) -> dict:
        result = {"chunk_times": [], "usage": None, "error": None, "finish_reason": None}
        result["t_send"] = time.perf_counter()
        try:
            with self.submit:
                chunks = self.runner.send_chat_completion_request(
                    self._request(prompt, max_tokens, True))
            for chunk in chunks:
                now = time.perf_counter()
                if chunk.usage is not None:
                    result["usage"] = {"completion_tokens": chunk.usage.completion_tokens,
                                       "prompt_tokens": chunk.usage.prompt_tokens}
                for choice in chunk.choices or []:
                    if choice.delta is not None and choice.delta.content:
                        result["chunk_times"].append(now)
                    if choice.finish_reason:
                        result["finish_reason"] = choice.finish_reason
        except Exception as err:
            result["error"] = f"{type(err).__name__}: {err}"
        result["t_end"] = time.perf_counter()
        return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir")
    p.add_argument("--file", default="SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--threads", type=int, default=0, help="RAYON_NUM_THREADS (0: leave as is)")
    p.add_argument("--streams", default="1,16", help="comma-separated stream counts")
    p.add_argument("--rounds", type=int, default=1,
                   help="single-stream requests, one after another (concurrent runs: one round)")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--warmup", type=int, default=2, help="untimed 32-token requests first")
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--length-spread", type=int, default=1,
                   help="stream i of a round gets PROMPT_TOKENS + i * SPREAD prompt tokens; 0 "
                        "makes mistral.rs 0.9.5 fail batched prefills ('input tensor is not "
                        "contiguous' in lm_head)")
    p.add_argument("--prefill-tokens", type=int, default=512, help="0: skip the prefill figure")
    p.add_argument("--prefill-runs", type=int, default=3)
    p.add_argument("--max-seqs", type=int, default=32)
    args = p.parse_args()

    # mistral.rs logs to stdout: keep stdout for the JSON lines and send the rest to stderr.
    json_out = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)

    if args.threads:
        os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import mistralrs
    from mistralrs import Runner, Which

    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    start = time.perf_counter()
    runner = Runner(which=Which.GGUF(quantized_model_id=args.model_dir,
                                     quantized_filename=args.file),
                    token_source="none", max_seqs=args.max_seqs)
    log(f"mistral.rs loaded in {time.perf_counter() - start:.1f} s")
    engine = InProcess(runner, runner.get_default_model_id() or "default")

    overhead = engine.template_overhead(prompt_text(0, 0, 0))
    tokens_of = lambda text: len(runner.tokenize_text(text, False, None)) + overhead  # noqa: E731
    sentences, pad, measured = fit_prompt(tokens_of, args.prompt_tokens)
    log(f"prompt: {measured} tokens ({overhead} of them chat template)")
    for i in range(args.warmup):
        engine.stream(prompt_text(9999 - i, sentences, pad), 32)

    base = {
        "engine": "mistral.rs",
        "version": getattr(mistralrs, "__version__", None) or _dist_version("mistralrs"),
        "mode": "in-process (Python API, chat stream)",
        "threads": int(os.environ.get("RAYON_NUM_THREADS", "0")) or os.cpu_count(),
        "prompt_tokens": measured,
        "length_spread": args.length_spread,
        "ignore_eos_sent": True,
    }
    request_id = 1
    prefill = {}
    if args.prefill_tokens:
        ps, pp, pm = fit_prompt(tokens_of, args.prefill_tokens)
        runs = []
        for _ in range(args.prefill_runs):
            r = engine.stream(prompt_text(request_id, ps, pp), 1)
            request_id += 1
            if r.get("error") or not r["chunk_times"]:
                raise SystemExit(f"prefill request failed: {r.get('error')}")
            runs.append(r["chunk_times"][0] - r["t_send"])
        prefill = {"prefill_tokens": pm, "prefill_s": round(statistics.median(runs), 3),
                   "prefill_s_runs": [round(x, 3) for x in runs]}
        log(f"prefill {pm} tokens: {prefill['prefill_s']:.3f} s (median of {len(runs)})")

    for n, streams in enumerate(int(s) for s in args.streams.split(",")):
        results = []
        for _ in range(args.rounds if streams == 1 else 1):
            prompts = [prompt_text(request_id + i, sentences, pad + i * args.length_spread)
                       for i in range(streams)]
            request_id += streams
            results.extend(run_concurrent(engine, prompts, args.max_tokens))
        out = {**base, "streams": streams, "rounds": args.rounds if streams == 1 else 1,
               **(prefill if n == 0 else {})}
        out.update(summarize(results, args.max_tokens))
        log(f"mistral.rs: {streams} stream(s): {out['tokens_per_s']} tokens/s aggregate, "
            f"TTFT p50 {out['ttft_p50_ms']} ms p99 {out['ttft_p99_ms']} ms, "
            f"ITL p50 {out['itl_p50_ms']} ms p99 {out['itl_p99_ms']} ms, "
            f"completion tokens {out['completion_tokens_min']}..{out['completion_tokens_max']}")
        print(json.dumps(out), file=json_out, flush=True)


def _dist_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


if __name__ == "__main__":
    main()
