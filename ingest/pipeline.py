"""Files -> chunks -> vectors -> Chroma, incrementally, crash-safely, and in batches that span documents.

Per run: one writer session (rag/store.py: the lock for an embedded store, crash leftovers repaired first). Each file
is hashed; a document whose ledger record has that hash is skipped without loading any model. The others are read
and chunked one after another, and their chunks embedded in full batches across document boundaries (many small
files would otherwise give tiny batches). Finished documents are committed in groups: new chunks written beside the
old revision, the ledger switched in one upsert, the old chunks deleted, and the keyword index updated for exactly
those documents. A crash at any point leaves either the old or the new revision visible, never a mix.

Progress goes to a callback so the CLI (tqdm) and the UI (st.progress) show the same events.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ingest.chunking import chunk_page, make_splitter, repeated_lines, strip_lines
from ingest.readers import SUPPORTED_SUFFIXES, PageEvent, ReadOptions, display_path, iter_pages
from rag.config import Settings
from rag.embedders import Embedder, choose_embedder_setting, embedder_name, load_embedder
from rag.errors import Cancelled, PasswordRequired, RagError, UnreadableFile
from rag.keyword_index import IndexedDoc, KeywordIndex
from rag.keyword_sync import after_commit, indexed_doc, open_keyword_index, sync_keyword_index
from rag.language import detect_language
from rag.store import DocRecord, NewChunks, Store, WriteSession, doc_id_for, new_rev

Status = Literal["ingested", "replaced", "skipped", "failed", "removed", "cancelled"]

# Commit a group once this many chunks (or documents) are ready, or this long after the last commit: fewer, larger
# Chroma writes, while a long run still makes documents searchable as it goes.
COMMIT_CHUNKS = 1024
COMMIT_DOCS = 256
COMMIT_SECONDS = 20.0


@dataclass
class FileResult:
    path: str
    status: Status
    chunks: int = 0
    reason: str = ""
    needs_password: bool = False  # an encrypted PDF: the UI asks for the password, the CLI prompts


@dataclass
class Progress:
    """One event. ``kind``: 'start' (n_files known), 'wait' (another writer holds the store; ``reason`` says who),
    'file' (a file began), 'page' (a page was read: ``page`` of ``n_pages``, ``ocr``), 'chunks' (``n_chunks`` more
    embedded), 'done' (a file ended: ``result``)."""

    kind: Literal["start", "wait", "file", "page", "chunks", "done"]
    path: str = ""
    n_files: int = 0
    n_chunks: int = 0
    page: int = 0
    n_pages: int = 0
    ocr: bool = False
    reason: str = ""
    result: FileResult | None = None


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)
    chunks_total: int = 0
    seconds: float = 0.0

    def count(self, *statuses: Status) -> int:
        return sum(1 for r in self.results if r.status in statuses)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    def as_json(self) -> dict:
        return {
            "ingested": self.count("ingested", "replaced"),
            "skipped": self.count("skipped"),
            "failed": [{"path": r.path, "error": r.reason} for r in self.failed],
            "chunks": self.chunks_total,
            "seconds": round(self.seconds, 3),
        }


ProgressCallback = Callable[[Progress], None]


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_file(path: str | os.PathLike[str]) -> Path:
    """The one spelling of a file's path that its document id is derived from: absolute, with '..' and symlinked
    folders resolved (``docs/../docs/a.txt`` and ``/abs/docs/a.txt`` are one document), the file name kept as given."""
    absolute = os.path.abspath(path)
    return Path(os.path.realpath(os.path.dirname(absolute)), os.path.basename(absolute))


def collect_files(paths: Iterable[Path]) -> tuple[list[Path], list[FileResult]]:
    """Expand folders (following symlinks, each real folder once, so loops end), drop repeats, keep order."""
    files: list[Path] = []
    problems: list[FileResult] = []
    seen_files: set[Path] = set()
    seen_dirs: set[Path] = set()

    def add_file(path: Path, explicit: bool) -> None:
        real = path.resolve()
        if real in seen_files:
            return
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            if explicit or not path.name.startswith("."):
                problems.append(
                    FileResult(display_path(path), "skipped", reason=f"unsupported file type '{path.suffix}'")
                )
            return
        seen_files.add(real)
        files.append(canonical_file(path))

    def walk(folder: Path) -> None:
        real = folder.resolve()
        if real in seen_dirs:
            return
        seen_dirs.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            problems.append(FileResult(display_path(folder), "failed", reason=f"cannot list folder: {exc.strerror}"))
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    walk(path)
                elif entry.is_file():
                    add_file(path, explicit=False)
                else:
                    problems.append(FileResult(display_path(path), "failed", reason="broken link or special file"))
            except OSError as exc:  # e.g. a symlink loop: ELOOP
                problems.append(FileResult(display_path(path), "failed", reason=exc.strerror or str(exc)))

    for raw in paths:
        path = Path(raw)
        try:
            if path.is_dir():
                walk(path)
            elif path.is_file():
                add_file(path, explicit=True)
            else:
                problems.append(FileResult(display_path(path), "failed", reason="no such file or folder"))
        except OSError as exc:
            problems.append(FileResult(display_path(path), "failed", reason=exc.strerror or str(exc)))
    return files, problems


@dataclass
class PlannedFile:
    path: Path
    doc_id: str
    doc_hash: str
    existing: DocRecord | None

    @property
    def shown(self) -> str:
        return display_path(self.path)


@dataclass
class PendingDoc:
    """A document read and chunked, waiting for its vectors and then for its group's commit."""

    plan: PlannedFile
    texts: list[str]
    metadatas: list[dict]
    n_pages: int
    rev: str = field(default_factory=new_rev)
    vectors: list[np.ndarray | None] = field(default_factory=list)
    embedded: int = 0

    @property
    def complete(self) -> bool:
        return self.embedded == len(self.texts)

    def record(self) -> DocRecord:
        path = self.plan.path
        langs = Counter(str(m["lang"]) for m in self.metadatas)
        return DocRecord(
            self.plan.doc_id, str(path), path.name, self.plan.doc_hash, len(self.texts), self.n_pages, time.time(),
            self.rev, ",".join(f"{lang}:{n}" for lang, n in sorted(langs.items())),
        )  # fmt: skip


class Ingestor:
    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        embedder: Embedder | None = None,
        keyword_index: KeywordIndex | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or Store(settings)
        self._embedder = embedder
        self._setting = choose_embedder_setting(settings, self.store.embed_model)
        self.store.require_embedder(embedder.name if embedder is not None else embedder_name(self._setting))
        self._splitter = None
        self._keyword = keyword_index
        self.index_progress: Callable[[int, int], None] | None = None  # keyword-index rebuild (CLI sets a bar)

    @property
    def embedder(self) -> Embedder:
        """Loaded on first need: a re-run over unchanged files never pays for it."""
        if self._embedder is None:
            self._embedder = load_embedder(self.settings, self._setting)
        return self._embedder

    @property
    def keyword_index(self) -> KeywordIndex:
        if self._keyword is None:
            self._keyword = open_keyword_index(self.settings)
        return self._keyword

    @property
    def splitter(self):
        if self._splitter is None:
            # A chunk longer than the embedder's window would be silently truncated when embedded, so
            # RAG_CHUNK_SIZE is capped at what the model can see (its window less the special tokens).
            size = min(self.settings.chunk_size, self.embedder.max_tokens - 4)
            overlap = min(self.settings.chunk_overlap, size - 1)
            self._splitter = make_splitter(self.embedder.tokenize, size, overlap)
        return self._splitter

    # ------------------------------------------------------------------ public operations
    def ingest_paths(
        self,
        paths: Iterable[Path],
        *,
        prune: bool = False,
        force: bool = False,
        on_progress: ProgressCallback | None = None,
        cancelled: Callable[[], bool] | None = None,
        passwords: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> IngestReport:
        """Add, replace or skip every file under ``paths``. ``force`` re-reads unchanged files (after a settings
        change); ``passwords`` maps a path (or file name) to the password of an encrypted PDF, used once."""
        started = time.perf_counter()
        emit = on_progress or (lambda _event: None)
        paths = list(paths)
        files, problems = collect_files(paths)
        report = IngestReport(results=list(problems))
        emit(Progress("start", n_files=len(files)))
        on_wait = lambda holder: emit(Progress("wait", reason=f"waiting for {holder} to finish writing"))  # noqa: E731
        with self._session(wait, on_wait) as (session, records):
            plans, removals = self._plan(files, records, force, report, emit)
            run = _Run(self, session, emit, report, cancelled, passwords or {})
            run.write(plans, removals)
            if prune:
                gone = self._gone(records, [Path(p) for p in paths if Path(p).is_dir()])
                run.remove(gone, reason="file is gone")
            report.chunks_total = self.store.count_chunks()
        report.seconds = time.perf_counter() - started
        return report

    def remove(self, targets: Iterable[str], *, wait: bool = True) -> list[FileResult]:
        """Remove documents by path, or by file name when it is unambiguous; one commit for all of them."""
        results: list[FileResult] = []
        with self._session(wait) as (session, records):
            chosen: list[DocRecord] = []
            for target in targets:
                record = _find_record(records, target)
                if record is None:
                    results.append(FileResult(target, "failed", reason="not in the store (see --list)"))
                elif record not in chosen:
                    chosen.append(record)
            run = _Run(self, session, lambda _e: None, IngestReport(), None, {})
            results += run.remove(chosen)
        return results

    @contextlib.contextmanager
    def _session(
        self, wait: bool, on_wait: Callable[[str], None] | None = None
    ) -> Iterator[tuple[WriteSession, dict[str, DocRecord]]]:
        """A writer session (crash leftovers undone on entry) with the keyword index brought up to the ledger: that
        repairs a crash between a commit and its index update, and rebuilds the index after a tokenizer change."""
        with self.store.writer(wait=wait, on_wait=on_wait) as session:
            records = self.store.documents()
            sync_keyword_index(self.store, self.keyword_index, records, on_progress=self.index_progress)
            yield session, records

    # ------------------------------------------------------------------ planning
    def _plan(
        self, files: list[Path], records: dict[str, DocRecord], force: bool, report: IngestReport, emit
    ) -> tuple[list[PlannedFile], list[DocRecord]]:
        """Hash every file; skip unchanged ones and copies of documents already in (or planned in this run)."""
        by_hash = {r.doc_hash: r for r in records.values()}
        planned_hashes: dict[str, Path] = {}
        plans: list[PlannedFile] = []
        removals: list[DocRecord] = []
        for path in files:
            shown = display_path(path)
            doc_id = doc_id_for(str(path))
            existing = records.get(doc_id)
            try:
                doc_hash = file_hash(path)
            except OSError as exc:
                _finish(report, emit, FileResult(shown, "failed", reason=(exc.strerror or str(exc)).lower()))
                continue
            if existing is not None and existing.doc_hash == doc_hash and not force:
                _finish(report, emit, FileResult(shown, "skipped", existing.n_chunks, "unchanged"))
                continue
            twin = by_hash.get(doc_hash)
            twin_name = None
            if twin is not None and twin.doc_id != doc_id and Path(twin.source).exists():
                twin_name = twin.file_name
            elif doc_hash in planned_hashes:
                twin_name = planned_hashes[doc_hash].name
            if twin_name is not None:
                if existing is not None:  # changed into a copy of another file: its old text must not stay
                    removals.append(existing)
                _finish(report, emit, FileResult(shown, "skipped", 0, f"same content as {twin_name}, already ingested"))
                continue
            planned_hashes[doc_hash] = path
            plans.append(PlannedFile(path, doc_id, doc_hash, existing))
        return plans, removals

    @staticmethod
    def _gone(records: dict[str, DocRecord], roots: list[Path]) -> list[DocRecord]:
        resolved = [os.path.realpath(r).rstrip(os.sep) + os.sep for r in roots]
        return [
            r for r in records.values()
            if any(r.source.startswith(root) for root in resolved) and not Path(r.source).exists()
        ]  # fmt: skip

    # ------------------------------------------------------------------ reading
    def read_chunks(
        self, plan: PlannedFile, options: ReadOptions, emit: ProgressCallback
    ) -> tuple[list[str], list[dict], int]:
        """Texts and metadata (without ids or revision) of one file's chunks, and its page count."""
        n_pages = 0

        def on_page(event: PageEvent) -> None:
            nonlocal n_pages
            n_pages = max(n_pages, event.n_pages if event.n_pages else event.page)
            emit(Progress("page", path=str(plan.path), page=event.page, n_pages=event.n_pages, ocr=event.ocr))

        pages = list(iter_pages(plan.path, _with_page_callback(options, on_page)))
        boiler = repeated_lines(p.text for p in pages)
        texts: list[str] = []
        metadatas: list[dict] = []
        for page in pages:
            for text in chunk_page(self.splitter, strip_lines(page.text, boiler)):
                meta = {
                    "doc_id": plan.doc_id,
                    "source": str(plan.path),
                    "file_name": plan.path.name,
                    "doc_hash": plan.doc_hash,
                    "chunk_index": len(texts),
                    "lang": detect_language(text),
                }
                if page.page is not None:
                    meta["page"] = page.page
                if getattr(page, "ocr", False):
                    meta["ocr"] = True
                texts.append(text)
                metadatas.append(meta)
        if not texts:
            raise UnreadableFile(plan.shown, "no text to index")
        has_pages = any(p.page is not None for p in pages)
        return texts, metadatas, (n_pages or max((p.page or 0 for p in pages), default=0)) if has_pages else 0


class _Run:
    """One ingest run's state inside its writer session: documents waiting for vectors, and for their commit."""

    def __init__(
        self,
        ingestor: Ingestor,
        session: WriteSession,
        emit: ProgressCallback,
        report: IngestReport,
        cancelled: Callable[[], bool] | None,
        passwords: Mapping[str, str],
    ) -> None:
        self.ingestor = ingestor
        self.session = session
        self.emit = emit
        self.report = report
        self.cancelled = cancelled or (lambda: False)
        self.passwords = passwords
        self.settings = ingestor.settings
        self.waiting: list[PendingDoc] = []  # read, not yet fully embedded (in order)
        self.ready: list[PendingDoc] = []  # embedded, not yet committed
        self.removals: list[DocRecord] = []
        self.last_commit = time.monotonic()
        self.batch_size = max(self.settings.embed_batch_size, 8)
        self._recorded_embedder = False

    def write(self, plans: list[PlannedFile], removals: list[DocRecord]) -> None:
        self.removals = list(removals)
        try:
            for plan in plans:
                self._check_cancel()
                self.emit(Progress("file", path=str(plan.path)))
                pending = self._read(plan)
                if pending is None:
                    continue
                self.waiting.append(pending)
                while self._queued() >= self.batch_size:
                    self._embed_batch()
                self._maybe_commit()
            while self._queued():
                self._embed_batch()
            self._commit()
        except Cancelled:
            for doc in self.waiting + self.ready:
                _finish(self.report, self.emit, FileResult(doc.plan.shown, "cancelled", reason="cancelled"))
            self.waiting, self.ready = [], []
            raise

    def remove(self, records: list[DocRecord], reason: str = "") -> list[FileResult]:
        if not records:
            return []
        self.session.commit([], removals=records)
        after_commit(self.ingestor.keyword_index, [], [r.doc_id for r in records])
        results = [FileResult(r.source, "removed", r.n_chunks, reason) for r in records]
        self.report.results.extend(results)
        return results

    # -- steps
    def _check_cancel(self) -> None:
        if self.cancelled():
            raise Cancelled("cancelled; documents not yet committed were left out")

    def _read(self, plan: PlannedFile) -> PendingDoc | None:
        password = self.passwords.get(str(plan.path)) or self.passwords.get(plan.path.name)
        options = ReadOptions.from_settings(self.settings, password=password, cancelled=self.cancelled)
        try:
            texts, metadatas, n_pages = self.ingestor.read_chunks(plan, options, self.emit)
        except PasswordRequired as exc:
            _finish(self.report, self.emit, FileResult(plan.shown, "failed", reason=exc.reason, needs_password=True))
            return None
        except UnreadableFile as exc:
            _finish(self.report, self.emit, FileResult(plan.shown, "failed", reason=exc.reason))
            return None
        except OSError as exc:
            _finish(self.report, self.emit, FileResult(plan.shown, "failed", reason=(exc.strerror or str(exc)).lower()))
            return None
        doc = PendingDoc(plan, texts, metadatas, n_pages)
        doc.vectors = [None] * len(texts)
        for meta in doc.metadatas:
            meta["rev"] = doc.rev
        return doc

    def _queued(self) -> int:
        return sum(len(d.texts) - d.embedded for d in self.waiting)

    def _embed_batch(self) -> None:
        """Embed the next ``batch_size`` chunks in document order, across document boundaries."""
        self._check_cancel()
        slots: list[tuple[PendingDoc, int]] = []
        for doc in self.waiting:
            for i in range(doc.embedded, len(doc.texts)):
                slots.append((doc, i))
                if len(slots) == self.batch_size:
                    break
            if len(slots) == self.batch_size:
                break
        embedder = self.ingestor.embedder
        vectors = embedder.embed_passages([doc.texts[i] for doc, i in slots])
        if not self._recorded_embedder:
            self.session.record_embedder(embedder.name, int(vectors.shape[1]))
            self._recorded_embedder = True
        counts: dict[str, int] = {}
        for (doc, i), vector in zip(slots, vectors, strict=True):
            doc.vectors[i] = vector
            doc.embedded = i + 1
            counts[str(doc.plan.path)] = counts.get(str(doc.plan.path), 0) + 1
        for path, n in counts.items():
            self.emit(Progress("chunks", path=path, n_chunks=n))
        while self.waiting and self.waiting[0].complete:
            self.ready.append(self.waiting.pop(0))

    def _maybe_commit(self) -> None:
        n_chunks = sum(len(d.texts) for d in self.ready)
        if (
            n_chunks >= COMMIT_CHUNKS
            or len(self.ready) >= COMMIT_DOCS
            or (self.ready and time.monotonic() - self.last_commit >= COMMIT_SECONDS)
        ):
            self._commit()

    def _commit(self) -> None:
        if not self.ready and not self.removals:
            return
        docs = [
            NewChunks(d.record(), d.texts, np.vstack(d.vectors), d.metadatas)  # type: ignore[arg-type]
            for d in self.ready
        ]
        old = {d.plan.doc_id: d.plan.existing for d in self.ready if d.plan.existing is not None}
        self.session.commit(docs, removals=self.removals, old=old)
        added: list[IndexedDoc] = [
            indexed_doc(doc.record, zip(doc.record.chunk_ids(), range(len(doc.texts)), doc.texts, strict=True))
            for doc in docs
        ]
        after_commit(self.ingestor.keyword_index, added, [r.doc_id for r in self.removals])
        for pending in self.ready:
            status: Status = "replaced" if pending.plan.existing else "ingested"
            _finish(self.report, self.emit, FileResult(pending.plan.shown, status, len(pending.texts)))
        self.ready, self.removals = [], []
        self.last_commit = time.monotonic()


def _finish(report: IngestReport, emit: ProgressCallback, result: FileResult) -> None:
    report.results.append(result)
    emit(Progress("done", path=result.path, result=result))


def _find_record(records: Mapping[str, DocRecord], target: str) -> DocRecord | None:
    record = records.get(doc_id_for(str(canonical_file(target))))
    if record is not None:
        return record
    matches = [r for r in records.values() if r.file_name == target or r.source == target]
    return matches[0] if len(matches) == 1 else None


def _with_page_callback(options: ReadOptions, on_page: Callable[[PageEvent], None]) -> ReadOptions:
    import dataclasses

    return dataclasses.replace(options, on_page=on_page)


__all__ = [
    "FileResult",
    "IngestReport",
    "Ingestor",
    "Progress",
    "RagError",
    "canonical_file",
    "collect_files",
    "file_hash",
]
