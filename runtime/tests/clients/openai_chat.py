"""Generates text through kandle-runtime's OpenAI API with the official `openai` Python client.

Lists the models, then asks for chat and text completions whole and streamed (greedy, so both
forms must give the same text and the same usage), asks for log-probabilities in both APIs'
shapes, and checks that a too-long request and an unknown model raise the client's typed errors.
Every whole answer and every streamed chunk is also validated strictly against the client's own
models, which the client itself skips when it parses. Prints a JSON summary on stdout for the
Rust test runtime/tests/generation_openai_client.rs; any failed check exits non-zero with the
reason on stderr.

Usage: openai_chat.py URL MODEL CONTEXT_TOKENS
  URL is the server's root (http://HOST:PORT); CONTEXT_TOKENS is the context limit it serves.
"""
import json
import sys
from typing import List, Literal, Optional

import openai
from openai.types import Completion, CompletionChoice, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
PROMPT = "The capital of France is"


class StreamedCompletionChoice(CompletionChoice):
    """The client types streamed text completions as whole ones, whose `finish_reason` is never
    null; OpenAI's streams send null until the last chunk, and the client accepts that."""
    finish_reason: Optional[Literal["stop", "length", "content_filter"]] = None


class CompletionChunk(Completion):
    choices: List[StreamedCompletionChoice]


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def strict(model_class, raw, what):
    """`raw` (a JSON object) as `model_class`, validated: the client itself only constructs."""
    try:
        return model_class.model_validate(raw)
    except Exception as err:  # pydantic.ValidationError names each rejected field
        raise CheckFailed(f"{what} does not fit openai's {model_class.__name__}: {err}\n"
                          f"the server sent: {json.dumps(raw)}") from err


def whole(create, model_class, what, **request):
    """A non-streamed answer: the client's parse of it, checked strictly against the raw body."""
    raw = create.with_raw_response.create(**request)
    strict(model_class, json.loads(raw.text), what)
    return raw.parse()


def streamed(create, model_class, what, **request):
    """A streamed answer's chunks, each checked strictly; the client stops at `data: [DONE]`."""
    chunks = []
    for chunk in create.create(stream=True, stream_options={"include_usage": True}, **request):
        strict(model_class, chunk.model_dump(mode="json", exclude_unset=True, warnings=False),
               f"{what} chunk {len(chunks)}")
        chunks.append(chunk)
    check(chunks, f"{what}: the stream had no chunks")
    return chunks


def usage_dict(usage, what):
    check(usage is not None, f"{what}: no usage")
    check(usage.prompt_tokens > 0 and usage.completion_tokens > 0,
          f"{what}: usage counts no tokens: {usage}")
    check(usage.total_tokens == usage.prompt_tokens + usage.completion_tokens,
          f"{what}: usage does not add up: {usage}")
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def check_stream(chunks, text, finish, usage, what, delta_text):
    """The streamed chunks give `text`, end with `finish`, and the last one carries `usage`."""
    last = chunks[-1]
    check(last.choices == [], f"{what}: the usage chunk has choices: {last}")
    check(all(c.usage is None for c in chunks[:-1]),
          f"{what}: usage on a chunk before the last")
    check(len({c.id for c in chunks}) == 1, f"{what}: chunk ids differ")
    joined = "".join(delta_text(c.choices[0]) or "" for c in chunks if c.choices)
    check(joined == text, f"{what}: streamed text {joined!r} != whole text {text!r}")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    check(finishes[-1] == finish and all(f is None for f in finishes[:-1]),
          f"{what}: finish reasons {finishes}, expected only a final {finish!r}")
    check(usage_dict(last.usage, what) == usage,
          f"{what}: streamed usage {last.usage} != whole usage {usage}")


def chat(client, model):
    request = dict(model=model, messages=MESSAGES, temperature=0, max_tokens=12, seed=1)
    answer = whole(client.chat.completions, ChatCompletion, "chat completion", **request)
    check(answer.object == "chat.completion", f"chat object is {answer.object!r}")
    check(len(answer.choices) == 1, f"chat has {len(answer.choices)} choices")
    choice = answer.choices[0]
    text = choice.message.content
    check(isinstance(text, str) and text, f"chat content is empty: {choice.message}")
    check(choice.message.role == "assistant", f"chat role is {choice.message.role!r}")
    check(choice.finish_reason in ("stop", "length"), f"chat finish is {choice.finish_reason!r}")
    usage = usage_dict(answer.usage, "chat")
    check(usage["completion_tokens"] <= 12, f"chat went past max_tokens: {usage}")

    chunks = streamed(client.chat.completions, ChatCompletionChunk, "chat", **request)
    check(chunks[0].object == "chat.completion.chunk", f"chunk object is {chunks[0].object!r}")
    check(chunks[0].choices and chunks[0].choices[0].delta.role == "assistant",
          f"the first chat chunk does not say the role: {chunks[0]}")
    check_stream(chunks, text, choice.finish_reason, usage, "streamed chat",
                 lambda c: c.delta.content)
    return {"content": text, "finish_reason": choice.finish_reason, "usage": usage,
            "chunks": len(chunks)}


def completion(client, model):
    request = dict(model=model, prompt=PROMPT, temperature=0, max_tokens=5, logprobs=2)
    answer = whole(client.completions, Completion, "completion", **request)
    check(answer.object == "text_completion", f"completion object is {answer.object!r}")
    choice = answer.choices[0]
    check(isinstance(choice.text, str) and choice.text, f"completion text is empty: {choice}")
    check(choice.finish_reason in ("stop", "length"),
          f"completion finish is {choice.finish_reason!r}")
    usage = usage_dict(answer.usage, "completion")
    logprobs = choice.logprobs
    check(logprobs is not None, "completion has no logprobs")
    n = usage["completion_tokens"]
    check(len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == n,
          f"completion logprobs do not have one entry per token ({n}): {logprobs}")
    check("".join(logprobs.tokens) == choice.text,
          f"completion logprob tokens {logprobs.tokens} do not spell {choice.text!r}")
    for i, top in enumerate(logprobs.top_logprobs):
        check(len(top) == 2, f"completion top_logprobs[{i}] has {len(top)} entries: {top}")
        check(logprobs.token_logprobs[i] <= 0, f"completion logprob {i} is positive")

    chunks = streamed(client.completions, CompletionChunk, "completion", **request)
    check_stream(chunks, choice.text, choice.finish_reason, usage, "streamed completion",
                 lambda c: c.text)
    return {"text": choice.text, "finish_reason": choice.finish_reason, "usage": usage,
            "chunks": len(chunks), "tokens": logprobs.tokens}


def chat_logprobs(client, model):
    answer = whole(client.chat.completions, ChatCompletion, "chat with logprobs", model=model,
                   messages=MESSAGES, temperature=0, max_tokens=6, logprobs=True, top_logprobs=3)
    choice = answer.choices[0]
    check(choice.logprobs is not None and choice.logprobs.content,
          f"chat has no logprobs.content: {choice}")
    entries = choice.logprobs.content
    check(len(entries) == answer.usage.completion_tokens,
          f"{len(entries)} logprob entries for {answer.usage.completion_tokens} tokens")
    for i, entry in enumerate(entries):
        check(len(entry.top_logprobs) == 3,
              f"logprobs.content[{i}].top_logprobs has {len(entry.top_logprobs)} entries")
        check(entry.logprob <= 0, f"logprobs.content[{i}].logprob is {entry.logprob}")
        best = max(t.logprob for t in entry.top_logprobs)
        check(abs(best - entry.logprob) < 1e-5,
              f"greedy, yet token {i} ({entry.logprob}) is not the most likely ({best})")
    return [[t.token for t in e.top_logprobs] for e in entries]


def errors(client, model, context):
    try:
        client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=100000)
        raise CheckFailed("max_tokens=100000 did not raise")
    except openai.BadRequestError as err:
        check(err.status_code == 400, f"too long: status {err.status_code}")
        check("context" in err.message and str(context) in err.message,
              f"the error does not name the context limit {context}: {err.message}")
        check(err.code == "context_length_exceeded", f"too long: code {err.code!r}")
        check(err.param == "max_tokens", f"too long: param {err.param!r}")
        too_long = err.message
    try:
        client.chat.completions.create(model=model + "-missing", messages=MESSAGES, max_tokens=1)
        raise CheckFailed("an unknown model did not raise")
    except openai.NotFoundError as err:
        check(model + "-missing" in err.message, f"the error does not name the model: {err}")
        unknown = err.message
    return {"too_long": too_long, "unknown_model": unknown}


def main():
    url, model, context = sys.argv[1:]
    client = openai.OpenAI(base_url=url.rstrip("/") + "/v1", api_key="unused", max_retries=0,
                           timeout=120)
    summary = {"openai": openai.__version__}
    try:
        raw = client.models.with_raw_response.list()
        listed = json.loads(raw.text)
        for i, entry in enumerate(listed.get("data", [])):
            strict(Model, entry, f"models entry {i}")
        ids = [m.id for m in raw.parse()]
        check(model in ids, f"{model!r} is not among the models: {ids}")
        summary["models"] = ids
        summary["chat"] = chat(client, model)
        summary["completion"] = completion(client, model)
        summary["chat_top_logprobs"] = chat_logprobs(client, model)
        summary["errors"] = errors(client, model, context)
    except CheckFailed as err:
        print(f"FAILED: {err}", file=sys.stderr)
        print(json.dumps(summary, indent=2), file=sys.stderr)
        sys.exit(1)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
