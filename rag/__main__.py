"""``python -m rag``: search, ask and eval against the store named by the RAG_* settings.

The JSON shapes are a contract that scripts rely on; see README "Command line".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rag.cli_common import fail, quiet_libraries
from rag.errors import ConfigError, RagError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rag", description="Search and ask your ingested documents.")
    sub = parser.add_subparsers(dest="command", required=True)

    search = sub.add_parser("search", help="hybrid search; prints the best chunks")
    search.add_argument("question", nargs="?", help="the question (or use --questions FILE)")
    search.add_argument("--questions", type=Path, help="file with one question per line; prints JSON Lines")
    search.add_argument("--top-k", type=int, default=None, help="how many chunks (default RAG_TOP_K)")
    search.add_argument("--json", action="store_true", help="print JSON")

    ask = sub.add_parser("ask", help="answer a question from the documents, with sources")
    ask.add_argument("question")
    ask.add_argument("--top-k", type=int, default=None)
    ask.add_argument("--json", action="store_true", help='print {"answer", "abstained", "sources"}')

    evaluate = sub.add_parser("eval", help="retrieval hit@1/3/5 and MRR for a file of questions with gold answers")
    evaluate.add_argument("qa_file", type=Path, help='JSON: [{"question": ..., "answers": [...]}, ...]')
    evaluate.add_argument("--top-k", type=int, default=5)
    evaluate.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    from rag.config import load_settings
    from rag.service import RagService

    try:
        if getattr(args, "top_k", None) is not None and args.top_k < 1:
            raise ConfigError(f"--top-k {args.top_k} is invalid: give a whole number of at least 1")
        service = RagService(load_settings())
        if not service.store.documents():  # before any model loads: an empty store fails in a second
            from rag.retrieve import empty_index

            raise empty_index(service.settings.collection)
        if args.command == "search":
            return run_search(service, args)
        if args.command == "ask":
            return run_ask(service, args)
        return run_eval(service, args)
    except RagError as exc:
        return fail(exc)


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
                where = f"{hit.file_name} p.{hit.page}" if hit.page else hit.file_name
                snippet = " ".join(hit.text.split())[:160]
                print(f"{rank}. [{hit.score:.2f}] {where}: {snippet}")
    return 0


def run_ask(service, args) -> int:
    answer = service.answerer.stream(args.question, top_k=args.top_k)
    if args.json:
        for _ in answer:
            pass
        print(json.dumps(answer.as_json(), ensure_ascii=False))
        return 0
    for piece in answer:
        sys.stdout.write(piece)
        sys.stdout.flush()
    print()
    if answer.sources:
        print("\nSources:")
        for number, hit in enumerate(answer.sources, 1):
            where = f"{hit.file_name}, page {hit.page}" if hit.page else hit.file_name
            print(f"[{number}] {where}: {' '.join(hit.text.split())[:120]}")
    return 0


def run_eval(service, args) -> int:
    from rag.evaluate import evaluate_retrieval, load_qa

    report = evaluate_retrieval(service.retriever, load_qa(args.qa_file), max(args.top_k, 5))
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


if __name__ == "__main__":
    sys.exit(main())
