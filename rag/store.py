"""Chroma access: the chunk collection and its document ledger, embedded or on a Chroma server.

Chroma is the single source of truth. Next to the chunk collection ``NAME`` lives a small collection ``NAME.docs``
with one record per document, written *after* all of that document's chunks: it is the commit marker. A document
without a record (a crash mid-ingest) is invisible to search and is replaced on the next run, so a kill at any
moment never leaves a half document or duplicates.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from rag.config import Settings
from rag.errors import ConfigError, StoreError

DOCS_SUFFIX = ".docs"
_NO_VECTOR = [0.0]  # the ledger is looked up by id and metadata only; Chroma still wants a vector


@dataclass(frozen=True)
class DocRecord:
    doc_id: str
    source: str
    file_name: str
    doc_hash: str
    n_chunks: int
    n_pages: int  # 0 for formats without pages
    ingested_at: float


def doc_id_for(source: str) -> str:
    """Stable id of a document: its source path, so a changed file replaces its old chunks."""
    return hashlib.sha1(source.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def chunk_id(doc_id: str, doc_hash: str, index: int) -> str:
    """Deterministic: re-running an interrupted document upserts the same ids instead of adding duplicates."""
    return f"{doc_id}-{doc_hash[:12]}-{index:05d}"


def make_client(settings: Settings) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_host:
        try:
            client = chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings)
            client.heartbeat()
        except Exception as exc:
            raise StoreError(
                f"cannot reach the Chroma server at {settings.chroma_host}:{settings.chroma_port} "
                f"(RAG_CHROMA_HOST/RAG_CHROMA_PORT): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        return client
    try:
        settings.store_dir.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.store_dir), settings=chroma_settings)
    except Exception as exc:
        raise StoreError(f"cannot open the store at {settings.store_dir} (RAG_STORE_DIR): {exc}") from None


class Store:
    def __init__(self, settings: Settings, client: Any = None) -> None:
        self.settings = settings
        self.client = client if client is not None else make_client(settings)
        self.name = settings.collection
        from chromadb.errors import InvalidArgumentError  # not a ValueError in chromadb 1.x

        try:
            # The ledger first: NAME.docs is 5 characters longer, so a name Chroma rejects leaves no collection behind.
            self.docs = self.client.get_or_create_collection(self.name + DOCS_SUFFIX, embedding_function=None)
            self.chunks = self.client.get_or_create_collection(
                self.name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
            )
        except (ValueError, InvalidArgumentError) as exc:
            reason = str(exc).split(". Got:")[0]  # Chroma repeats the (up to 512-character) name
            raise ConfigError(f"RAG_COLLECTION={self.name!r} is rejected by Chroma: {reason}") from None

    # ------------------------------------------------------------------ embedder identity
    def check_embedder(self, embedder_name: str, dim: int) -> None:
        """Record the embedder on first use; refuse to mix vectors of two models in one collection."""
        meta = dict(self.chunks.metadata or {})
        if meta.get("embed_model") is None:
            meta.update(embed_model=embedder_name, embed_dim=dim)
            self.chunks.modify(metadata=meta)
        elif meta.get("embed_dim") != dim:
            self.require_embedder(f"{embedder_name} ({dim} dimensions)")
        else:
            self.require_embedder(embedder_name)

    def require_embedder(self, embedder_name: str) -> None:
        """Vectors of another model are meaningless to this collection: say so before any work is done."""
        stored = self.embed_model
        if stored is not None and stored != embedder_name:
            raise ConfigError(
                f"collection {self.name!r} was built with the embedder {stored!r} but RAG_EMBED_MODEL gives "
                f"{embedder_name!r}; set RAG_COLLECTION to another name, or remove {self.settings.store_dir} and "
                "re-ingest"
            )

    @property
    def embed_model(self) -> str | None:
        return (self.chunks.metadata or {}).get("embed_model")

    # ------------------------------------------------------------------ the ledger
    def documents(self) -> dict[str, DocRecord]:
        got = self.docs.get(include=["metadatas"])
        return {i: _record(m) for i, m in zip(got["ids"], got["metadatas"] or [], strict=True)}

    def document(self, doc_id: str) -> DocRecord | None:
        got = self.docs.get(ids=[doc_id], include=["metadatas"])
        return _record(got["metadatas"][0]) if got["ids"] else None

    def find_by_hash(self, doc_hash: str) -> DocRecord | None:
        got = self.docs.get(where={"doc_hash": doc_hash}, include=["metadatas"], limit=1)
        return _record(got["metadatas"][0]) if got["ids"] else None

    def commit_document(self, record: DocRecord) -> None:
        self.docs.upsert(ids=[record.doc_id], embeddings=[_NO_VECTOR], metadatas=[asdict(record)])

    def fingerprint(self, records: Iterable[DocRecord] | None = None) -> str:
        """Changes whenever a document is committed, replaced or removed: the keyword index keys on it."""
        records = self.documents().values() if records is None else records
        items = sorted(f"{r.doc_id}:{r.doc_hash}:{r.n_chunks}" for r in records)
        return hashlib.sha1("\n".join(items).encode()).hexdigest()

    # ------------------------------------------------------------------ chunks
    def add_chunks(self, ids: list[str], embeddings: Any, texts: list[str], metadatas: list[dict[str, Any]]) -> None:
        self.chunks.upsert(ids=ids, embeddings=embeddings, documents=texts, metadatas=metadatas)

    def delete_document(self, doc_id: str) -> None:
        """Ledger record first: the document stops being visible before its chunks go."""
        self.docs.delete(ids=[doc_id])
        self.chunks.delete(where={"doc_id": doc_id})

    def orphan_doc_ids(self) -> set[str]:
        """Documents with chunks but no ledger record: left by a crash whose file was never ingested again."""
        committed = set(self.documents())
        got = self.chunks.get(include=["metadatas"])
        return {m["doc_id"] for m in got["metadatas"] or [] if m.get("doc_id") not in committed}

    def count_chunks(self) -> int:
        return self.chunks.count()

    def list_collections(self) -> list[str]:
        names = [c if isinstance(c, str) else c.name for c in self.client.list_collections()]
        return sorted(n for n in names if not n.endswith(DOCS_SUFFIX))


def _record(meta: dict[str, Any]) -> DocRecord:
    return DocRecord(
        doc_id=str(meta["doc_id"]),
        source=str(meta["source"]),
        file_name=str(meta["file_name"]),
        doc_hash=str(meta["doc_hash"]),
        n_chunks=int(meta["n_chunks"]),
        n_pages=int(meta.get("n_pages", 0)),
        ingested_at=float(meta.get("ingested_at", time.time())),
    )
