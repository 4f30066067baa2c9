"""End to end: what reaches the user, by question language and language pair, for both answer modes.

Runs the real answer path (rag/answer.py: retrieval, grounding, quotes, and with `generate` the packaged SmolLM2 via
llama.cpp) on the dev questions and off-topic questions, and reports per set: retrieval hit@5, context recall (a gold
string in the sources handed to the quote picker and the model), quote hit, answer hit (gold string in the generated
text), shown hit (in the quotes or the answer), refusals of answerable questions and of off-topic ones, and seconds per
question. Chosen on the tune half: the default RAG_ANSWER_MODE (the mode whose answers show the gold string more
often, on the same questions; on a tie the cheaper one, quotes: no model call) and RAG_FILTER_SOURCES (whether
handing on only the sources over RAG_MIN_RELEVANCE raises the quote hit; on a tie, no filter).

Usage: .venv/bin/python bench/answer_eval.py [--scale small|full] [--split tune|report|both] [--per-set N]
"""

from __future__ import annotations

import statistics
import sys
import time

from benchlib import header, parse_scale, write_results
from devsets import add_dev_store_options, build_dev_stores, dev_cases, offtopic


def main() -> int:
    def options(parser) -> None:
        add_dev_store_options(parser)
        parser.add_argument("--split", choices=("tune", "report", "both"), default="both")
        parser.add_argument("--per-set", type=int, default=None, help="questions per set for `generate` (slow)")
        parser.add_argument("--max-tokens", type=int, default=128, help="answer length for `generate`")
        parser.add_argument("--no-generate", action="store_true", help="quote modes only (no model call)")

    args = parse_scale(__doc__.splitlines()[0], extra=options)
    meta = header("answer_eval", args)
    from rag.answer import Answerer
    from rag.evaluate import evaluate_answers

    per_set = args.per_set or (6 if args.scale == "full" else 3)  # `generate` takes 5-20 s a question here
    stores = build_dev_stores(args, max_tokens=args.max_tokens)
    splits = ("tune", "report") if args.split == "both" else (args.split,)
    results: dict = {"meta": meta, "max_tokens": args.max_tokens, "per_set": per_set, "halves": {}}
    for split in splits:
        results["halves"][split] = {}
        # `generate` runs on the first per_set questions of each set (a model call each): it is compared with quotes
        # on those same questions.
        modes = ("quotes", "quotes, filtered sources", "quotes, generate's questions", "generate")
        for mode in modes[:2] if args.no_generate else modes:
            rows = {}
            started = time.perf_counter()
            for label, store, items in dev_cases(stores, split):
                if mode in ("generate", "quotes, generate's questions") and per_set:
                    items = items[:per_set]
                answerer = store.answerer
                if mode == "quotes, filtered sources":  # RAG_FILTER_SOURCES=true: only sources over the threshold
                    answerer = Answerer(store.settings.model_copy(update={"filter_sources": True}), store.retriever,
                                        lambda store=store: store.chat_model)  # fmt: skip
                report = evaluate_answers(answerer, items, top_k=5, mode=mode.split(",")[0])
                rows[label] = report["by_language"]["all"]
            for name, store in stores.items():
                questions = offtopic(split)
                report = evaluate_answers(store.answerer, [], questions, mode="quotes")
                rows[f"off-topic @{name}"] = report["by_language"].get("all", {})
                for kind in ("near", "far"):  # the later set's questions by kind: near-topic ones are the hard ones
                    pairs = zip(questions, report["offtopic_rows"], strict=True)
                    asked = [r for q, r in pairs if q.get("kind") == kind]
                    rows[f"off-topic, {kind} @{name}"] = (
                        {
                            "offtopic": len(asked),
                            "offtopic_refused": sum(r["abstained"] for r in asked) / len(asked),
                        }
                        if asked
                        else {}
                    )
            results["halves"][split][mode] = rows
            print(f"({split}, {mode}: {time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
        print_table(split, results["halves"][split])
    tune = results["halves"].get("tune")
    if tune and not args.no_generate:

        def mean_of(key: str, mode: str) -> float:
            return statistics.mean(r[key] for name, r in tune[mode].items() if not name.startswith("off-topic"))

        shown = {"quotes": mean_of("shown_hit", "quotes, generate's questions"),
                 "generate": mean_of("shown_hit", "generate")}  # fmt: skip
        chosen = "generate" if shown["generate"] > shown["quotes"] else "quotes"
        filtered = mean_of("quote_hit", "quotes, filtered sources") > mean_of("quote_hit", "quotes")
        results.update(chosen_mode=chosen, filter_sources=filtered)
        print(f"\nshown hit on the tune half: quotes {shown['quotes']:.3f}, generate {shown['generate']:.3f} "
              f"-> default RAG_ANSWER_MODE={chosen}")  # fmt: skip
        print(f"quote hit (context recall) on the tune half: top-k {mean_of('quote_hit', 'quotes'):.3f} "
              f"({mean_of('context_recall', 'quotes'):.3f}), only sources over the threshold "
              f"{mean_of('quote_hit', 'quotes, filtered sources'):.3f} "
              f"({mean_of('context_recall', 'quotes, filtered sources'):.3f}) "
              f"-> default RAG_FILTER_SOURCES={str(filtered).lower()}")  # fmt: skip
    write_results("answer_eval", results)
    return 0


def print_table(split: str, modes: dict) -> None:
    columns = ("questions", "hit@5", "context_recall", "quote_hit", "answer_hit", "shown_hit", "refused_answerable",
               "seconds_p50")  # fmt: skip
    for mode, rows in modes.items():
        print(f"\n## {split} half, RAG_ANSWER_MODE={mode}")
        print("| set | " + " | ".join(columns) + " |")
        print("|---|" + "---|" * len(columns))
        for name, row in rows.items():
            if name.startswith("off-topic"):
                if row:
                    print(f"| {name} | {row['offtopic']} | refused {row['offtopic_refused']:.2f} |" + " |" * 6)
                continue
            cells = [f"{row.get(c, float('nan')):.2f}" if c != "questions" else str(row.get(c, 0)) for c in columns]
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
