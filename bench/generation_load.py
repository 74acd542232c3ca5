"""Generation-speed load generator for any OpenAI-compatible streaming server.

Sends greedy (temperature 0) streaming requests to `/v1/completions` (or `/v1/chat/completions`)
and times every server-sent event. Prints one JSON line of figures:

- prefill: time to first token of a PREFILL_TOKENS-token prompt with max_tokens 1 (median of
  --prefill-runs, one request at a time);
- STREAMS concurrent streams of MAX_TOKENS new tokens each (stream i of a round has a prompt of
  PROMPT_TOKENS + i tokens, --length-spread, so concurrent prompts differ in length as real
  traffic does; mistral.rs also fails batched prefills of equal-length prompts on CPU, and
  bench/mistralrs_bench.py uses the same spread): aggregate tokens/s (all completion
  tokens over the wall time from the first request sent to the last stream finished), per-stream
  decode tokens/s ((tokens - 1) / (last token - first token)), time to first token p50/p99 and
  inter-token latency p50/p99 (gaps between content chunks, pooled across streams).

Prompts are built without a tokenizer: a fixed sentence repeated, with single-word padding,
sized by asking the server itself (usage.prompt_tokens of non-streamed max_tokens 1 requests), so
prompt sizes count what the server counts (BOS included). Every prompt starts with its own
request number, so no engine can reuse a cached prefix between requests. Requests carry
`ignore_eos: true` (honoured by vLLM-style servers, ignored by others) and
`stream_options: {"include_usage": true}`; completion tokens come from the streamed usage when
the server sends it, else from the count of content chunks. min/max completion tokens are
reported so a stream that stopped early at EOS shows.

Standard library only (threads and http.client).

    python3 bench/generation_load.py --url http://127.0.0.1:8080 --model NAME \
        --streams 1 --max-tokens 256 --prompt-tokens 64 --prefill-tokens 512 [--label kandle]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

SENTENCE = (
    " The quick brown fox jumps over the lazy dog while the farmer counts his sheep in the"
    " morning light."
)
PAD_WORD = " and"


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def prompt_text(request_id: int, sentences: int, pad: int) -> str:
    # Four digits, least significant first: consecutive requests differ from the third token on.
    nonce = f"{request_id % 10000:04d}"[::-1]
    return f"Note {nonce}." + SENTENCE * sentences + PAD_WORD * pad


class Client:
    def __init__(self, url: str, model: str, endpoint: str, timeout: float, extra: dict):
        parsed = urllib.parse.urlsplit(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.https = parsed.scheme == "https"
        self.base = parsed.path.rstrip("/")
        self.model = model
        self.endpoint = endpoint
        self.timeout = timeout
        self.extra = extra

    def _conn(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=self.timeout)

    def _body(self, prompt: str, max_tokens: int, stream: bool) -> dict:
        body = {"model": self.model, "max_tokens": max_tokens, "temperature": 0.0}
        if self.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        body.update(self.extra)
        return body

    def _path(self) -> str:
        return self.base + ("/v1/chat/completions" if self.endpoint == "chat"
                            else "/v1/completions")

    def prompt_tokens(self, prompt: str) -> int:
        """usage.prompt_tokens of a non-streamed max_tokens 1 request."""
        conn = self._conn()
        try:
            conn.request("POST", self._path(), json.dumps(self._body(prompt, 1, False)),
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {data[:300]!r}")
            return int(json.loads(data)["usage"]["prompt_tokens"])
        finally:
            conn.close()

    def stream(self, prompt: str, max_tokens: int) -> dict:
        """One streamed request; returns send time, content-chunk arrival times and usage."""
        conn = self._conn()
        result = {"chunk_times": [], "usage": None, "error": None, "finish_reason": None}
        try:
            payload = json.dumps(self._body(prompt, max_tokens, True))
            result["t_send"] = time.perf_counter()
            conn.request("POST", self._path(), payload, {"Content-Type": "application/json",
                                                          "Accept": "text/event-stream"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
            while True:
                line = resp.readline()
                if not line:
                    break
                now = time.perf_counter()
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                event = json.loads(data)
                if event.get("usage"):
                    result["usage"] = event["usage"]
                for choice in event.get("choices") or []:
                    if "text" in choice:
                        text = choice.get("text")
                    else:
                        text = (choice.get("delta") or {}).get("content")
                    if text:
                        result["chunk_times"].append(now)
                    if choice.get("finish_reason"):
                        result["finish_reason"] = choice["finish_reason"]
            result["t_end"] = time.perf_counter()
        except Exception as err:  # reported in the figures, not fatal
            result["error"] = f"{type(err).__name__}: {err}"
            result["t_end"] = time.perf_counter()
        finally:
            conn.close()
        return result


def fit_prompt(tokens_of, target: int) -> tuple[int, int, int]:
    """Sentences and pad words giving `target` prompt tokens, by probing `tokens_of(text)`.

    Returns (sentences, pad_words, measured_tokens)."""
    base = tokens_of(prompt_text(0, 0, 0))
    four = tokens_of(prompt_text(0, 4, 0))
    per_sentence = (four - base) / 4
    one_pad = tokens_of(prompt_text(0, 0, 1)) - base
    if per_sentence <= 0 or one_pad != 1:
        raise RuntimeError(f"cannot size prompts: {per_sentence} tokens/sentence, pad {one_pad}")
    if target < base:
        raise RuntimeError(f"--prompt-tokens {target} is below the minimum prompt ({base} tokens)")
    sentences = int((target - base) // per_sentence)
    pad = int(target - base - sentences * per_sentence)
    for _ in range(4):
        got = tokens_of(prompt_text(0, sentences, pad))
        if got == target:
            return sentences, pad, got
        pad += target - got
        if pad < 0:
            sentences -= 1
            pad += int(per_sentence) + 1
    return sentences, pad, tokens_of(prompt_text(0, sentences, pad))


def run_concurrent(client: Client, prompts: list[str], max_tokens: int) -> list[dict]:
    results: list[dict | None] = [None] * len(prompts)
    barrier = threading.Barrier(len(prompts))

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = client.stream(prompts[i], max_tokens)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results  # type: ignore[return-value]


def summarize(results: list[dict], max_tokens: int) -> dict:
    """Figures over a set of streams (each: t_send, t_end, chunk_times, usage, error)."""
    ok = [r for r in results if not r.get("error") and r["chunk_times"]]
    errors = [r["error"] for r in results if r.get("error")]
    ttft, itl, decode, completion, prompt, chunks = [], [], [], [], [], []
    for r in ok:
        times = r["chunk_times"]
        ttft.append(times[0] - r["t_send"])
        itl.extend(b - a for a, b in zip(times, times[1:]))
        usage = r.get("usage") or {}
        n = int(usage.get("completion_tokens") or len(times))
        completion.append(n)
        chunks.append(len(times))
        if usage.get("prompt_tokens") is not None:
            prompt.append(int(usage["prompt_tokens"]))
        if len(times) > 1 and times[-1] > times[0]:
            decode.append((n - 1) / (times[-1] - times[0]))
    wall = (max(r["t_end"] for r in results) - min(r["t_send"] for r in results)) if results else 0
    ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
    return {
        "requests": len(results),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "max_tokens": max_tokens,
        "completion_tokens_total": sum(completion),
        "completion_tokens_min": min(completion) if completion else None,
        "completion_tokens_max": max(completion) if completion else None,
        "content_chunks_total": sum(chunks),
        "prompt_tokens_reported": sorted(set(prompt)) or None,
        "wall_s": round(wall, 3),
        "tokens_per_s": round(sum(completion) / wall, 2) if wall > 0 else None,
        "decode_tokens_per_s_per_stream_p50": round(percentile(decode, 50), 2) if decode else None,
        "decode_tokens_per_s_per_stream_min": round(min(decode), 2) if decode else None,
        "decode_tokens_per_s_per_stream_max": round(max(decode), 2) if decode else None,
        "ttft_p50_ms": ms(percentile(ttft, 50)),
        "ttft_p99_ms": ms(percentile(ttft, 99)),
        "itl_p50_ms": ms(percentile(itl, 50)),
        "itl_p99_ms": ms(percentile(itl, 99)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--model", required=True, help="model name sent in requests")
    p.add_argument("--label", default=None, help="engine name written into the JSON line")
    p.add_argument("--endpoint", choices=["completions", "chat"], default="completions")
    p.add_argument("--streams", type=int, default=1, help="concurrent streams")
    p.add_argument("--rounds", type=int, default=1, help="rounds of STREAMS concurrent requests")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--warmup", type=int, default=2, help="untimed 32-token requests first")
    p.add_argument("--prompt-tokens", type=int, default=64, help="prompt size of the streams")
    p.add_argument("--length-spread", type=int, default=1,
                   help="stream i of a round gets PROMPT_TOKENS + i * SPREAD prompt tokens")
    p.add_argument("--prefill-tokens", type=int, default=0,
                   help="also time a prompt of this many tokens with max_tokens 1 (0: skip)")
    p.add_argument("--prefill-runs", type=int, default=3)
    p.add_argument("--no-ignore-eos", action="store_true", help="do not send ignore_eos: true")
    p.add_argument("--extra", default="{}", help="JSON object merged into every request body")
    p.add_argument("--timeout", type=float, default=1800.0, help="per-request socket timeout, s")
    args = p.parse_args()

    extra = json.loads(args.extra)
    if not args.no_ignore_eos:
        extra = {"ignore_eos": True, **extra}
    client = Client(args.url, args.model, args.endpoint, args.timeout, extra)
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731

    sentences, pad, measured = fit_prompt(client.prompt_tokens, args.prompt_tokens)
    log(f"prompt: {measured} tokens ({sentences} sentences + {pad} pad words)")
    for i in range(args.warmup):
        client.stream(prompt_text(9999 - i, sentences, pad), 32)

    out = {
        "engine": args.label or args.model,
        "url": args.url,
        "model": args.model,
        "endpoint": args.endpoint,
        "streams": args.streams,
        "rounds": args.rounds,
        "prompt_tokens": measured,
        "length_spread": args.length_spread,
        "ignore_eos_sent": not args.no_ignore_eos,
    }

    request_id = 1
    if args.prefill_tokens:
        ps, pp, pm = fit_prompt(client.prompt_tokens, args.prefill_tokens)
        runs = []
        for _ in range(args.prefill_runs):
            r = client.stream(prompt_text(request_id, ps, pp), 1)
            request_id += 1
            if r.get("error") or not r["chunk_times"]:
                raise SystemExit(f"prefill request failed: {r.get('error')}")
            runs.append(r["chunk_times"][0] - r["t_send"])
        out["prefill_tokens"] = pm
        out["prefill_s"] = round(statistics.median(runs), 3)
        out["prefill_s_runs"] = [round(x, 3) for x in runs]
        log(f"prefill {pm} tokens: {out['prefill_s']:.3f} s (median of {len(runs)})")

    results = []
    for _ in range(args.rounds):
        prompts = [prompt_text(request_id + i, sentences, pad + i * args.length_spread)
                   for i in range(args.streams)]
        request_id += args.streams
        results.extend(run_concurrent(client, prompts, args.max_tokens))
    figures = summarize(results, args.max_tokens)
    out.update(figures)
    log(f"{out['engine']}: {args.streams} stream(s): {out['tokens_per_s']} tokens/s aggregate, "
        f"TTFT p50 {out['ttft_p50_ms']} ms p99 {out['ttft_p99_ms']} ms, "
        f"ITL p50 {out['itl_p50_ms']} ms p99 {out['itl_p99_ms']} ms, "
        f"completion tokens {out['completion_tokens_min']}..{out['completion_tokens_max']}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
