"""Calibrate grounding: the embedder's similarity range (rag/retrieve.py DENSE_RELEVANCE_RANGE) and RAG_MIN_RELEVANCE.

A question is answered when its best retrieved chunk's relevance reaches the threshold, where relevance =
max(share of the question's words in the chunk, (cosine - low) / (high - low) clipped to 0..1). The constants are
chosen on the tune half (answerable dev questions of every language pair, and off-topic questions): the most off-topic
refusals while at least MIN_ANSWERED of the answerable questions are answered; the report half shows what they give.

Usage: .venv/bin/python bench/calibrate_grounding.py [--scale small|full] [--embed-model SETTING]
"""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np
from benchlib import ROOT, header, parse_scale, write_results
from devsets import build_dev_store, cached_queries, dev_sets, dev_settings, offtopic

MIN_ANSWERED = 0.97
LOWS = np.round(np.arange(0.70, 0.881, 0.01), 3)
WIDTHS = (0.04, 0.06, 0.08, 0.10, 0.12, 0.15)
THRESHOLDS = np.round(np.arange(0.25, 0.701, 0.05), 3)


def signals(service, question: str, top_k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, cosine) of each retrieved chunk, so any (low, high, threshold) can be replayed without searching."""
    from rag.retrieve import term_coverage
    from rag.tokenize import keyword_tokens

    hits = service.retriever.search(question, top_k)
    if not hits:
        return np.zeros(0), np.zeros(0)
    tokens = keyword_tokens(question)
    stored = service.store.get_vectors([h.chunk_id for h in hits])
    query = service.embedder.embed_query(question)
    chunk_tokens = service.keyword_index.tokens_of([h.chunk_id for h in hits])
    coverage = np.array([term_coverage(tokens, chunk_tokens.get(h.chunk_id, [])) for h in hits])
    cosine = np.array([float(stored[h.chunk_id] @ query) if h.chunk_id in stored else 0.0 for h in hits])
    return coverage, cosine


def best_relevance(sig: tuple[np.ndarray, np.ndarray], low: float, high: float) -> float:
    coverage, cosine = sig
    if coverage.size == 0:
        return 0.0
    return float(np.max(np.maximum(coverage, np.clip((cosine - low) / (high - low), 0.0, 1.0))))


def rates(answerable, off, low, high, threshold) -> tuple[float, float]:
    answered = float(np.mean([best_relevance(s, low, high) >= threshold for s in answerable]))
    refused = float(np.mean([best_relevance(s, low, high) < threshold for s in off]))
    return answered, refused


def main() -> int:
    args = parse_scale(__doc__.splitlines()[0], extra=lambda p: p.add_argument("--embed-model", default="auto"))
    meta = header("calibrate_grounding", args)
    settings = dev_settings(f"dev-{args.embed_model.replace('/', '_').replace(':', '_')}", embed_model=args.embed_model)
    service = build_dev_store(settings)
    cached_queries(service.embedder)
    extra_off = json.loads((ROOT / "bench" / "datasets" / "unanswerable.json").read_text(encoding="utf-8"))

    halves = {}
    for split, parity in (("tune", 0), ("report", 1)):
        answerable = [i["question"] for s in dev_sets() for i in s.items(split)]
        off = [i["question"] for i in offtopic(split)] + extra_off[parity::2]
        halves[split] = (
            [signals(service, q) for q in answerable],
            [signals(service, q) for q in off],
        )
        print(f"{split}: {len(answerable)} answerable, {len(off)} off-topic", file=sys.stderr)

    grid = [(lo, lo + w, t) for lo, w, t in itertools.product(LOWS, WIDTHS, THRESHOLDS)]
    tune_yes, tune_no = halves["tune"]
    scored = {g: rates(tune_yes, tune_no, *g) for g in grid}
    feasible = [g for g in grid if scored[g][0] >= MIN_ANSWERED] or grid
    best = max(feasible, key=lambda g: (scored[g][1], scored[g][0], -g[2]))
    low, high, threshold = (round(float(x), 3) for x in best)
    report_yes, report_no = halves["report"]
    tuned = {"tune": scored[best], "report": rates(report_yes, report_no, low, high, threshold)}
    coverage_only = {s: rates(*halves[s], 2.0, 3.0, threshold) for s in halves}  # cosine never counts

    print(f"\nchosen on the tune half (answered >= {MIN_ANSWERED}): range ({low}, {high}), threshold {threshold}")
    print("| half | answered (answerable) | refused (off-topic) | same threshold, word coverage only |")
    print("|---|---|---|---|")
    for split in ("tune", "report"):
        a, r = tuned[split]
        ca, cr = coverage_only[split]
        print(f"| {split} | {a:.3f} | {r:.3f} | answered {ca:.3f}, refused {cr:.3f} |")
    write_results(
        "calibrate_grounding",
        {"meta": meta, "embedder": service.embedder.name, "range": [low, high], "threshold": threshold,
         "tuned": tuned, "coverage_only": coverage_only, "min_answered": MIN_ANSWERED},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
