"""Writes a fixed, varied set of benchmark sentences (one per line) to stdout.

Deterministic (seeded), lengths from a few words to a few dozen, so padding and batching matter
as they do with real traffic.

    python bench/make_sentences.py 2048 > bench/sentences.txt
"""

import random
import sys

SUBJECTS = [
    "The operator", "A canary revision", "Our inference server", "The new model",
    "Every pod", "The autoscaler", "A user in Berlin", "The data team", "This benchmark",
    "The GPU node pool", "Kubernetes", "The embedding service", "A search query",
]
VERBS = [
    "serves", "rolls back", "scales up", "measures", "embeds", "rejects", "batches",
    "schedules", "watches", "compares", "stores", "ranks", "summarizes",
]
OBJECTS = [
    "thousands of sentences per second", "the stable revision", "short product reviews",
    "long legal documents about data protection", "requests from mobile clients",
    "latency histograms and error rates", "vectors for semantic search",
    "questions about the weather tomorrow", "support tickets written in a hurry",
    "the results of last night's batch job", "recipes for vegetarian lasagna",
]
TAILS = [
    "", "without downtime", "during the nightly maintenance window",
    "while the cluster is under heavy load from other tenants",
    "because the previous version had a memory leak that nobody noticed for weeks",
    "and reports the figures to the dashboard", "in three regions at once",
    "after the configuration change was approved by two reviewers",
]


def sentence(rng: random.Random) -> str:
    parts = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(TAILS)]
    text = " ".join(p for p in parts if p)
    if rng.random() < 0.3:
        text += ", " + rng.choice(SUBJECTS).lower() + " " + rng.choice(VERBS) + " " + rng.choice(OBJECTS)
    return text + rng.choice([".", "!", "?", "."])


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
    rng = random.Random(20261124)
    for _ in range(count):
        print(sentence(rng))


if __name__ == "__main__":
    main()
