"""Choose the quote scorer's weights (rag/quotes.py) on the tune half; report quote hit on the report half.

A quote hit is a gold answer string inside the quoted sentences (at most 3 sentences, 500 characters). Sources are
what the answer path hands to the quote picker (grounding passed, top-k in rank order). Sentence vectors are
cached, so the grid replays the scorer without the model.

At full scale the constants are chosen once for all questions, then again for each question language from there
(rag/quotes.py, BY_QUESTION_LANGUAGE); the report half shows both beside the shipped and the previous values.

Usage: .venv/bin/python bench/tune_quotes.py [--scale small|full] [--embed-model SETTING] [--start shipped|previous]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from benchlib import header, parse_scale, write_results
from devsets import add_dev_store_options, build_dev_stores, cached_queries, dev_cases

if TYPE_CHECKING:
    from rag.dictionary import Translation

GRID = {
    "SIMILARITY_WEIGHT": (0.0, 0.5, 1.0, 2.0),
    "OVERLAP_WEIGHT": (0.5, 1.0, 2.0),
    "RANK_WEIGHT": (0.0, 0.1, 0.2, 0.4),
    "NUMBER_WEIGHT": (0.0, 0.3),  # 0.6 never won
    # 0.0 and 0.5 are left out: they win quote hits by filling every quote with three sentences, related or not
    # (rag/quotes.py, SECOND_SENTENCE_SHARE); from 0.6 up the others must score close to the best.
    "SECOND_SENTENCE_SHARE": (0.6, 0.7, 0.8, 0.9, 1.01),
    "SIMILARITY_SCALE": ("clip", "stretch"),
    "SKIP_QUESTIONS": (False, True),
    "FOLLOWS_WEIGHT": (0.0, 0.25, 0.5),
    "CANDIDATES": (40, 80),
    "FOLLOW_ANNOUNCEMENTS": (False, True),
    "TRANSLATED_OVERLAP": (False, True),
    "TRANSLATED_MEASURE": ("share", "coverage"),
    "SAME_LANGUAGE_COMPANIONS": (False, True),
    "SKIP_ECHOES": (False, True),
    "SKIP_LINKS": (False, True),
    "SKIP_PROMPTS": (False, True),
}
MAX_PASSES = 4
# A change must gain at least this much mean quote hit on the tune half: about one question of a 7-question set
# (sets are averaged), so that a move is never made on a single question of a large set.
MIN_GAIN = 0.01
# The values of the release before the last tuning, reported beside the chosen ones.
PREVIOUS = {"SIMILARITY_WEIGHT": 2.0, "FOLLOWS_WEIGHT": 0.5, "SKIP_ECHOES": False}


LANGUAGES = ("zh", "en")  # question languages with their own constants


def of_language(cases: dict[str, list], language: str | None) -> dict[str, list]:
    """The questions of each set asked in ``language`` (all of them for None); sets left empty are dropped."""
    if language is None:
        return cases
    from rag.language import detect_language

    out = {label: [row for row in rows if detect_language(row[0]) == language] for label, rows in cases.items()}
    return {label: rows for label, rows in out.items() if rows}


class CachingRater:
    """The retriever's sentence similarity with a cache per (question, sentence): the grid asks again and again."""

    def __init__(self, retriever) -> None:
        self.retriever = retriever
        self.cache: dict[tuple[str, str], float] = {}

    def __call__(self, question: str, sentences: list[str], clip: bool = True) -> np.ndarray:
        missing = [t for t in dict.fromkeys(sentences) if (question, t) not in self.cache]
        if missing:
            values = self.retriever.sentence_similarity(question, missing, clip=False)
            self.cache.update({(question, t): float(v) for t, v in zip(missing, values, strict=True)})
        values = np.array([self.cache[(question, t)] for t in sentences])
        return np.clip(values, 0.0, 1.0) if clip else values


_IDF: dict[tuple[int, str], tuple[dict[str, float], Translation]] = {}


def _idf(answerer, question: str) -> tuple[dict[str, float], Translation]:
    """(idf of the question's tokens, its dictionary translation against the collection), cached."""
    from rag.language import detect_language
    from rag.tokenize import keyword_tokens

    key = (id(answerer), question)
    if key not in _IDF:
        retriever = answerer.retriever
        idf = retriever.keyword_index.idf(keyword_tokens(question))
        _IDF[key] = idf, retriever.translation(question, detect_language(question))
    return _IDF[key]


def quote_hits(cases, raters, sizes: list | None = None) -> dict[str, float]:
    """Quote hit per set; ``sizes`` collects (sentences, characters) of every quote: more sentences hold a gold
    string more often, and a quote that holds everything answers nothing."""
    from rag import quotes
    from rag.evaluate import contains_gold

    out = {}
    for name, items in cases.items():
        hits = []
        for question, gold, sources, store in items:
            idf, translation = _idf(store.answerer, question)
            picked = quotes.choose_quotes(question, sources, raters[id(store)], idf, translation)
            hits.append(any(contains_gold(q.text, gold) for q in picked))
            if sizes is not None:
                sizes.append((len(picked), sum(len(q.text) for q in picked)))
        out[name] = statistics.mean(hits) if hits else float("nan")
    return out


def coordinate_ascent(score, start: dict) -> dict:
    """One constant at a time, each set to its best value on the tune half with the others held, until a pass changes
    nothing. A change must gain MIN_GAIN; the full product of the grid (thousands of combinations on ~200 questions)
    would mostly fit noise."""
    current, best = dict(start), score(start)
    for _ in range(MAX_PASSES):
        changed = False
        for name, values in GRID.items():
            for value in values:
                trial = {**current, name: value}
                if value != current[name] and (result := score(trial)) >= best + MIN_GAIN:
                    current, best, changed = trial, result, True
        print(f"pass: tune quote hit {best:.3f} with " + ", ".join(f"{k}={v}" for k, v in current.items()))
        if not changed:
            break
    return current


def main() -> int:
    def options(parser) -> None:
        add_dev_store_options(parser)
        parser.add_argument("--fusion", type=Path, help="a tune_retrieval results file whose chosen fusion to use")
        parser.add_argument(
            "--start", choices=("shipped", "previous"), default="shipped",
            help="where the search starts: rag/quotes.py's values, or the previous release's (PREVIOUS)",
        )  # fmt: skip

    args = parse_scale(__doc__.splitlines()[0], extra=options)
    meta = header("tune_quotes", args)
    from rag import quotes

    overrides = {}
    if args.fusion:
        chosen = json.loads(args.fusion.read_text())["chosen"]
        overrides = {"dense_weight": chosen["dense_weight"], "keyword_weight_cross": chosen["keyword_weight_cross"]}
        import rag.retrieve

        rag.retrieve.DENSE_RELEVANCE_RANGE["multilingual-e5-small"] = {
            "same": tuple(chosen["same_range"]),
            "cross": tuple(chosen["cross_range"]),
        }
    import functools

    quotes.keyword_tokens = functools.lru_cache(maxsize=None)(quotes.keyword_tokens)  # the grid re-reads sentences
    stores = build_dev_stores(args, **overrides)
    service = stores["mixed"]
    cached_queries(service.embedder)
    raters = {id(store): CachingRater(store.retriever) for store in stores.values()}
    from rag.evaluate import contains_gold

    cases: dict[str, dict[str, list]] = {"tune": {}, "report": {}}
    context: dict[str, dict[str, float]] = {"tune": {}, "report": {}}
    for split in cases:
        for label, store, items in dev_cases(stores, split):
            rows = []
            for item in items:
                answer = store.answerer.stream(item["question"], mode="quotes")
                rows.append((item["question"], item["answers"], answer.sources, store))
            cases[split][label] = rows
            context[split][label] = statistics.mean(
                any(contains_gold(h.text, gold) for h in sources) for _, gold, sources, _ in rows
            )

    defaults = {name: getattr(quotes, name) for name in GRID}
    shipped_by_language = {lang: dict(values) for lang, values in quotes.BY_QUESTION_LANGUAGE.items()}

    def apply(values: dict, by_language: dict) -> None:
        for name, value in values.items():
            setattr(quotes, name, value)
        quotes.BY_QUESTION_LANGUAGE = by_language

    def tune_score(values: dict, language: str | None = None) -> float:
        apply(values, {})
        return statistics.mean(quote_hits(of_language(cases["tune"], language), raters).values())

    previous = {**defaults, **PREVIOUS}
    start = previous if args.start == "previous" else dict(defaults)
    chosen = coordinate_ascent(tune_score, start) if args.scale == "full" else dict(defaults)
    print("chosen on the tune half: " + ", ".join(f"{k}={v}" for k, v in chosen.items()))
    # Then again for each question language from the shared choice, on that language's tune questions only: the
    # shared values trade English same-language quote hits for Chinese ones (rag/quotes.py, BY_QUESTION_LANGUAGE).
    by_language: dict[str, dict] = {}
    if args.scale == "full":
        for language in LANGUAGES:
            print(f"\n# {language} questions")
            own = coordinate_ascent(lambda values, lang=language: tune_score(values, lang), chosen)
            by_language[language] = {k: v for k, v in own.items() if v != chosen[k]}
    else:
        by_language = shipped_by_language
    print("chosen per question language: " + json.dumps(by_language))

    from ingest import chunking

    joined = chunking.JOIN_CONTINUATIONS
    other_measure = "share" if chosen["TRANSLATED_MEASURE"] == "coverage" else "coverage"
    # Side by side in this run: the chosen values (per question language, and one set for all), the ones
    # rag/quotes.py ships, the previous release's, the chosen ones with the other line joining
    # (ingest/chunking.py, JOIN_CONTINUATIONS) and with the other reading of the translated overlap.
    variants = {
        "chosen per language": (chosen, by_language, joined),
        "chosen, one set": (chosen, {}, joined),
        "shipped": (defaults, shipped_by_language, joined),
        "previous": (previous, {}, joined),
        f"chosen, JOIN_CONTINUATIONS={not joined}": (chosen, by_language, not joined),
        f"chosen, TRANSLATED_MEASURE={other_measure}": (
            {**chosen, "TRANSLATED_MEASURE": other_measure},
            by_language,
            joined,
        ),
    }
    results = {
        "meta": meta,
        "chosen": chosen,
        "chosen_by_language": by_language,
        "shipped": defaults,
        "shipped_by_language": shipped_by_language,
        "previous": PREVIOUS,
        "halves": {},
    }
    for split in ("tune", "report"):
        hits, sizes, by_question_language = {}, {}, {}
        for label, (values, own, join) in variants.items():
            apply(values, own)
            chunking.JOIN_CONTINUATIONS = join
            quoted: list[tuple[int, int]] = []
            hits[label] = quote_hits(cases[split], raters, quoted)
            sizes[label] = (statistics.mean(n for n, _ in quoted), statistics.mean(c for _, c in quoted))
            by_question_language[label] = {
                language: statistics.mean(quote_hits(of_language(cases[split], language), raters).values())
                for language in LANGUAGES
            }
        apply(chosen, by_language)
        chunking.JOIN_CONTINUATIONS = joined
        results["halves"][split] = {
            "quote_hit": hits,
            "quote_hit_by_question_language": by_question_language,
            "quote_size": sizes,
            "context_recall": context[split],
        }
        print(f"\n## {split} half: quote hit")
        print("| set | context recall | " + " | ".join(variants) + " |")
        print("|---|---|" + "---|" * len(variants))
        for name in context[split]:
            row = [context[split][name]] + [hits[label][name] for label in variants]
            print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
        print("| mean | | " + " | ".join(f"{statistics.mean(hits[label].values()):.3f}" for label in variants) + " |")
        for language in LANGUAGES:
            means = " | ".join(f"{by_question_language[label][language]:.3f}" for label in variants)
            print(f"| mean, {language} questions | | {means} |")
        size_cells = " | ".join(f"{n:.2f} / {c:.0f}" for n, c in sizes.values())
        print(f"| sentences / characters per quote | | {size_cells} |")
    results["chunk_size"] = service.settings.chunk_size
    write_results("tune_quotes" + (f"-c{args.chunk_size}" if args.chunk_size else ""), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
