"""``python -m ingest``: add folders and files to the store, list or remove documents.

Exit codes: 0 nothing failed, 1 some files failed (the others are in), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rag.cli_common import fail, quiet_libraries
from rag.errors import RagError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description="Ingest documents (PDF, Markdown, text, HTML, DOCX) into the Chroma store named by RAG_* settings. "
        "Unchanged files are skipped, changed files replaced; re-run after an interruption to finish cleanly.",
    )
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders (searched recursively)")
    parser.add_argument(
        "--prune", action="store_true", help="also remove documents whose files are gone from the folders"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    parser.add_argument("--list", action="store_true", help="list the ingested documents with page and chunk counts")
    parser.add_argument(
        "--remove", metavar="PATH", action="append", default=[], help="remove one document (repeatable)"
    )
    parser.add_argument("--collection", help="override RAG_COLLECTION")
    parser.add_argument("--if-empty", action="store_true", help="do nothing when the collection has documents already")
    args = parser.parse_args(argv)
    if not (args.paths or args.list or args.remove):
        parser.error("give files or folders to ingest, or --list, or --remove PATH")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_libraries()
    from rag.config import load_settings
    from rag.service import RagService

    try:
        overrides = {"collection": args.collection} if args.collection else {}
        service = RagService(load_settings(**overrides))
        if args.list:  # needs neither the embedder check nor llama-index: fast, and works after a model change
            return list_documents(service, args.json)
        if args.if_empty and (n_docs := len(service.store.documents())):
            print(f"{service.settings.collection!r} has {n_docs} documents; not ingesting (--if-empty)")
            return 0
        ingestor = service.ingestor
        exit_code = 0
        for target in args.remove:
            result = ingestor.remove(target)
            if result.status == "failed":
                print(f"Error: {result.path}: {result.reason}", file=sys.stderr)
                exit_code = 1
            elif not args.json:
                print(f"removed {result.path} ({result.chunks} chunks)")
        if not args.paths:
            return exit_code
        from ingest.progress import TerminalProgress

        with TerminalProgress(enabled=not args.json and sys.stderr.isatty()) as progress:
            report = ingestor.ingest_paths(args.paths, prune=args.prune, on_progress=progress)
    except RagError as exc:
        return fail(exc)
    for result in report.failed:
        print(f"failed: {result.path}: {result.reason}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False))
    else:
        for result in report.results:
            if result.status == "skipped" and result.reason.startswith("unsupported"):
                print(f"skipped: {result.path}: {result.reason}", file=sys.stderr)
        summary = report.as_json()
        print(
            f"ingested {summary['ingested']}, skipped {summary['skipped']}, failed {len(summary['failed'])}; "
            f"{summary['chunks']} chunks in {service.settings.collection!r} ({summary['seconds']:.1f} s)"
        )
    return 1 if report.failed else max(exit_code, 0)


def list_documents(service, as_json: bool) -> int:
    records = sorted(service.store.documents().values(), key=lambda r: r.source)
    if as_json:
        print(json.dumps([r.__dict__ for r in records], ensure_ascii=False))
        return 0
    if not records:
        print(f"no documents in {service.settings.collection!r}")
    for r in records:
        pages = f"{r.n_pages} pages, " if r.n_pages else ""
        print(f"{r.source}\t{pages}{r.n_chunks} chunks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
