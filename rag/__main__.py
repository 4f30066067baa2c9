"""``python -m rag``: search, ask, eval and models, against the store named by the RAG_* settings.

The JSON shapes are a contract that scripts rely on; see README "Command line".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rag.cli_common import fail, quiet_libraries
from rag.errors import ConfigError, MissingCollection, RagError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rag", description="Search and ask your ingested documents.")
    sub = parser.add_subparsers(dest="command", required=True)

    search = sub.add_parser("search", help="hybrid search; prints the best chunks")
    search.add_argument("question", nargs="?", help="the question (or use --questions FILE)")
    search.add_argument("--questions", type=Path, help="file with one question per line; prints JSON Lines")
    search.add_argument("--top-k", type=int, default=None, help="how many chunks (default RAG_TOP_K)")
    search.add_argument("--json", action="store_true", help="print JSON")

    ask = sub.add_parser("ask", help="answer a question from the documents: quotes first, then the model's answer")
    ask.add_argument("question")
    ask.add_argument("--top-k", type=int, default=None)
    ask.add_argument(
        "--mode", choices=["generate", "quotes"], default=None, help="override RAG_ANSWER_MODE for this question"
    )
    ask.add_argument(
        "--json", action="store_true", help='print {"answer", "generated", "abstained", "quotes", "sources"}'
    )

    evaluate = sub.add_parser("eval", help="retrieval hit@k and MRR (and with --answers, what reaches the user)")
    evaluate.add_argument("qa_file", type=Path, help='JSON: [{"question": ..., "answers": [...]}, ...]')
    evaluate.add_argument("--top-k", type=int, default=5)
    evaluate.add_argument("--answers", action="store_true", help="run the answer path: context, quote, answer hits")
    evaluate.add_argument("--offtopic", type=Path, help="with --answers: questions the documents do not answer")
    evaluate.add_argument("--mode", choices=["generate", "quotes"], default=None, help="with --answers")
    evaluate.add_argument("--split", choices=["tune", "report", "all"], default="all", help="items of this split only")
    evaluate.add_argument("--json", action="store_true")

    models = sub.add_parser("models", help="GGUF models on this machine (Ollama, LM Studio, HF cache, ~/models)")
    models.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    from rag.config import load_settings

    try:
        if getattr(args, "top_k", None) is not None and args.top_k < 1:
            raise ConfigError(f"--top-k {args.top_k} is invalid: give a whole number of at least 1")
        settings = load_settings()
        if args.command == "models":
            return run_models(settings, args)
        from rag.retrieve import empty_index
        from rag.service import RagService
        from rag.store import Store

        try:
            store = Store(settings, create=False)
        except MissingCollection:
            raise empty_index(settings.collection) from None
        service = RagService(settings, store=store)
        if not service.store.documents():  # before any model loads: an empty store fails in a second
            raise empty_index(settings.collection)
        if notice := service.notice:
            print(f"Note: {notice}", file=sys.stderr)
        if args.command == "search":
            return run_search(service, args)
        if args.command == "ask":
            return run_ask(service, args)
        return run_eval(service, args)
    except RagError as exc:
        return fail(exc)


def where(file_name: str, page: int | None) -> str:
    return f"{file_name}, page {page}" if page else file_name


def run_search(service, args) -> int:
    if bool(args.question) == bool(args.questions):
        raise ConfigError("give either a QUESTION or --questions FILE")
    if args.questions:
        try:
            questions = [q.strip() for q in args.questions.read_text(encoding="utf-8").splitlines() if q.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{args.questions}: cannot read the questions file ({exc})") from None
    else:
        questions = [args.question]
    for question in questions:
        hits = service.retriever.search(question, args.top_k)
        if args.json or args.questions:
            print(
                json.dumps({"query": question, "results": [h.as_json() for h in hits]}, ensure_ascii=False), flush=True
            )
        else:
            for rank, hit in enumerate(hits, 1):
                snippet = " ".join(hit.text.split())[:160]
                print(f"{rank}. [{hit.score:.2f}] {where(hit.file_name, hit.page)}: {snippet}")
    return 0


def run_ask(service, args) -> int:
    from rag.answer import is_chinese

    answer = service.answerer.stream(args.question, top_k=args.top_k, mode=args.mode)
    if args.json:
        for _ in answer:
            pass
        print(json.dumps(answer.as_json(), ensure_ascii=False))
        return 0
    if answer.abstained:
        print("".join(answer))
        if answer.closest is not None:
            print(answer.closest.describe(is_chinese(args.question)))
    else:
        if answer.quotes:
            print("From the documents:")
            for quote in answer.quotes:
                print(f"  “{quote.text}” ({where(quote.file_name, quote.page)})")
        if answer.generated:
            print(f"\nGenerated answer ({service.chat_model.name}):")
            for piece in answer:
                sys.stdout.write(piece)
                sys.stdout.flush()
            print()
    if answer.sources:
        print("\nSources:")
        for number, hit in enumerate(answer.sources, 1):
            print(f"[{number}] {where(hit.file_name, hit.page)}: {' '.join(hit.text.split())[:120]}")
    return 0


def run_eval(service, args) -> int:
    from rag.evaluate import evaluate_answers, evaluate_retrieval, load_qa, load_questions

    items = load_qa(args.qa_file, args.split)
    if not args.answers:
        report = evaluate_retrieval(service.retriever, items, max(args.top_k, 5))
        if args.json:
            print(json.dumps(report, ensure_ascii=False))
        else:
            print(
                f"questions {report['questions']}  hit@1 {report['hit@1']:.3f}  hit@3 {report['hit@3']:.3f}  "
                f"hit@5 {report['hit@5']:.3f}  MRR {report['mrr']:.3f}"
            )
            for miss in report["misses"]:
                print(f"  miss: {miss}")
        return 0
    offtopic = load_questions(args.offtopic, args.split) if args.offtopic else []
    report = evaluate_answers(service.answerer, items, offtopic, top_k=args.top_k, mode=args.mode)
    if args.json:
        print(json.dumps(report["by_language"], ensure_ascii=False))
        return 0
    columns = ["questions", "hit@5", "context_recall", "quote_hit", "answer_hit", "shown_hit", "refused_answerable"]
    print("lang  " + "  ".join(f"{c:>18}" for c in columns) + "  offtopic_refused")
    for lang, row in report["by_language"].items():
        cells = [f"{row.get(c, float('nan')):>18.3f}" if c != "questions" else f"{row.get(c, 0):>18}" for c in columns]
        off = f"{row['offtopic_refused']:.3f} of {row['offtopic']}" if "offtopic" in row else "-"
        print(f"{lang:<5} " + "  ".join(cells) + f"  {off}")
    return 0


def run_models(settings, args) -> int:
    from rag.model_catalog import find_gguf_models, format_models_table, models_as_json

    models, problems = find_gguf_models(settings.model_dirs)
    if args.json:
        print(json.dumps({"models": models_as_json(models), "problems": problems}, ensure_ascii=False))
    else:
        print(format_models_table(models))
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
