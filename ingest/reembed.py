"""``python -m ingest --reembed``: give a collection another embedder's vectors from the texts it already stores.

No file is read again. The new vectors go into a staged chunk collection that nothing searches; when every
committed chunk is in it, one ledger upsert makes it the active one and the old collection is dropped. Killed
half-way, the next run resumes the staged collection where it stopped; until the switch, search uses the old
vectors, after it the new ones: never a mix.

The same command moves a collection made before language partitions (rag/store.py) into them: with the embedder it
already has, the stored vectors are copied instead of computed again.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rag.config import PACKAGED_E5, Settings
from rag.embedders import Embedder, load_embedder
from rag.errors import Cancelled
from rag.language import detect_language
from rag.store import Store


@dataclass
class ReembedReport:
    embedder_before: str | None
    embedder_after: str
    chunks: int
    resumed: int  # chunks already in the staged collection from an interrupted run
    seconds: float

    def as_json(self) -> dict:
        return {
            "from": self.embedder_before,
            "to": self.embedder_after,
            "chunks": self.chunks,
            "resumed": self.resumed,
            "seconds": round(self.seconds, 3),
        }


def reembed(
    settings: Settings,
    store: Store,
    target: str | None = None,
    *,
    embedder: Embedder | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    wait: bool = True,
) -> ReembedReport:
    """Re-embed every committed chunk with ``target`` (a RAG_EMBED_MODEL value; default the packaged e5), or move a
    collection made before language partitions into them when it already has that embedder."""
    started = time.perf_counter()
    embedder = embedder or load_embedder(settings, target or PACKAGED_E5)
    progress = on_progress or (lambda _done, _total: None)
    stop = cancelled or (lambda: False)
    with store.writer(wait=wait) as session:
        before = store.embed_model
        records = store.documents()
        copy = before == embedder.name
        if copy and store.by_language:
            return ReembedReport(before, embedder.name, 0, 0, time.perf_counter() - started)
        name, staged = session.stage_collection(embedder.name, embedder.dim)
        wanted = [cid for r in sorted(records.values(), key=lambda r: r.source) for cid in r.chunk_ids()]
        present = session.staged_ids(staged)
        todo = [cid for cid in wanted if cid not in present]
        resumed = len(wanted) - len(todo)
        progress(resumed, len(wanted))
        batch = max(settings.embed_batch_size, 8)
        for start in range(0, len(todo), batch):
            if stop():
                raise Cancelled("re-embedding cancelled; run it again to resume where it stopped")
            ids = todo[start : start + batch]
            chunks = store.get_chunks(ids)
            ids = [cid for cid in ids if cid in chunks]
            texts = [chunks[cid].text for cid in ids]
            metadatas = [{**chunks[cid].meta} for cid in ids]
            for meta, text in zip(metadatas, texts, strict=True):
                meta.setdefault("lang", detect_language(text))
                meta.pop("tokens", None)  # keyword tokens now live in the keyword index only
            if copy:
                stored = store.get_vectors(ids)
                vectors = np.vstack([stored[cid] for cid in ids]) if ids else np.zeros((0, embedder.dim))
            else:
                vectors = embedder.embed_passages(texts)
            session.put_staged(staged, ids, vectors, texts, metadatas)
            progress(resumed + min(start + batch, len(todo)), len(wanted))
        # Records written before languages were kept learn them now, from what the staged collection holds.
        languages: dict[str, Counter[str]] = defaultdict(Counter)
        for page in store.iter_chunk_pages(collection=name):
            for chunk in page:
                languages[chunk.doc_id][str(chunk.meta.get("lang", ""))] += 1
        session.update_languages(
            {doc_id: ",".join(f"{k}:{n}" for k, n in sorted(c.items())) for doc_id, c in languages.items()
             if doc_id in records and not records[doc_id].langs}
        )  # fmt: skip
        session.activate(name)
    return ReembedReport(before, embedder.name, len(wanted), resumed, time.perf_counter() - started)
