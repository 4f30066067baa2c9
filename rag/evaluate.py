"""Evaluation on a user's own questions: retrieval (hit@k, MRR) and what reaches the person (--answers).

A hit is a text containing one of the gold strings, compared after NFKC, case folding and removing white space, so
full-width punctuation and line breaks inside a PDF chunk do not hide a correct answer. The answer evaluation runs the
real answer path and reports, per question language: retrieval hit@k, context recall (a gold string is in the
sources actually handed to the quote picker and the model), quote hit, answer hit (in the generated text), quote or
answer hit, how often an answerable question was refused, and how often off-topic questions were refused.
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.language import detect_language
from rag.retrieve import Retriever


def canon(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the questions file ({exc})") from None


def load_qa(path: Path, split: str | None = None, splits: dict[str, str] | None = None) -> list[dict]:
    """Questions with gold answers. ``split`` keeps only items of that split ("tune"/"report"); an item's split is
    its own ``split`` field, or looked up by id (or base id) in ``splits``."""
    items = _read_json(path)
    if isinstance(items, dict):
        items = items.get("questions") or items.get("data") or []
    good = [i for i in items if isinstance(i, dict) and i.get("question") and i.get("answers")]
    if not good:
        raise ConfigError(f'{path}: expected a JSON list of {{"question": ..., "answers": [...]}} objects')
    return [i for i in good if _keep(i, split, splits)]


def load_questions(path: Path, split: str | None = None, splits: dict[str, str] | None = None) -> list[dict]:
    """Off-topic questions: a list of strings or of {"question": ...} objects."""
    items = _read_json(path)
    out = [{"question": i} if isinstance(i, str) else i for i in items if isinstance(i, str | dict)]
    out = [i for i in out if i.get("question")]
    if not out:
        raise ConfigError(f"{path}: expected a JSON list of questions")
    return [i for i in out if _keep(i, split, splits)]


def _keep(item: dict, split: str | None, splits: dict[str, str] | None) -> bool:
    if not split or split == "all":
        return True
    own = item.get("split")
    if own is None and splits:
        item_id = str(item.get("id", ""))
        own = splits.get(item_id) or splits.get(item_id.rsplit("-", 1)[0])
    return own == split


def contains_gold(text: str, answers: Iterable[str]) -> bool:
    body = canon(text)
    return any(g and g in body for g in (canon(a) for a in answers))


def first_hit_rank(texts: list[str], answers: list[str]) -> int | None:
    for rank, text in enumerate(texts, 1):
        if contains_gold(text, answers):
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
    return {**_rank_metrics(ranks), "misses": misses}


def _rank_metrics(ranks: list[int | None]) -> dict:
    n = len(ranks) or 1

    def hit_at(k: int) -> float:
        return sum(1 for r in ranks if r is not None and r <= k) / n

    return {
        "questions": len(ranks),
        "hit@1": hit_at(1),
        "hit@3": hit_at(3),
        "hit@5": hit_at(5),
        "mrr": sum(1.0 / r for r in ranks if r) / n,
    }


def evaluate_answers(
    answerer: Any,
    items: list[dict],
    offtopic: list[dict] = (),
    *,
    top_k: int = 5,
    mode: str | None = None,
    on_item: Callable[[dict], None] | None = None,
) -> dict:
    """Run every question through the answer path and score what the user would see, by question language."""
    rows: list[dict] = []
    for item in items:
        started = time.perf_counter()
        answer = answerer.stream(item["question"], top_k=top_k, mode=mode)
        text = "".join(answer)
        gold = list(item["answers"])
        retrieved = answer.retrieved
        row = {
            "question": item["question"],
            "lang": item.get("lang") or detect_language(item["question"]),
            "rank": first_hit_rank([h.text for h in retrieved], gold),
            "context": any(contains_gold(h.text, gold) for h in answer.sources),
            "quote": any(contains_gold(q.text, gold) for q in answer.quotes),
            "answer": bool(answer.generated) and contains_gold(text, gold),
            "abstained": answer.abstained,
            "seconds": time.perf_counter() - started,
        }
        row["shown"] = row["quote"] or row["answer"]
        rows.append(row)
        if on_item:
            on_item(row)
    refusals = []
    for item in offtopic:
        answer = answerer.stream(item["question"], top_k=top_k, mode="quotes")
        refusals.append({"question": item["question"], "lang": item.get("lang") or detect_language(item["question"]),
                         "abstained": answer.abstained})  # fmt: skip
    by_lang: dict[str, dict] = {}
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["lang"]].append(row)
        groups["all"].append(row)
    off_groups: dict[str, list[dict]] = defaultdict(list)
    for row in refusals:
        off_groups[row["lang"]].append(row)
        off_groups["all"].append(row)
    for lang in sorted(set(groups) | set(off_groups)):
        group = groups.get(lang, [])
        n = len(group) or 1
        summary = _rank_metrics([r["rank"] for r in group]) if group else {"questions": 0}
        if group:
            summary.update(
                context_recall=sum(r["context"] for r in group) / n,
                quote_hit=sum(r["quote"] for r in group) / n,
                answer_hit=sum(r["answer"] for r in group) / n,
                shown_hit=sum(r["shown"] for r in group) / n,
                refused_answerable=sum(r["abstained"] for r in group) / n,
                seconds_p50=sorted(r["seconds"] for r in group)[len(group) // 2],
            )
        off = off_groups.get(lang, [])
        if off:
            summary.update(offtopic=len(off), offtopic_refused=sum(r["abstained"] for r in off) / len(off))
        by_lang[lang] = summary
    return {"by_language": by_lang, "rows": rows, "offtopic_rows": refusals}
