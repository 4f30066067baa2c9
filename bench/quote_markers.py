"""Quotes from Wikipedia-style text: the dev questions over English documents, their sources as retrieved and the
same sources with a reference marker ("[12]") after every sentence end, side by side in one run.

Wikipedia's text (saved as PDF or text) puts its markers right after the period ("...Rossum.[42] Its"); a splitter
that wants a space after the period sees no sentence end there, and a quote becomes a 500-character cut of the
paragraph. Nothing here is tuned: both halves are reported.

Usage: .venv/bin/python bench/quote_markers.py [--scale small|full]
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import statistics
import sys

from benchlib import header, parse_scale, write_results
from devsets import add_dev_store_options, build_dev_stores, cached_queries, dev_cases

_SENTENCE_END = re.compile(r"(?<=[a-z0-9)][.!?])(?=\s+[A-Z])")


def with_markers(text: str, numbers: itertools.count) -> str:
    """``text`` with "[n]" after each sentence end that a capital letter follows, as Wikipedia cites."""
    return _SENTENCE_END.sub(lambda _: f"[{next(numbers)}]", text)


def main() -> int:
    args = parse_scale(__doc__.splitlines()[0], extra=add_dev_store_options)
    meta = header("quote_markers", args)
    from rag.evaluate import contains_gold
    from rag.quotes import MAX_CHARS

    stores = build_dev_stores(args)
    cached_queries(stores["mixed"].embedder)
    results: dict = {"meta": meta, "sets": {}}
    print(
        "| half | questions over English documents | n | quote hit, as retrieved | quote hit, with markers "
        "| characters per quote (as retrieved / with markers) | quotes cut at the cap (with markers) |"
    )
    print("|---|---|---|---|---|---|---|")
    for split in ("tune", "report"):
        for label, store, items in dev_cases(stores, split):
            if "->en" not in label.replace(" ", ""):
                continue
            items = items if args.scale == "full" else items[:4]
            numbers = itertools.count(1)
            plain_hits, marked_hits, sizes, cut = [], [], ([], []), []
            for item in items:
                question, gold = item["question"], item["answers"]
                answer = store.answerer.stream(question, mode="quotes")  # its quotes: those of the sources as retrieved
                plain = answer.quotes
                marked = [dataclasses.replace(h, text=with_markers(h.text, numbers)) for h in answer.sources]
                quoted = store.answerer.quotes(question, marked)
                plain_hits.append(any(contains_gold(q.text, gold) for q in plain))
                marked_hits.append(any(contains_gold(q.text, gold) for q in quoted))
                sizes[0].append(sum(len(q.text) for q in plain))
                sizes[1].append(sum(len(q.text) for q in quoted))
                cut.append(any(len(q.text) >= MAX_CHARS for q in quoted))
            row = {
                "n": len(items),
                "quote_hit": statistics.mean(plain_hits),
                "quote_hit_with_markers": statistics.mean(marked_hits),
                "characters": [statistics.mean(sizes[0]), statistics.mean(sizes[1])],
                "cut_with_markers": statistics.mean(cut),
            }
            results["sets"][f"{split}: {label}"] = row
            print(
                f"| {split} | {label} | {row['n']} | {row['quote_hit']:.2f} | {row['quote_hit_with_markers']:.2f} "
                f"| {row['characters'][0]:.0f} / {row['characters'][1]:.0f} | {row['cut_with_markers']:.2f} |"
            )
    rows = results["sets"].values()
    for key in ("quote_hit", "quote_hit_with_markers", "cut_with_markers"):
        results[f"mean_{key}"] = statistics.mean(r[key] for r in rows)
    print(
        f"\nmean over sets: quote hit {results['mean_quote_hit']:.3f} as retrieved, "
        f"{results['mean_quote_hit_with_markers']:.3f} with markers; quotes cut at the cap with markers "
        f"{results['mean_cut_with_markers']:.2f}"
    )
    write_results("quote_markers", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
