"""Retrieval evaluation on a user's own questions: hit@k and MRR against gold answer strings.

A hit is a retrieved chunk containing one of the gold strings, compared after NFKC, case folding and removing
white space, so full-width punctuation and line breaks inside a PDF chunk do not hide a correct answer.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

from rag.errors import ConfigError
from rag.retrieve import Retriever


def _canon(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def load_qa(path: Path) -> list[dict]:
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the questions file ({exc})") from None
    if isinstance(items, dict):
        items = items.get("questions") or items.get("data") or []
    good = [i for i in items if isinstance(i, dict) and i.get("question") and i.get("answers")]
    if not good:
        raise ConfigError(f'{path}: expected a JSON list of {{"question": ..., "answers": [...]}} objects')
    return good


def first_hit_rank(texts: list[str], answers: list[str]) -> int | None:
    gold = [_canon(a) for a in answers if _canon(a)]
    for rank, text in enumerate(texts, 1):
        canon = _canon(text)
        if any(g in canon for g in gold):
            return rank
    return None


def evaluate_retrieval(retriever: Retriever, items: list[dict], top_k: int = 5) -> dict:
    ranks: list[int | None] = []
    misses: list[str] = []
    for item in items:
        hits = retriever.search(item["question"], top_k)
        rank = first_hit_rank([h.text for h in hits], list(item["answers"]))
        ranks.append(rank)
        if rank is None:
            misses.append(item["question"])
    n = len(ranks) or 1

    def hit_at(k: int) -> float:
        return sum(1 for r in ranks if r is not None and r <= k) / n

    return {
        "questions": len(ranks),
        "hit@1": hit_at(1),
        "hit@3": hit_at(3),
        "hit@5": hit_at(5),
        "mrr": sum(1.0 / r for r in ranks if r) / n,
        "misses": misses,
    }
