"""Calibrate grounding: GROUNDING_RANGE (rag/retrieve.py) and RAG_MIN_RELEVANCE, on answerable vs off-topic questions.

A question is answered when its best retrieved chunk's relevance reaches the threshold, where relevance =
max(rarity-weighted share of the question's words in the chunk, similarity rescaled to 0..1) and similarity is the
plain cosine for a chunk in the question's language, the centred one for a chunk in another (each with its own range).
Questions are asked in a bilingual collection and in the collection of their documents' language alone (off-topic
ones in all three). The ranges and the threshold are chosen together on the tune half: the most off-topic refusals
while at least MIN_ANSWERED of the answerable questions (every language pair) are answered. The report half shows
what they give, by question language. Each question is searched once per variant; the grid replays the retriever's
evidence (coverage, similarity). Two variants, each calibrated on the tune half and shown side by side: with and
without reading a chunk in the other language against the question's dictionary translation (TRANSLATED_COVERAGE in
rag/retrieve.py: the share of the question's words the chunk holds in translation counts as coverage).

Usage: .venv/bin/python bench/calibrate_grounding.py [--scale small|full] [--embed-model SETTING] [--chunk-size N]
"""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np
from benchlib import ROOT, header, parse_scale, write_results
from devsets import add_dev_store_options, build_dev_stores, cached_queries, dev_cases, offtopic

MIN_ANSWERED = 0.97
SAME_LOWS = np.round(np.arange(0.78, 0.901, 0.01), 3)
SAME_WIDTHS = (0.03, 0.05, 0.08, 0.10)
CROSS_LOWS = (0.10, 0.15, 0.20, 0.25, 0.30)
CROSS_WIDTHS = (0.05, 0.10, 0.15, 0.20)
THRESHOLDS = np.round(np.arange(0.30, 0.901, 0.05), 3)


def evidence(service, question: str) -> tuple[str, np.ndarray, bool]:
    """(question language, [coverage, similarity, same-language] per retrieved chunk, whether the question names
    something no chunk holds: rag/names.py, refused whatever the relevance)."""
    from rag.language import detect_language

    language = detect_language(question)
    hits = service.retriever.search(question, 5)
    rows = [(h.coverage, np.nan if h.similarity is None else h.similarity, float(h.lang == language)) for h in hits]
    named = bool(service.retriever.absent_names(question))
    return language, np.array(rows or [(0.0, np.nan, 1.0)], dtype=np.float64), named


def best(ev: np.ndarray, same: tuple[float, float], cross: tuple[float, float]) -> float:
    coverage, sim, is_same = ev[:, 0], ev[:, 1], ev[:, 2] > 0
    low = np.where(is_same, same[0], cross[0])
    high = np.where(is_same, same[1], cross[1])
    dense = np.nan_to_num(np.clip((sim - low) / (high - low), 0.0, 1.0))
    return float(np.max(np.maximum(coverage, dense)))


def calibrate(halves: dict[str, tuple[list, list]], scale: str, shipped: tuple) -> tuple[tuple, tuple, float, dict]:
    """Choose the ranges and the threshold on the tune half; print and return both halves' rates by language, beside
    those of the ``shipped`` constants (same low, width, cross low, width, threshold)."""

    def rates(
        split: str, g: tuple, language: str | None = None, names: bool = True, kind: str | None = None
    ) -> tuple[float, float, int, int]:
        same, cross, threshold = (g[0], g[0] + g[1]), (g[2], g[2] + g[3]), g[4]

        def values(rows: list) -> list[float]:
            return [
                0.0 if names and n else best(e, same, cross)
                for lang, e, n, k in rows
                if language in (None, lang) and kind in (None, k)
            ]

        yes, no = values(halves[split][0]), values(halves[split][1])
        answered = float(np.mean([v >= threshold for v in yes])) if yes else float("nan")
        refused = float(np.mean([v < threshold for v in no])) if no else float("nan")
        return answered, refused, len(yes), len(no)

    default = (0.80, 0.10, 0.05, 0.20, 0.525)
    grid = list(itertools.product(SAME_LOWS, SAME_WIDTHS, CROSS_LOWS, CROSS_WIDTHS, THRESHOLDS))
    if scale != "full":
        grid = [*grid[:: max(1, len(grid) // 300)], default]
    scored = {g: rates("tune", g)[:2] for g in grid}
    feasible = [g for g in grid if scored[g][0] >= MIN_ANSWERED] or grid
    chosen = max(feasible, key=lambda g: (scored[g][1], scored[g][0]))
    same = (float(chosen[0]), round(float(chosen[0] + chosen[1]), 3))
    cross = (float(chosen[2]), round(float(chosen[2] + chosen[3]), 3))
    threshold = float(chosen[4])
    print(f"chosen on the tune half (answered >= {MIN_ANSWERED}): GROUNDING_RANGE same={same} cross={cross}, "
          f"RAG_MIN_RELEVANCE={threshold}")  # fmt: skip
    print("| half | question language | answered (answerable) | refused (off-topic) | same, without the name check "
          "| shipped constants (answered / refused) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    table: dict[str, dict[str, list]] = {}
    for split in ("tune", "report"):
        table[split] = {}
        for language in (None, "en", "zh"):
            a, r, ny, nn = rates(split, chosen, language)
            a0, r0, _, _ = rates(split, chosen, language, names=False)  # the same constants, side by side
            a1, r1, _, _ = rates(split, shipped, language)
            table[split][language or "all"] = [a, r, ny, nn]
            table[split][f"{language or 'all'}, without the name check"] = [a0, r0, ny, nn]
            table[split][f"{language or 'all'}, shipped constants"] = [a1, r1, ny, nn]
            print(f"| {split} | {language or 'all'} | {a:.3f} of {ny} | {r:.3f} of {nn} | {a0:.3f} / {r0:.3f} "
                  f"| {a1:.3f} / {r1:.3f} |")  # fmt: skip
        for kind in ("near", "far"):  # the later off-topic set by kind (bench/datasets/offtopic-more-dev.json)
            _, r, _, nn = rates(split, chosen, kind=kind)
            _, r1, _, _ = rates(split, shipped, kind=kind)
            table[split][f"off-topic, {kind}"] = [None, r, 0, nn]
            table[split][f"off-topic, {kind}, shipped constants"] = [None, r1, 0, nn]
            print(f"| {split} | off-topic, {kind} (all languages) | | {r:.3f} of {nn} | | - / {r1:.3f} |")
    return same, cross, threshold, table


def main() -> int:
    args = parse_scale(__doc__.splitlines()[0], extra=add_dev_store_options)
    meta = header("calibrate_grounding", args)
    stores = build_dev_stores(args)
    service = stores["mixed"]
    cached_queries(service.embedder)
    extra_off = json.loads((ROOT / "bench" / "datasets" / "unanswerable.json").read_text(encoding="utf-8"))
    import rag.retrieve

    def ask_all() -> dict[str, tuple[list, list]]:
        halves = {}
        for split, parity in (("tune", 0), ("report", 1)):
            answerable = [
                (*evidence(store, i["question"]), None) for _, store, items in dev_cases(stores, split) for i in items
            ]
            questions = [(i["question"], i.get("kind")) for i in offtopic(split)] + [
                (q, None) for q in extra_off[parity::2]
            ]
            # asked in every collection
            off = [(*evidence(store, q), kind) for store in stores.values() for q, kind in questions]
            halves[split] = (answerable, off)
        return halves

    # Grounding with and without reading chunks in the other language against the question's dictionary translation
    # (rag/retrieve.py, TRANSLATED_COVERAGE), each calibrated on the tune half, side by side.
    shipped = rag.retrieve.TRANSLATED_COVERAGE
    variants = {}
    for translated in (shipped, not shipped):
        rag.retrieve.TRANSLATED_COVERAGE = translated
        variants[translated] = ask_all()
    rag.retrieve.TRANSLATED_COVERAGE = shipped
    results = {}
    ranges = rag.retrieve.GROUNDING_RANGE.get(service.embedder.name, {})
    (same_low, same_high), (cross_low, cross_high) = ranges.get("same", (0.0, 1.0)), ranges.get("cross", (0.0, 1.0))
    constants = (same_low, same_high - same_low, cross_low, cross_high - cross_low, service.settings.min_relevance)
    for translated, halves in variants.items():
        print(f"\n## TRANSLATED_COVERAGE={translated}" + (" (shipped)" if translated == shipped else ""))
        results[translated] = calibrate(halves, args.scale, constants)
    same, cross, threshold, table = results[shipped]
    table["without TRANSLATED_COVERAGE" if shipped else "with TRANSLATED_COVERAGE"] = results[not shipped][3]
    write_results(
        "calibrate_grounding",
        {"meta": meta, "embedder": service.embedder.name, "same_range": list(same), "cross_range": list(cross),
         "threshold": float(threshold), "min_answered": MIN_ANSWERED, "rates": table},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
