"""``python -m ingest --check``: compare Chroma, the ledger, the keyword index and the files on disk.

Every problem is one line saying what is wrong and how to fix it; ``--repair`` fixes what needs no file (crash
leftovers, the keyword index). Tests run it after every fault they inject, so "clean" has one definition.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.pipeline import file_hash
from rag.keyword_index import KeywordIndex
from rag.keyword_sync import sync_keyword_index
from rag.store import DocRecord, Store
from rag.tokenize import TOKENIZER_VERSION


@dataclass
class Problem:
    what: str
    fix: str
    repairable: bool = False

    def __str__(self) -> str:
        return f"{self.what}; {self.fix}"


@dataclass
class CheckReport:
    documents: int = 0
    chunks: int = 0
    problems: list[Problem] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def as_json(self) -> dict:
        return {
            "documents": self.documents,
            "chunks": self.chunks,
            "clean": self.clean,
            "problems": [{"what": p.what, "fix": p.fix, "repairable": p.repairable} for p in self.problems],
            "repaired": self.repaired,
        }


def check_store(
    store: Store,
    index: KeywordIndex,
    *,
    check_files: bool = True,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> CheckReport:
    """Read-only: never takes the writer lock, so it can run while an ingest is writing (it then may report that
    ingest's work in progress as leftovers; run it again afterwards)."""
    progress = on_progress or (lambda _stage, _done, _total: None)
    records = store.documents()
    report = CheckReport(documents=len(records), chunks=sum(r.n_chunks for r in records.values()))
    problems = report.problems

    for intent in store.intents():
        problems.append(
            Problem(
                f"an interrupted write of document {intent.doc_id} (by {intent.owner}) left chunks behind",
                "the next ingest undoes it, or run `python -m ingest --check --repair`",
                repairable=True,
            )
        )

    # Chunks: every committed document complete, nothing else stored.
    expected = {cid: r for r in records.values() for cid in r.chunk_ids()}
    found: Counter[str] = Counter()
    positions: dict[str, list[int]] = defaultdict(list)
    orphans = 0
    done = 0
    total = store.chunk_count_raw()
    for page in store.iter_chunk_pages():
        for chunk in page:
            record = expected.get(chunk.chunk_id)
            if record is None or chunk.rev != record.rev:
                orphans += 1
            else:
                found[record.doc_id] += 1
                positions[record.doc_id].append(int(chunk.meta.get("chunk_index", -1)))
        done += len(page)
        progress("chunks", done, total)
    for record in records.values():
        if found[record.doc_id] != record.n_chunks:
            problems.append(
                Problem(
                    f"{record.source}: {found[record.doc_id]} of its {record.n_chunks} chunks are stored",
                    f"re-ingest it: `python -m ingest --force {record.source}`",
                )
            )
        elif sorted(positions[record.doc_id]) != list(range(record.n_chunks)):
            problems.append(
                Problem(f"{record.source}: chunk numbers are not 0..{record.n_chunks - 1}",
                        f"re-ingest it: `python -m ingest --force {record.source}`")
            )  # fmt: skip
    if orphans:
        problems.append(
            Problem(
                f"{orphans} stored chunks belong to no committed document (left by a crash or an older version)",
                "run `python -m ingest --check --repair` to delete them",
                repairable=True,
            )
        )

    # Keyword index: the same documents at the same revisions, made by today's tokenizer.
    if index.tokenizer_version not in (None, TOKENIZER_VERSION) and records:
        problems.append(
            Problem(
                f"the keyword index was built by tokenizer version {index.tokenizer_version}, not {TOKENIZER_VERSION}",
                "run `python -m ingest --check --repair` (or any search) to rebuild it",
                repairable=True,
            )
        )
    indexed = index.documents()
    wanted = {doc_id: r.rev for doc_id, r in records.items()}
    missing = [d for d in wanted if indexed.get(d) != wanted[d]]
    extra = [d for d in indexed if d not in wanted]
    if missing or extra:
        problems.append(
            Problem(
                f"the keyword index is behind Chroma ({len(missing)} documents missing or stale, {len(extra)} extra)",
                "run `python -m ingest --check --repair` (or any search) to bring it up to date",
                repairable=True,
            )
        )

    if check_files:
        _check_files(records, problems, progress)
    return report


def _check_files(records: dict[str, DocRecord], problems: list[Problem], progress) -> None:
    gone: list[DocRecord] = []
    for n, record in enumerate(sorted(records.values(), key=lambda r: r.source), start=1):
        path = Path(record.source)
        if not path.is_file():
            gone.append(record)
        else:
            try:
                changed = file_hash(path) != record.doc_hash
            except OSError:
                changed = False
            if changed:
                problems.append(
                    Problem(f"{record.source} changed since it was ingested", f"`python -m ingest {record.source}`")
                )
        progress("files", n, len(records))
    for record in gone:
        folder = os.path.dirname(record.source)
        problems.append(
            Problem(
                f"{record.source} is gone from disk (still searchable)",
                f"`python -m ingest {folder} --prune` or `python -m ingest --remove {record.source}`",
            )
        )


def repair_store(store: Store, index: KeywordIndex, *, wait: bool = True) -> list[str]:
    """Undo interrupted writes, delete chunks no committed document owns, resync the keyword index."""
    done: list[str] = []
    with store.writer(wait=wait) as session:
        settled = session.recover()
        if settled:
            done.append(f"settled {settled} interrupted writes")
        records = store.documents()
        expected = {cid: r.rev for r in records.values() for cid in r.chunk_ids()}
        orphans = [
            chunk.chunk_id
            for page in store.iter_chunk_pages()
            for chunk in page
            if expected.get(chunk.chunk_id) != chunk.rev
        ]
        if orphans:
            session.delete_orphans(orphans)
            done.append(f"deleted {len(orphans)} chunks that belonged to no committed document")
        sync = sync_keyword_index(store, index, records)
        if sync.added or sync.removed or sync.rebuilt:
            done.append(f"keyword index: {sync.added} documents added, {sync.removed} removed")
    return done
