"""``python -m ingest``: add folders and files to the store, list, remove, check or re-embed documents.

Exit codes: 0 nothing failed, 1 some files failed (the others are in) or the check found problems, 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import getpass
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
    parser.add_argument(
        "--force", action="store_true", help="re-read files even when unchanged (after a settings change)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    parser.add_argument("--list", action="store_true", help="list the ingested documents with page and chunk counts")
    parser.add_argument(
        "--remove", metavar="PATH", action="append", default=[], help="remove one document (repeatable)"
    )
    parser.add_argument("--check", action="store_true", help="compare Chroma, the ledger, the keyword index and files")
    parser.add_argument("--repair", action="store_true", help="with --check: fix what needs no file, then check again")
    parser.add_argument(
        "--reembed",
        action="store_true",
        help="re-embed the collection's stored texts with RAG_EMBED_MODEL (with the same embedder: move a collection "
        "made before language partitions into them)",
    )
    parser.add_argument("--no-wait", action="store_true", help="fail at once when another process is writing")
    parser.add_argument("--collection", help="override RAG_COLLECTION")
    parser.add_argument("--if-empty", action="store_true", help="do nothing when the collection has documents already")
    args = parser.parse_args(argv)
    if not (args.paths or args.list or args.remove or args.check or args.reembed):
        parser.error("give files or folders to ingest, or --list, --remove PATH, --check or --reembed")
    if args.repair and not args.check:
        parser.error("--repair goes with --check")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_libraries()
    from rag.config import load_settings
    from rag.service import RagService
    from rag.store import Store

    try:
        overrides = {"collection": args.collection} if args.collection else {}
        settings = load_settings(**overrides)
        if args.list or args.check:  # read-only: never create a collection a typo named
            store = Store(settings, create=False)
            service = RagService(settings, store=store)
            if args.list:
                return list_documents(service, args.json)
            return run_check(service, args)
        service = RagService(settings)
        if notice := service.notice:
            print(f"Note: {notice}", file=sys.stderr)
        if args.if_empty and (n_docs := len(service.store.documents())):
            message = f"{settings.collection!r} has {n_docs} documents; not ingesting (--if-empty)"
            print(json.dumps({"skipped": "not empty", "documents": n_docs}) if args.json else message)
            return 0
        if args.reembed:
            return run_reembed(service, args)
        exit_code = run_remove(service, args) if args.remove else 0
        if not args.paths:
            return exit_code
        return max(exit_code, run_ingest(service, args))
    except RagError as exc:
        return fail(exc)


def run_ingest(service, args) -> int:
    from ingest.progress import TerminalProgress

    interactive = not args.json and sys.stderr.isatty()
    ingestor = service.ingestor
    with TerminalProgress(enabled=interactive) as progress:
        ingestor.index_progress = progress.index_rebuild
        report = ingestor.ingest_paths(args.paths, prune=args.prune, force=args.force, on_progress=progress,
                                       wait=not args.no_wait)  # fmt: skip
    locked = [r for r in report.failed if r.needs_password]
    if locked and sys.stdin.isatty() and not args.json:
        passwords = {}
        for result in locked:
            passwords[result.path] = getpass.getpass(f"Password for {result.path} (empty to skip): ")
        passwords = {path: pw for path, pw in passwords.items() if pw}
        if passwords:
            retry = ingestor.ingest_paths([Path(p) for p in passwords], passwords=passwords, wait=not args.no_wait)
            retried = {r.path: r for r in retry.results}
            report.results = [retried.get(r.path, r) if r.path in passwords else r for r in report.results]
            report.chunks_total = retry.chunks_total
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
    return 1 if report.failed else 0


def run_remove(service, args) -> int:
    exit_code = 0
    for result in service.ingestor.remove(args.remove, wait=not args.no_wait):
        if result.status == "failed":
            print(f"Error: {result.path}: {result.reason}", file=sys.stderr)
            exit_code = 1
        elif not args.json:
            print(f"removed {result.path} ({result.chunks} chunks)")
    return exit_code


def run_check(service, args) -> int:
    from ingest.check import check_store, repair_store
    from ingest.progress import stage_bar

    interactive = not args.json and sys.stderr.isatty()
    repaired: list[str] = []
    if args.repair:
        repaired = repair_store(service.store, service.keyword_index, wait=not args.no_wait)
    with stage_bar(enabled=interactive) as bar:
        report = check_store(service.store, service.keyword_index, on_progress=bar)
    report.repaired = repaired
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False))
    else:
        for line in repaired:
            print(f"repaired: {line}")
        for problem in report.problems:
            print(f"problem: {problem}")
        state = "clean" if report.clean else f"{len(report.problems)} problem(s)"
        print(f"{service.settings.collection!r}: {report.documents} documents, {report.chunks} chunks; {state}")
        if report.chunks and not service.store.by_language:
            print(
                "note: this collection predates language partitions; `python -m ingest --reembed` moves it into "
                "them (vectors kept) for faster search in a collection of several languages"
            )
    return 0 if report.clean else 1


def run_reembed(service, args) -> int:
    from ingest.progress import count_bar
    from ingest.reembed import reembed
    from rag.config import AUTO

    target = None if service.settings.embed_model == AUTO else service.settings.embed_model
    with count_bar("chunks re-embedded", enabled=not args.json and sys.stderr.isatty()) as bar:
        report = reembed(service.settings, service.store, target, on_progress=bar, wait=not args.no_wait)
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False))
    elif report.chunks == 0 and report.embedder_before == report.embedder_after:
        print(f"{service.settings.collection!r} already uses {report.embedder_after}; nothing to do")
    elif report.embedder_before == report.embedder_after:
        print(
            f"moved {report.chunks} chunks of {service.settings.collection!r} into language partitions "
            f"(vectors kept, {report.seconds:.1f} s{f', {report.resumed} resumed' if report.resumed else ''})"
        )
    else:
        print(
            f"re-embedded {report.chunks} chunks of {service.settings.collection!r}: {report.embedder_before} -> "
            f"{report.embedder_after} ({report.seconds:.1f} s{f', {report.resumed} resumed' if report.resumed else ''})"
        )
    return 0


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
