"""Choose the fusion constants on the tune half of the dev questions; report hit@k on the report half by language pair.

Constants: RAG_DENSE_WEIGHT, RAG_KEYWORD_WEIGHT_CROSS (keyword weight for a chunk in another language than the
question; same-language keyword weight stays 1) and the dense similarity ranges of rag/retrieve.py
(DENSE_RELEVANCE_RANGE: plain cosine for chunks in the question's language, centred cosine for the
others). Candidates are retrieved once per question (Retriever.candidates) and fusion is replayed for
every grid point with the retriever's own Fusion.scores. Objective: mean hit@5 over the question sets (each set
counts once), then mean MRR. Reference rows: keyword only, dense only, and today's defaults.

Then, per question language (zh, en), the dense weight, the cross-language keyword weight and the weight of the
question's dictionary translation (RAG_TRANSLATED_WEIGHT, rag/dictionary.py) are chosen again for that language's
questions alone (the ranges and the other language's weights held at the first choice): "chosen per question
language" is reported beside "chosen", on both halves, and beside the same choice made without translation.

Usage: .venv/bin/python bench/tune_retrieval.py [--scale small|full] [--embed-model SETTING] [--chunk-size N]
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import sys

from benchlib import header, parse_scale, write_results
from devsets import add_dev_store_options, build_dev_stores, cached_queries, dev_cases

DENSE = (0.75, 1.0, 1.5, 2.0)
CROSS = (0.3, 0.5, 1.0)
SAME_LOWS = (0.76, 0.78, 0.80, 0.82, 0.84, 0.86)
SAME_WIDTHS = (0.04, 0.07, 0.10)
CROSS_LOWS = (0.05, 0.10, 0.15, 0.20, 0.25)
CROSS_WIDTHS = (0.1, 0.2, 0.3)
TOP_K = 5
DENSE_BY_LANGUAGE = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
CROSS_BY_LANGUAGE = (0.0, 0.3, 0.5, 1.0)
TRANSLATED_BY_LANGUAGE = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
QUESTION_LANGUAGES = ("zh", "en")


class ByQuestionLanguage:
    """A Fusion per question language (``default`` for the others): what the retriever does with tuned weights."""

    def __init__(self, default, per_language: dict) -> None:
        self.default, self.per_language = default, per_language

    def scores(self, question_language, dense, keyword, languages, translated=None):
        fusion = self.per_language.get(question_language, self.default)
        return fusion.scores(question_language, dense, keyword, languages, translated)


def replay(fusion, found, gold_ranks_of) -> int | None:
    scores = fusion.scores(found.language, found.dense, found.keyword, found.languages, found.translated)
    ranked = found.ranked(scores)[:TOP_K]
    return gold_ranks_of(ranked)


def metrics(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks) or 1
    return {
        "questions": len(ranks),
        "hit@1": sum(1 for r in ranks if r == 1) / n,
        "hit@3": sum(1 for r in ranks if r and r <= 3) / n,
        "hit@5": sum(1 for r in ranks if r and r <= 5) / n,
        "mrr": sum(1 / r for r in ranks if r) / n,
    }


def main() -> int:
    args = parse_scale(__doc__.splitlines()[0], extra=add_dev_store_options)
    meta = header("tune_retrieval", args)
    from rag.evaluate import contains_gold
    from rag.retrieve import Fusion

    stores = build_dev_stores(args)
    service = stores["mixed"]
    cached_queries(service.embedder)
    from rag.retrieve import DENSE_WEIGHT, KEYWORD_WEIGHT_CROSS

    # The first stage's defaults (the per-question-language values come after it).
    default = dataclasses.replace(
        service.retriever.fusion("zh"), dense_weight=DENSE_WEIGHT, keyword_weight_cross=KEYWORD_WEIGHT_CROSS
    )

    cases: dict[str, dict[str, list]] = {"tune": {}, "report": {}}
    for split in cases:
        for label, store, items in dev_cases(stores, split):
            rows = []
            for item in items:
                found = store.retriever.candidates(item["question"], TOP_K, translate=True)
                gold = {cid for cid, chunk in found.rows.items() if contains_gold(chunk.text, item["answers"])}

                def rank_of(ranked, gold=gold):
                    return next((n for n, cid in enumerate(ranked, 1) if cid in gold), None)

                rows.append((found, rank_of))
            cases[split][label] = rows

    def evaluate(fusion, split: str) -> dict[str, dict[str, float]]:
        return {name: metrics([replay(fusion, f, r) for f, r in rows]) for name, rows in cases[split].items()}

    def objective(table: dict[str, dict[str, float]]) -> tuple[float, float]:
        return statistics.mean(t["hit@5"] for t in table.values()), statistics.mean(t["mrr"] for t in table.values())

    def fusion_of(g) -> Fusion:
        dense, cross, same_low, same_width, cross_low, cross_width = g
        return Fusion(dense, 1.0, cross, (same_low, round(same_low + same_width, 3)),
                      (cross_low, round(cross_low + cross_width, 3)))  # fmt: skip

    if args.scale == "full":
        grid = list(itertools.product(DENSE, CROSS, SAME_LOWS, SAME_WIDTHS, CROSS_LOWS, CROSS_WIDTHS))
    else:
        grid = [(default.dense_weight, default.keyword_weight_cross, default.same_range[0],
                 default.same_range[1] - default.same_range[0], default.cross_range[0],
                 default.cross_range[1] - default.cross_range[0])]  # fmt: skip
    scored = {g: objective(evaluate(fusion_of(g), "tune")) for g in grid}
    best = max(grid, key=lambda g: (scored[g], -abs(g[0] - 1.0)))
    chosen = fusion_of(best)
    print(
        f"chosen on the tune half: dense_weight={chosen.dense_weight} keyword_weight_cross="
        f"{chosen.keyword_weight_cross} same_range={chosen.same_range} cross_range={chosen.cross_range}"
    )

    def choose_per_language(translations: tuple[float, ...]) -> dict:
        per_language: dict = {}
        for language in QUESTION_LANGUAGES:
            grid = itertools.product(DENSE_BY_LANGUAGE, CROSS_BY_LANGUAGE, translations)
            options = [dataclasses.replace(chosen, dense_weight=d, keyword_weight_cross=c, translated_weight=t)
                       for d, c, t in grid]  # fmt: skip

            def key(f, language=language):
                table = evaluate(ByQuestionLanguage(chosen, {**per_language, language: f}), "tune")
                moved = abs(f.dense_weight - chosen.dense_weight)
                moved += abs(f.keyword_weight_cross - chosen.keyword_weight_cross) + f.translated_weight
                return objective(table), -moved

            per_language[language] = max(options, key=key)
            f = per_language[language]
            print(f"chosen for {language} questions on the tune half (translations {translations}): "
                  f"dense_weight={f.dense_weight} keyword_weight_cross={f.keyword_weight_cross} "
                  f"translated_weight={f.translated_weight}")  # fmt: skip
        return per_language

    per_language = choose_per_language(TRANSLATED_BY_LANGUAGE)
    untranslated = choose_per_language((0.0,))

    # What rag/retrieve.py ships (the retriever's own fusion for each question language), beside what this run chose.
    shipped = ByQuestionLanguage(default, {lang: service.retriever.fusion(lang) for lang in QUESTION_LANGUAGES})
    configs = {
        "shipped": shipped,
        "chosen": chosen,
        "chosen per question language": ByQuestionLanguage(chosen, per_language),
        "the same without translation": ByQuestionLanguage(chosen, untranslated),
        "keyword only": Fusion(0.0, 1.0, chosen.keyword_weight_cross, chosen.same_range, chosen.cross_range),
        "dense only": Fusion(1.0, 0.0, 0.0, chosen.same_range, chosen.cross_range),
    }
    results = {"meta": meta, "embedder": service.embedder.name, "halves": {},
               "chosen": {"dense_weight": chosen.dense_weight, "keyword_weight_cross": chosen.keyword_weight_cross,
                          "same_range": list(chosen.same_range), "cross_range": list(chosen.cross_range),
                          "per_question_language": {lang: {"dense_weight": f.dense_weight,
                                                            "keyword_weight_cross": f.keyword_weight_cross,
                                                            "translated_weight": f.translated_weight}
                                                     for lang, f in per_language.items()}}}  # fmt: skip
    for split in ("tune", "report"):
        results["halves"][split] = {label: evaluate(fusion, split) for label, fusion in configs.items()}
    print_table(results)
    results["chunk_size"] = service.settings.chunk_size
    write_results("tune_retrieval" + (f"-c{args.chunk_size}" if args.chunk_size else ""), results)
    return 0


def print_table(results: dict) -> None:
    for split, configs in results["halves"].items():
        print(f"\n## {split} half ({results['embedder']}): hit@1 / hit@5 / MRR")
        print("| set | questions | " + " | ".join(configs) + " |")
        print("|---|---|" + "---|" * len(configs))
        for name in next(iter(configs.values())):
            cells = [" / ".join(f"{configs[c][name][k]:.2f}" for k in ("hit@1", "hit@5", "mrr")) for c in configs]
            print(f"| {name} | {configs['chosen'][name]['questions']} | " + " | ".join(cells) + " |")
        means = {c: statistics.mean(t["hit@5"] for t in configs[c].values()) for c in configs}
        print("| mean hit@5 over sets | | " + " | ".join(f"{means[c]:.3f}" for c in configs) + " |")
        mrr = {c: statistics.mean(t["mrr"] for t in configs[c].values()) for c in configs}
        print("| mean MRR over sets | | " + " | ".join(f"{mrr[c]:.3f}" for c in configs) + " |")


if __name__ == "__main__":
    sys.exit(main())
