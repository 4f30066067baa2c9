"""Files -> chunks -> vectors -> Chroma, incrementally and crash-safely.

Per file: hash the bytes; a document whose ledger record has that hash is skipped without loading any model.
Otherwise its old chunks are deleted, new chunks are embedded and upserted in batches (bounded memory, deterministic
ids), and the ledger record is written last as the commit marker (see rag/store.py). Progress goes to a callback so
the CLI (tqdm) and the UI (st.progress) show the same events.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ingest.chunking import chunk_page, make_splitter, repeated_lines, strip_lines
from ingest.readers import SUPPORTED_SUFFIXES, PageText, display_path, iter_pages
from rag.config import Settings
from rag.errors import RagError, UnreadableFile
from rag.keyword_index import KeywordIndex, keyword_dir
from rag.models import FAKE, Embedder, FakeEmbedder, _embedder_name, load_embedder
from rag.store import DocRecord, Store, chunk_id, doc_id_for
from rag.tokenize import keyword_tokens

Status = Literal["ingested", "replaced", "skipped", "failed", "removed"]


@dataclass
class FileResult:
    path: str
    status: Status
    chunks: int = 0
    reason: str = ""


@dataclass
class Progress:
    """One event: ``kind`` is 'start' (n_files known), 'file' (a file began), 'chunks' (n embedded), 'done' (a file
    ended)."""

    kind: Literal["start", "file", "chunks", "done"]
    path: str = ""
    n_files: int = 0
    n_chunks: int = 0
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


class Ingestor:
    def __init__(self, settings: Settings, store: Store | None = None, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.store = store or Store(settings)
        self._embedder = embedder
        if embedder is not None:
            wanted = embedder.name
        else:
            wanted = FakeEmbedder.name if settings.embed_model == FAKE else _embedder_name(settings.embed_model)
        self.store.require_embedder(wanted)
        self._splitter = None

    @property
    def embedder(self) -> Embedder:
        """Loaded on first need: a re-run over unchanged files never pays for torch."""
        if self._embedder is None:
            self._embedder = load_embedder(self.settings)
        return self._embedder

    @property
    def splitter(self):
        if self._splitter is None:
            # A chunk longer than the embedder's window (MiniLM: 256 tokens with [CLS] and [SEP]) would be silently
            # truncated when embedded, so RAG_CHUNK_SIZE is capped at what the model can see.
            size = min(self.settings.chunk_size, self.embedder.max_tokens - 2)
            overlap = min(self.settings.chunk_overlap, size - 1)
            self._splitter = make_splitter(self.embedder.tokenize, size, overlap)
        return self._splitter

    # ------------------------------------------------------------------ public operations
    def ingest_paths(
        self, paths: Iterable[Path], *, prune: bool = False, on_progress: ProgressCallback | None = None
    ) -> IngestReport:
        started = time.perf_counter()
        emit = on_progress or (lambda _event: None)
        paths = list(paths)
        files, problems = collect_files(paths)
        report = IngestReport(results=list(problems))
        emit(Progress("start", n_files=len(files)))
        for path in files:
            emit(Progress("file", path=str(path)))
            result = self.ingest_file(path, on_progress=emit)
            report.results.append(result)
            emit(Progress("done", path=str(path), result=result))
        if prune:
            report.results.extend(self.prune([Path(p) for p in paths if Path(p).is_dir()]))
        self.sync_keyword_index()
        report.chunks_total = self.store.count_chunks()
        report.seconds = time.perf_counter() - started
        return report

    def ingest_file(self, path: Path, on_progress: ProgressCallback | None = None) -> FileResult:
        path = canonical_file(path)
        shown = display_path(path)
        source = str(path)
        doc_id = doc_id_for(source)
        try:
            doc_hash = file_hash(path)
            existing = self.store.document(doc_id)
            if existing is not None and existing.doc_hash == doc_hash:
                return FileResult(shown, "skipped", existing.n_chunks, "unchanged")
            twin = self.store.find_by_hash(doc_hash)
            if twin is not None and twin.doc_id != doc_id and Path(twin.source).exists():
                if existing is not None:  # changed into a copy of another file: its old text must not stay searchable
                    self.store.delete_document(doc_id)
                return FileResult(shown, "skipped", 0, f"same content as {twin.file_name}, already ingested")
            # Old version or crash leftovers go first; the new record is written only when every chunk is in.
            self.store.delete_document(doc_id)
            n_chunks, n_pages = self._write_chunks(path, doc_id, doc_hash, on_progress)
            self.store.commit_document(DocRecord(doc_id, source, path.name, doc_hash, n_chunks, n_pages, time.time()))
            return FileResult(shown, "replaced" if existing else "ingested", n_chunks)
        except UnreadableFile as exc:
            return FileResult(shown, "failed", reason=exc.reason)
        except OSError as exc:
            return FileResult(shown, "failed", reason=(exc.strerror or str(exc)).lower())
        except RagError:
            raise  # configuration and store errors stop the run: every other file would fail the same way

    def remove(self, path_or_source: str) -> FileResult:
        source = str(canonical_file(path_or_source))
        records = self.store.documents()
        doc_id = doc_id_for(source)
        if doc_id not in records:  # also accept a bare file name when it is unambiguous
            matches = [r for r in records.values() if r.file_name == path_or_source]
            if len(matches) != 1:
                return FileResult(path_or_source, "failed", reason="not in the store (see --list)")
            doc_id = matches[0].doc_id
        self.store.delete_document(doc_id)
        self.sync_keyword_index()
        return FileResult(records[doc_id].source, "removed", records[doc_id].n_chunks)

    def prune(self, roots: list[Path]) -> list[FileResult]:
        """Remove documents under these folders whose files are gone, and chunks orphaned by a crash."""
        resolved = [os.path.realpath(r).rstrip(os.sep) + os.sep for r in roots]
        results = []
        for record in self.store.documents().values():
            if any(record.source.startswith(root) for root in resolved) and not Path(record.source).exists():
                self.store.delete_document(record.doc_id)
                results.append(FileResult(record.source, "removed", record.n_chunks, "file is gone"))
        for doc_id in self.store.orphan_doc_ids():
            self.store.delete_document(doc_id)
        return results

    def sync_keyword_index(self) -> KeywordIndex:
        return KeywordIndex.sync(self.store, keyword_dir(self.settings))

    # ------------------------------------------------------------------ internals
    def _chunk_texts(self, path: Path) -> Iterator[tuple[str, int | None]]:
        pages: list[PageText] = list(iter_pages(path))
        boiler = repeated_lines(p.text for p in pages)
        for page in pages:
            for text in chunk_page(self.splitter, strip_lines(page.text, boiler)):
                yield text, page.page

    def _write_chunks(
        self, path: Path, doc_id: str, doc_hash: str, on_progress: ProgressCallback | None
    ) -> tuple[int, int]:
        batch_size = max(self.settings.embed_batch_size, 16)
        embedder = self.embedder
        checked = False
        n_chunks, pages_seen = 0, set()
        batch: list[tuple[str, int | None]] = []

        def flush() -> None:
            nonlocal checked
            texts = [t for t, _ in batch]
            vectors = embedder.embed(texts)
            if not checked:
                self.store.check_embedder(embedder.name, int(vectors.shape[1]))
                checked = True
            start = n_chunks - len(batch)
            metadatas = []
            for offset, (text, page) in enumerate(batch):
                meta = {
                    "doc_id": doc_id,
                    "source": str(path),
                    "file_name": path.name,
                    "doc_hash": doc_hash,
                    "chunk_index": start + offset,
                    "tokens": " ".join(keyword_tokens(text)),
                }
                if page is not None:
                    meta["page"] = page
                metadatas.append(meta)
            ids = [chunk_id(doc_id, doc_hash, start + i) for i in range(len(batch))]
            self.store.add_chunks(ids, vectors, texts, metadatas)
            if on_progress:
                on_progress(Progress("chunks", path=str(path), n_chunks=len(batch)))
            batch.clear()

        for text, page in self._chunk_texts(path):
            batch.append((text, page))
            n_chunks += 1
            if page is not None:
                pages_seen.add(page)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        if n_chunks == 0:
            raise UnreadableFile(display_path(path), "no text to index")
        return n_chunks, max(pages_seen, default=0)
