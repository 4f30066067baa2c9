"""Keeping the keyword index in step with Chroma: the one module that changes it.

The index (rag/keyword_index.py, SQLite on this machine) is derived from Chroma and never a second registry. A writer
calls :func:`after_commit` right after each commit with the documents it just wrote (their tokens are at hand, so
nothing is fetched back); every reader calls :func:`sync_keyword_index` when the ledger's version changes, which diffs
the ledger against the index and fetches only what differs. That diff is also what repairs the index after a crash,
after another machine wrote to a shared Chroma server, or after a tokenizer change (a full rebuild then).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from rag.config import Settings
from rag.keyword_index import IndexedChunk, IndexedDoc, KeywordIndex, SyncReport, sync_index
from rag.store import Chunk, DocRecord, Store
from rag.tokenize import keyword_tokens

FETCH_IDS = 2000  # chunk ids per Chroma get() while fetching documents for the index


def keyword_index_path(settings: Settings) -> Path:
    """Per machine, per collection; a Chroma server's collections get their own folder, keyed by host and port."""
    base = settings.store_dir / "keyword"
    if settings.chroma_host:
        base = base / f"{settings.chroma_host}_{settings.chroma_port}"
    return base / f"{settings.collection}.sqlite"


def open_keyword_index(settings: Settings) -> KeywordIndex:
    return KeywordIndex.open(keyword_index_path(settings))


def indexed_doc(record: DocRecord, chunks: Iterable[Chunk | tuple[str, int, str]]) -> IndexedDoc:
    """The index's view of one document revision: ids, order and tokens of its chunks."""
    items = []
    for chunk in chunks:
        if isinstance(chunk, Chunk):
            cid, index, text = chunk.chunk_id, int(chunk.meta.get("chunk_index", 0)), chunk.text
        else:
            cid, index, text = chunk
        items.append(IndexedChunk(cid, index, keyword_tokens(text)))
    return IndexedDoc(record.doc_id, record.rev, items)


def after_commit(index: KeywordIndex, added: list[IndexedDoc], removed: Iterable[str] = ()) -> None:
    """What a writer does after each commit: exactly these documents' rows change, in one transaction."""
    index.apply(added, list(removed))


def sync_keyword_index(
    store: Store,
    index: KeywordIndex,
    records: Mapping[str, DocRecord] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SyncReport:
    """Bring the index to the ledger's state, touching only documents whose revision differs."""
    records = store.documents() if records is None else records
    revisions = {doc_id: record.rev for doc_id, record in records.items()}

    def fetch(wanted: list[tuple[str, str]]) -> Iterator[IndexedDoc]:
        batch: list[DocRecord] = []
        for doc_id, rev in wanted:
            record = records.get(doc_id)
            if record is not None and record.rev == rev:
                batch.append(record)
            if sum(r.n_chunks for r in batch) >= FETCH_IDS:
                yield from _fetch_docs(store, batch)
                batch = []
        yield from _fetch_docs(store, batch)

    return sync_index(index, revisions, fetch, on_progress=on_progress)


def _fetch_docs(store: Store, records: list[DocRecord]) -> Iterator[IndexedDoc]:
    if not records:
        return
    found = store.get_chunks([cid for r in records for cid in r.chunk_ids()])
    for record in records:
        yield indexed_doc(record, [found[cid] for cid in record.chunk_ids() if cid in found])
