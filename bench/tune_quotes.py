"""Choose the quote scorer's weights (rag/quotes.py) on the tune half; report quote hit on the report half.

A quote hit is a gold answer string inside the quoted sentences (at most 3 sentences, 500 characters). Sources are
what the answer path hands to the quote picker (grounding passed, top-k in rank order). Sentence vectors are
cached, so the grid replays the scorer without the model.

Usage: .venv/bin/python bench/tune_quotes.py [--scale small|full] [--embed-model SETTING]
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
from pathlib import Path

import numpy as np
from benchlib import header, parse_scale, write_results
from devsets import build_dev_store, cached_queries, dev_sets, dev_store_settings

GRID = {
    "SIMILARITY_WEIGHT": (0.0, 0.5, 1.0, 2.0),
    "OVERLAP_WEIGHT": (0.5, 1.0, 2.0),
    "RANK_WEIGHT": (0.0, 0.1, 0.2, 0.4),
    "NUMBER_WEIGHT": (0.0, 0.3, 0.6),
    "SECOND_SENTENCE_SHARE": (0.0, 0.5, 0.8, 0.9, 1.01),
}


class CachingEmbedder:
    """The real embedder with a cache per sentence: the grid asks for the same sentences again and again."""

    def __init__(self, embedder) -> None:
        self.inner = embedder
        self.name, self.dim = embedder.name, embedder.dim
        self.max_tokens, self.multilingual = embedder.max_tokens, embedder.multilingual
        self.cache: dict[str, np.ndarray] = {}

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            self.cache.update(zip(missing, self.inner.embed_passages(missing), strict=True))
        return np.vstack([self.cache[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)

    def tokenize(self, text: str) -> list[str]:
        return self.inner.tokenize(text)


def quote_hits(answerer, cases, embedder) -> dict[str, float]:
    from rag import quotes
    from rag.evaluate import contains_gold
    from rag.tokenize import keyword_tokens

    out = {}
    for name, items in cases.items():
        hits = []
        for question, gold, sources in items:
            idf = answerer.retriever.keyword_index.idf(keyword_tokens(question))
            picked = quotes.choose_quotes(question, sources, embedder, answerer._similarity_range(), idf)
            hits.append(any(contains_gold(q.text, gold) for q in picked))
        out[name] = statistics.mean(hits) if hits else float("nan")
    return out


def main() -> int:
    def options(parser) -> None:
        parser.add_argument("--embed-model", default="auto")
        parser.add_argument("--chunk-size", type=int, default=None, help="RAG_CHUNK_SIZE of the dev store")
        parser.add_argument("--fusion", type=Path, help="a tune_retrieval results file whose chosen fusion to use")

    args = parse_scale(__doc__.splitlines()[0], extra=options)
    meta = header("tune_quotes", args)
    from rag import quotes

    overrides = {}
    if args.fusion:
        chosen = json.loads(args.fusion.read_text())["chosen"]
        overrides = {"dense_weight": chosen["dense_weight"], "keyword_weight_cross": chosen["keyword_weight_cross"]}
        import rag.retrieve

        rag.retrieve.DENSE_RELEVANCE_RANGE["multilingual-e5-small"] = {
            "same": tuple(chosen["same_range"]), "cross": tuple(chosen["cross_range"])
        }
    settings = dev_store_settings(args, **overrides)
    service = build_dev_store(settings)
    cached_queries(service.embedder)
    embedder = CachingEmbedder(service.embedder)
    answerer = service.answerer

    cases: dict[str, dict[str, list]] = {"tune": {}, "report": {}}
    context: dict[str, dict[str, float]] = {"tune": {}, "report": {}}
    for split in cases:
        for dev in dev_sets():
            rows = []
            for item in dev.items(split):
                answer = answerer.stream(item["question"], mode="quotes")
                rows.append((item["question"], item["answers"], answer.sources))
            cases[split][dev.name] = rows
            from rag.evaluate import contains_gold

            context[split][dev.name] = statistics.mean(
                any(contains_gold(h.text, gold) for h in sources) for _, gold, sources in rows
            ) if rows else float("nan")  # fmt: skip

    defaults = {name: getattr(quotes, name) for name in GRID}
    combos = list(itertools.product(*GRID.values())) if args.scale == "full" else [tuple(defaults.values())]
    scores = {}
    for combo in combos:
        for name, value in zip(GRID, combo, strict=True):
            setattr(quotes, name, value)
        scores[combo] = statistics.mean(quote_hits(answerer, cases["tune"], embedder).values())
    best = max(combos, key=lambda c: (scores[c], c == tuple(defaults.values())))
    for name, value in zip(GRID, best, strict=True):
        setattr(quotes, name, value)
    chosen = dict(zip(GRID, best, strict=True))
    print("chosen on the tune half: " + ", ".join(f"{k}={v}" for k, v in chosen.items()))

    results = {"meta": meta, "chosen": chosen, "halves": {}}
    for split in ("tune", "report"):
        hits = quote_hits(answerer, cases[split], embedder)
        results["halves"][split] = {"quote_hit": hits, "context_recall": context[split]}
        print(f"\n## {split} half")
        print("| set | context recall | quote hit |")
        print("|---|---|---|")
        for name in hits:
            print(f"| {name} | {context[split][name]:.2f} | {hits[name]:.2f} |")
    results["chunk_size"] = settings.chunk_size
    write_results("tune_quotes" + (f"-c{args.chunk_size}" if args.chunk_size else ""), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
