"""Chroma access, and the only module that touches Chroma collections.

Layout, for a collection ``NAME``:

- ``NAME.docs`` is the ledger. One record per committed document (id = doc_id) says which revision of the document
  is visible; ``intent:<doc_id>`` records announce a write or delete in progress; ``meta:version`` changes on every
  commit (readers poll it instead of the whole ledger); ``meta:active`` names the chunk collection in use.
- The chunk collection (``NAME``, or ``NAME.r<rev>`` after ``python -m ingest --reembed``) holds the embedder's name
  in its metadata, and text, vector and metadata per chunk in one partition per chunk language (``NAME--zh``,
  ``NAME--en``, ...): searching one language is then a plain nearest-neighbour query, where Chroma's metadata filter
  took ~200 ms at 100k chunks. Collections made before partitions hold every chunk themselves (``layout`` unset) and
  are searched with the filter; ``python -m ingest --reembed`` moves their vectors into partitions.
  A chunk is visible only when its ``rev`` is the revision its document's ledger record names,
  so a new version is written beside the old one, the record switches in one upsert, and the old chunks go after.

Crash safety: an intent names both revisions (and their chunk counts) before anything is written; whatever a crash
leaves behind is deleted by id at the start of the next write session (``recover``). Embedded stores allow one writer
process at a time (a file lock); a writer reopens Chroma after taking the lock, because a client opened earlier holds
a stale vector index in memory and would overwrite what another process wrote meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import Settings
from rag.errors import ConfigError, MissingCollection, RagError, StoreError, WriterBusy

DOCS_SUFFIX = ".docs"
PAGE = 2000  # records per Chroma get(): bounded memory when paging through a large collection
INTENT = "intent:"
VERSION_ID = "meta:version"
ACTIVE_ID = "meta:active"
RETIRED_ID = "meta:retired"
_NO_VECTOR = [0.0]  # the ledger is read by id and metadata only; Chroma still wants a vector
# With a Chroma server there is no lock: an intent older than this is taken to be a dead writer's.
STALE_INTENT_S = 3600.0
UNFILTERED_MAX_ASKED = 400  # nearest chunks of all languages read before one language's are asked with a filter
PART_SEP = "--"  # NAME--zh holds NAME's Chinese chunks (RAG_COLLECTION may not contain "--")
LAYOUT_BY_LANGUAGE = "by-language"
_LANGUAGE_CODE = re.compile(r"[a-z]{2,8}")


def part_name(base: str, language: str) -> str:
    return f"{base}{PART_SEP}{language}"


def part_language(meta: Mapping[str, Any] | None) -> str:
    """Which partition a chunk belongs to: its ``lang`` (set by ingestion), "other" when missing or odd."""
    language = str((meta or {}).get("lang") or "")
    return language if _LANGUAGE_CODE.fullmatch(language) else "other"


@dataclass(frozen=True)
class DocRecord:
    doc_id: str
    source: str
    file_name: str
    doc_hash: str  # sha256 of the file's bytes
    n_chunks: int
    n_pages: int  # 0 for formats without pages
    ingested_at: float
    rev: str = ""  # the revision whose chunks are visible; legacy records use doc_hash[:12]
    langs: str = ""  # chunks per language, "zh:12,en:3" ("" for records written before languages were kept)

    def __post_init__(self) -> None:
        if not self.rev:
            object.__setattr__(self, "rev", self.doc_hash[:12])

    def chunk_ids(self) -> list[str]:
        return [chunk_id(self.doc_id, self.rev, i) for i in range(self.n_chunks)]


@dataclass(frozen=True)
class Intent:
    """A write or delete of one document in progress: enough to undo either outcome by chunk id."""

    doc_id: str
    new_rev: str | None  # None for a delete
    new_n: int
    old_rev: str | None  # None for a new document
    old_n: int
    owner: str
    started_at: float

    def chunk_ids(self, keep_rev: str | None) -> list[str]:
        """Chunk ids of whichever revision is not ``keep_rev`` (the committed one)."""
        ids = []
        for rev, n in ((self.new_rev, self.new_n), (self.old_rev, self.old_n)):
            if rev and rev != keep_rev:
                ids += [chunk_id(self.doc_id, rev, i) for i in range(n)]
        return ids


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    text: str
    meta: dict[str, Any]
    similarity: float | None = None  # cosine similarity, for dense query results
    vector: Any = None  # the stored vector, when asked for

    @property
    def doc_id(self) -> str:
        return str(self.meta.get("doc_id", ""))

    @property
    def rev(self) -> str:
        return str(self.meta.get("rev") or str(self.meta.get("doc_hash", ""))[:12])


@dataclass
class NewChunks:
    """One document's new revision, embedded and ready to write."""

    record: DocRecord
    texts: list[str]
    vectors: Any  # [n, dim] float32
    metadatas: list[dict[str, Any]] = field(default_factory=list)


def doc_id_for(source: str) -> str:
    """Stable id of a document: its source path, so a changed file replaces its old chunks."""
    return hashlib.sha1(source.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def chunk_id(doc_id: str, rev: str, index: int) -> str:
    return f"{doc_id}-{rev}-{index:05d}"


def new_rev() -> str:
    return uuid.uuid4().hex[:12]


def owner_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


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
                f"(RAG_CHROMA_HOST/RAG_CHROMA_PORT): {first_line(exc)}"
            ) from None
        return client
    try:
        settings.store_dir.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.store_dir), settings=chroma_settings)
    except Exception as exc:
        raise StoreError(f"cannot open the store at {settings.store_dir} (RAG_STORE_DIR): {first_line(exc)}") from None


def fresh_client(settings: Settings) -> Any:
    """A client that reads the store as it is on disk now (embedded mode keeps one cached system per folder)."""
    if not settings.chroma_host:
        from chromadb.api.client import SharedSystemClient

        SharedSystemClient.clear_system_cache()
    return make_client(settings)


class Store:
    """The chunk collection and its ledger. Reads are methods here; writes go through :meth:`writer`."""

    def __init__(self, settings: Settings, client: Any = None, *, create: bool = True) -> None:
        self.settings = settings
        self.name = settings.collection
        self.remote = bool(settings.chroma_host)
        self._client = client if client is not None else make_client(settings)
        self._swap = threading.RLock()  # reopen() holds it while opening the partitions
        self._stale = False  # another process committed since this client was opened (embedded mode)
        self._local_version: str | None = None  # the version this process wrote last
        self._open_collections(create)

    # ------------------------------------------------------------------ opening
    def _open_collections(self, create: bool) -> None:
        from chromadb.errors import InvalidArgumentError, NotFoundError

        try:
            if create:
                # The ledger first: NAME.docs is longer, so a name Chroma rejects leaves no collection behind.
                self._docs = self._client.get_or_create_collection(self.name + DOCS_SUFFIX, embedding_function=None)
            else:
                self._docs = self._client.get_collection(self.name + DOCS_SUFFIX, embedding_function=None)
            self.chunk_collection_name = self._active_name()
            self._chunks = self._collection(self.chunk_collection_name, create=create)
            self._load_layout()
        except (ValueError, InvalidArgumentError) as exc:
            reason = str(exc).split(". Got:")[0]  # Chroma repeats the (up to 512-character) name
            raise ConfigError(f"RAG_COLLECTION={self.name!r} is rejected by Chroma: {reason}") from None
        except NotFoundError:
            raise MissingCollection(
                f"there is no collection {self.name!r} in {self.where()} (RAG_COLLECTION); "
                f"existing: {', '.join(self.list_collections()) or 'none'}"
            ) from None
        except RagError:
            raise
        except Exception as exc:
            raise StoreError(f"Chroma at {self.where()}: {first_line(exc)}") from None

    def _collection(self, name: str, *, create: bool = True) -> Any:
        if create:
            return self._client.get_or_create_collection(
                name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
            )
        return self._client.get_collection(name, embedding_function=None)

    def _load_layout(self) -> None:
        """Whether the chunk collection is partitioned by language, and its partitions as they are now."""
        by_language = (self._chunks.metadata or {}).get("layout") == LAYOUT_BY_LANGUAGE
        parts = self._find_parts(self.chunk_collection_name) if by_language else {}
        with self._swap:
            self.by_language, self._parts = by_language, parts

    def _find_parts(self, base: str) -> dict[str, Any]:
        prefix = base + PART_SEP
        parts = {}
        for name in self._client.list_collections():
            name = name if isinstance(name, str) else name.name
            if name.startswith(prefix) and _LANGUAGE_CODE.fullmatch(name[len(prefix) :]):
                parts[name[len(prefix) :]] = self._collection(name)
        return parts

    def _part(self, language: str) -> Any:
        """The partition of one language, created on first use (writers only)."""
        with self._swap:
            part = self._parts.get(language)
        if part is None:
            with self._chroma("creating a language partition"):
                part = self._collection(part_name(self.chunk_collection_name, language))
            with self._swap:
                self._parts = {**self._parts, language: part}
        return part

    def _members(self, language: str | None = None) -> list[Any]:
        """The Chroma collections that hold chunks (of one language, if given and partitioned)."""
        with self._swap:
            base, parts, by_language = self._chunks, self._parts, self.by_language
        if not by_language:
            return [base]
        if language is not None:
            return [parts[language]] if language in parts else []
        return [parts[k] for k in sorted(parts)]

    def _active_name(self) -> str:
        got = self._docs.get(ids=[ACTIVE_ID], include=["metadatas"])
        if got["ids"] and got["metadatas"] and got["metadatas"][0].get("chunks"):
            return str(got["metadatas"][0]["chunks"])
        return self.name

    def where(self) -> str:
        if self.remote:
            return f"the Chroma server {self.settings.chroma_host}:{self.settings.chroma_port}"
        return str(self.settings.store_dir)

    @contextlib.contextmanager
    def _chroma(self, doing: str) -> Iterator[None]:
        """Turn anything Chroma or the network raises into a one-line StoreError."""
        try:
            yield
        except RagError:
            raise
        except Exception as exc:
            raise StoreError(f"Chroma at {self.where()} failed while {doing}: {first_line(exc)}") from None

    def follow_active(self) -> None:
        """Switch to the chunk collection the ledger names (another process re-embedded the collection)."""
        with self._chroma("reading the ledger"):
            name = self._active_name()
        if name != self.chunk_collection_name:
            with self._swap, self._chroma("opening the re-embedded chunk collection"):
                self._chunks = self._collection(name)
                self.chunk_collection_name = name
            with self._chroma("opening the language partitions"):
                self._load_layout()
        elif self.remote:
            # Another machine may have made the first write (the layout) or a new language's partition. An embedded
            # client finds them when it reopens: one opened before another process's write cannot read them yet.
            self.reload_layout()

    def reload_layout(self) -> None:
        """Read the chunk collection's layout and partitions again (a server: other machines write too)."""
        with self._chroma("opening the language partitions"):
            base = self._collection(self.chunk_collection_name)
            with self._swap:
                self._chunks = base
            self._load_layout()

    def reopen(self) -> None:
        """Replace the client by one that sees the store as it is now; queries in flight finish on the old one."""
        with self._swap:
            client = fresh_client(self.settings)
            self._client = client
            self._open_collections(create=True)
            self._stale = False

    # ------------------------------------------------------------------ embedder identity
    def embedder_info(self) -> tuple[str, int] | None:
        """(name, dimensions) of the embedder that built the active chunk collection, if any chunk was written."""
        with self._chroma("reading the collection's metadata"):
            meta = self._collection(self.chunk_collection_name).metadata or {}
        if meta.get("embed_model") is None:
            return None
        return str(meta["embed_model"]), int(meta.get("embed_dim") or 0)

    @property
    def embed_model(self) -> str | None:
        info = self.embedder_info()
        return info[0] if info else None

    def require_embedder(self, embedder_name: str, dim: int | None = None) -> None:
        """Vectors of another model are meaningless to this collection: say so before any work is done."""
        info = self.embedder_info()
        if info is None:
            return
        stored, stored_dim = info
        if stored != embedder_name or (dim is not None and stored_dim and stored_dim != dim):
            raise ConfigError(
                f"collection {self.name!r} was built with the embedder {stored!r} but RAG_EMBED_MODEL gives "
                f"{embedder_name!r}; re-embed it with `python -m ingest --reembed` (keeps the documents), "
                "or set RAG_COLLECTION to another name"
            )

    # ------------------------------------------------------------------ the ledger
    def _ledger_records(self, where: dict[str, Any] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        offset = 0
        while True:
            with self._chroma("reading the ledger"):
                got = self._docs.get(where=where, include=["metadatas"], limit=PAGE, offset=offset)
            yield from zip(got["ids"], got["metadatas"] or [], strict=True)
            if len(got["ids"]) < PAGE:
                return
            offset += PAGE

    def documents(self) -> dict[str, DocRecord]:
        return {i: _record(m) for i, m in self._ledger_records() if ":" not in i}

    def document(self, doc_id: str) -> DocRecord | None:
        with self._chroma("reading the ledger"):
            got = self._docs.get(ids=[doc_id], include=["metadatas"])
        return _record(got["metadatas"][0]) if got["ids"] else None

    def find_by_hash(self, doc_hash: str) -> DocRecord | None:
        with self._chroma("reading the ledger"):
            got = self._docs.get(where={"doc_hash": doc_hash}, include=["metadatas"], limit=5)
        found = [_record(m) for i, m in zip(got["ids"], got["metadatas"] or [], strict=True) if ":" not in i]
        return found[0] if found else None

    def intents(self) -> list[Intent]:
        return [_intent(m) for _, m in self._ledger_records({"kind": "intent"})]

    def version(self) -> str:
        """Changes on every commit; cheap (one record), so readers poll it."""
        with self._chroma("reading the ledger"):
            got = self._docs.get(ids=[VERSION_ID], include=["metadatas"])
        return str(got["metadatas"][0].get("value")) if got["ids"] else ""

    def note_version(self, version: str) -> None:
        """Called by readers: a version this process did not write means another process committed."""
        if not self.remote and version and version != self._local_version:
            self._stale = True

    def count_chunks(self, records: Iterable[DocRecord] | None = None) -> int:
        """Committed chunks only: a write in progress or crash leftovers are not part of the collection."""
        records = self.documents().values() if records is None else records
        return sum(r.n_chunks for r in records)

    def list_collections(self) -> list[str]:
        with self._chroma("listing collections"):
            names = [c if isinstance(c, str) else c.name for c in self._client.list_collections()]
        return sorted(n[: -len(DOCS_SUFFIX)] for n in names if n.endswith(DOCS_SUFFIX))

    # ------------------------------------------------------------------ reading chunks
    def query(
        self,
        vector: Sequence[float],
        n_results: int,
        visible: Mapping[str, str],
        *,
        language: str | None = None,
        with_vectors: bool = False,
    ) -> list[Chunk]:
        """Nearest committed chunks (of one language, if given). ``visible`` maps doc_id to its committed rev; other
        chunks are skipped, and the query asks for more to make up for them so that they never take a committed
        chunk's place."""
        if n_results <= 0 or not visible:
            return []
        try:
            return self._query(vector, n_results, visible, language, with_vectors)
        except StoreError:
            if not self._went_stale():
                raise
            return self._query(vector, n_results, visible, language, with_vectors)

    def _went_stale(self) -> bool:
        """After a Chroma failure: in embedded mode another process may have written since this client opened (a
        commit in progress is not announced yet). Treat the client as stale (reopened at the next refresh when
        nobody writes) and say whether that is new, so that the caller may retry on the stale path."""
        if self.remote or self._stale:
            return False
        self._stale = True
        return True

    def _query(
        self, vector: Sequence[float], n_results: int, visible: Mapping[str, str], language: str | None,
        with_vectors: bool,
    ) -> list[Chunk]:  # fmt: skip
        with self._swap:
            base, by_language = self._chunks, self.by_language
        if not by_language:
            return self._nearest(base, vector, n_results, visible, language, with_vectors)
        found = [
            chunk
            for part in self._members(language)
            for chunk in self._nearest(part, vector, n_results, visible, None, with_vectors)
        ]
        return sorted(found, key=lambda c: -(c.similarity or 0.0))[:n_results]

    def _nearest(
        self, collection: Any, vector: Sequence[float], n_results: int, visible: Mapping[str, str],
        language: str | None, with_vectors: bool,
    ) -> list[Chunk]:  # fmt: skip
        """Nearest visible chunks of one collection; ``language`` is only for a collection made before partitions."""
        include = ["documents", "metadatas", "distances"] + (["embeddings"] if with_vectors else [])
        # Chroma's metadata filter is slow (a `where` query took ~200 ms at 100k chunks, an unfiltered one ~5 ms),
        # so in an unpartitioned collection one language's chunks are first looked for among the nearest of all; the
        # filter is the fallback. A client opened before another process's commit (the writer still holds the lock,
        # so it cannot reopen yet) must not filter at all: Chroma fails with "Error finding id" (the filter sees rows
        # its vector index lacks).
        stale = self._stale and not self.remote
        filtered = False
        asked = n_results + min(n_results, 50)
        while True:
            with self._chroma("searching"):
                got = collection.query(
                    query_embeddings=[list(map(float, vector))], n_results=asked, include=include,
                    where={"lang": language} if filtered else None,
                )  # fmt: skip
            out = []
            vectors = got["embeddings"][0] if with_vectors and got.get("embeddings") is not None else None
            for n, (cid, text, meta, dist) in enumerate(
                zip(got["ids"][0], got["documents"][0], got["metadatas"][0], got["distances"][0], strict=True)
            ):
                vec = None if vectors is None else np.asarray(vectors[n], dtype=np.float32)
                chunk = Chunk(cid, text or "", dict(meta or {}), 1.0 - float(dist), vec)
                if visible.get(chunk.doc_id) == chunk.rev and (not language or chunk.meta.get("lang") == language):
                    out.append(chunk)
            # A write in progress (or crash leftovers, or another language) can crowd the nearest places: widen
            # until enough are found or the collection is exhausted.
            if len(out) >= n_results or len(got["ids"][0]) < asked:
                return out[:n_results]
            if language and not filtered and asked >= UNFILTERED_MAX_ASKED:
                if stale:
                    return out[:n_results]
                filtered, asked = True, n_results + min(n_results, 50)
                continue
            asked *= 4

    def get_chunks(self, ids: list[str]) -> dict[str, Chunk]:
        if not ids:
            return {}
        out = {}
        for member in self._members():
            with self._chroma("reading chunks"):
                got = member.get(ids=ids, include=["documents", "metadatas"])
            out.update({
                cid: Chunk(cid, text or "", dict(meta or {}))
                for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
            })  # fmt: skip
        return out

    def sample_vectors(self, language: str | None, total: int, size: int, runs: int) -> Any:
        """About ``size`` stored vectors of one language (any, if None), read in ``runs`` slices spread over its
        ``total`` chunks."""
        if self.by_language:
            members = self._members(language)
            if language is None and len(members) > 1:  # all languages: an equal share from each partition
                with self._chroma("counting chunks"):
                    counts = [m.count() for m in members]
                share = max(1, size // len(members))
                samples = [self._sample(m, None, n, share, runs) for m, n in zip(members, counts, strict=True)]
                samples = [v for v in samples if len(v)]
                return np.vstack(samples) if samples else np.zeros((0, 0), dtype=np.float32)
            return self._sample(members[0], None, total, size, runs) if members else np.zeros((0, 0), dtype=np.float32)
        return self._sample(self._chunks, language, total, size, runs)

    def _sample(self, collection: Any, language: str | None, total: int, size: int, runs: int) -> Any:
        per_run = max(1, size // runs)
        offsets = sorted({int(i * max(total - per_run, 0) / max(runs - 1, 1)) for i in range(runs)})
        rows = []
        for offset in offsets:
            with self._chroma("reading vectors"):
                got = collection.get(
                    where={"lang": language} if language else None, include=["embeddings"], limit=per_run, offset=offset
                )
            if got.get("embeddings") is not None and len(got["embeddings"]):
                rows.append(np.asarray(got["embeddings"], dtype=np.float32))
        return np.vstack(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    def get_vectors(self, ids: list[str]) -> dict[str, Any]:
        """Stored vectors by chunk id (float32 rows), for comparing chunks with another question."""
        out: dict[str, Any] = {}
        for member in self._members() if ids else []:
            out.update(self._vectors_in(member, [cid for cid in ids if cid not in out]))
        return out

    def _vectors_in(self, collection: Any, ids: list[str]) -> dict[str, Any]:
        if not ids:
            return {}
        try:
            with self._chroma("reading vectors"):
                got = collection.get(ids=ids, include=["embeddings"])
        except StoreError:
            if not self.stale and not self._went_stale():
                raise
            # A client older than another process's commit (still writing) can see a new chunk's row but not its
            # vector ("Error finding id"): read one by one and leave out what it cannot see yet.
            out = {}
            for cid in ids:
                with contextlib.suppress(Exception):
                    one = collection.get(ids=[cid], include=["embeddings"])
                    for i, v in zip(one["ids"], one["embeddings"], strict=True):
                        out[i] = np.asarray(v, dtype=np.float32)
            return out
        return {cid: np.asarray(v, dtype=np.float32) for cid, v in zip(got["ids"], got["embeddings"], strict=True)}

    def document_chunks(self, record: DocRecord) -> list[Chunk]:
        """The committed chunks of one document, in order."""
        found = self.get_chunks(record.chunk_ids())
        return [found[cid] for cid in record.chunk_ids() if cid in found]

    def iter_chunk_pages(self, collection: str | None = None, include_vectors: bool = False) -> Iterator[list[Chunk]]:
        """Every stored chunk (committed or not), a page at a time: for the consistency check and re-embedding."""
        include = ["metadatas"] + (["embeddings"] if include_vectors else [])
        for target in self._all_members(collection):
            offset = 0
            while True:
                with self._chroma("reading chunks"):
                    got = target.get(include=include, limit=PAGE, offset=offset)
                vectors = got.get("embeddings") if include_vectors else None
                yield [
                    Chunk(cid, "", dict(meta or {}), vector=None if vectors is None else np.asarray(vectors[n]))
                    for n, (cid, meta) in enumerate(zip(got["ids"], got["metadatas"], strict=True))
                ]
                if len(got["ids"]) < PAGE:
                    break
                offset += PAGE

    def _all_members(self, collection: str | None = None) -> list[Any]:
        """A chunk collection (the active one by default) and all its language partitions: whatever holds chunks."""
        name = self.chunk_collection_name if collection is None else collection
        with self._chroma("listing the language partitions"):
            return [self._collection(name), *(p for _, p in sorted(self._find_parts(name).items()))]

    def chunk_count_raw(self) -> int:
        with self._chroma("counting chunks"):
            return sum(member.count() for member in self._all_members())

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def writer(self, *, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> Iterator[WriteSession]:
        """The only way to change the store. Embedded: one writer process at a time (the lock), a client that sees
        what other writers did, and leftovers of a crashed write repaired first. A server serialises by itself."""
        with writer_lock(self.settings, wait=wait, on_wait=on_wait):
            if not self.remote:
                self.reopen()
            else:
                self.reload_layout()
            session = WriteSession(self)
            session.recover()
            yield session

    @property
    def stale(self) -> bool:
        """Another process committed and this client has not reopened yet (it is still writing)."""
        return self._stale and not self.remote

    def try_refresh(self) -> bool:
        """Reader side, embedded mode: reopen to see vectors another process wrote, but only while nobody writes,
        since Chroma's files are not safe to load mid-write. Never blocks; returns whether the view is fresh."""
        if self.remote or not self._stale:
            return True
        try:
            with writer_lock(self.settings, wait=False):
                self.reopen()
        except WriterBusy:
            return False
        return True


class WriteSession:
    """Writes made while holding the store's writer lock (or against a server). Each method is one step of the
    intent -> chunks -> ledger -> cleanup order that makes every crash repairable."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.owner = owner_label()

    @property
    def _docs(self) -> Any:
        return self.store._docs

    @property
    def _chunks(self) -> Any:
        return self.store._chunks

    def _chroma(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return self.store._chroma(doing)

    # -- recovery
    def recover(self) -> int:
        """Undo what crashed writers left: chunks of revisions that never became (or stopped being) visible, and
        retired chunk collections. Returns how many intents were settled."""
        settled = 0
        now = time.time()
        for intent in self.store.intents():
            if self.store.remote and self._may_be_alive(intent, now):
                continue  # another writer on a shared server, perhaps still at work
            record = self.store.document(intent.doc_id)
            self._delete_chunks(intent.chunk_ids(record.rev if record else None))
            with self._chroma("settling an interrupted write"):
                self._docs.delete(ids=[INTENT + intent.doc_id])
            settled += 1
        self._drop_retired()
        if settled:
            self.bump_version()
        return settled

    def _may_be_alive(self, intent: Intent, now: float) -> bool:
        if intent.owner == self.owner:
            return False
        return now - intent.started_at < STALE_INTENT_S and not _dead_local_owner(intent.owner)

    # -- documents
    def commit(
        self, docs: list[NewChunks], removals: Sequence[DocRecord] = (), old: Mapping[str, DocRecord] | None = None
    ) -> None:
        """Make new revisions visible and old ones (and removed documents) disappear, crash-safely.

        ``old`` maps doc_id to the record being replaced, if any. Order: intents, new chunks, ledger switch,
        old chunks deleted, intents cleared, version bumped.
        """
        if not docs and not removals:
            return
        self._check_active()
        old = old or {}
        intents = [self._intent(d.record.doc_id, d.record, old.get(d.record.doc_id)) for d in docs]
        intents += [self._intent(r.doc_id, None, r) for r in removals]
        self._put_intents(intents)
        self._put_chunks(docs)
        with self._chroma("committing documents"):
            if docs:
                self._docs.upsert(
                    ids=[d.record.doc_id for d in docs],
                    embeddings=[_NO_VECTOR] * len(docs),
                    metadatas=[{**asdict(d.record), "kind": "doc"} for d in docs],
                )
            if removals:
                self._docs.delete(ids=[r.doc_id for r in removals])
        stale_ids: list[str] = []
        for intent in intents:
            stale_ids += intent.chunk_ids(intent.new_rev)
        self._delete_chunks(stale_ids)
        with self._chroma("committing documents"):
            self._docs.delete(ids=[INTENT + i.doc_id for i in intents])
        self.bump_version()

    def _intent(self, doc_id: str, new: DocRecord | None, old: DocRecord | None) -> Intent:
        return Intent(doc_id, _rev(new), _n(new), _rev(old), _n(old), self.owner, time.time())

    def _put_intents(self, intents: list[Intent]) -> None:
        if not intents:
            return
        metadatas = [{**{k: "" if v is None else v for k, v in asdict(i).items()}, "kind": "intent"} for i in intents]
        with self._chroma("recording a write in progress"):
            self._docs.upsert(
                ids=[INTENT + i.doc_id for i in intents], embeddings=[_NO_VECTOR] * len(intents), metadatas=metadatas
            )

    def _put_chunks(self, docs: list[NewChunks]) -> None:
        """The chunks of every document of a commit group, in as few upserts as Chroma's batch limit allows: many
        small files would otherwise pay Chroma's per-call cost (a SQLite transaction, an index update) each."""
        ids: list[str] = []
        texts: list[str] = []
        metadatas: list[dict] = []
        for doc in docs:
            doc_ids = doc.record.chunk_ids()
            if (
                len(doc_ids) != len(doc.texts)
                or len(doc.texts) != len(doc.metadatas)
                or len(doc.vectors) != len(doc_ids)
            ):
                raise ValueError(f"{doc.record.source}: chunk texts, vectors, metadatas and the record disagree")
            ids += doc_ids
            texts += doc.texts
            metadatas += doc.metadatas
        if not ids:
            return
        vectors = np.vstack([np.asarray(doc.vectors, dtype=np.float32) for doc in docs if len(doc.texts)])
        self._upsert(self.store.chunk_collection_name, ids, vectors, texts, metadatas)

    def _upsert(self, name: str, ids: list[str], vectors: Any, texts: list[str], metadatas: list[dict]) -> None:
        """Write chunks into the collection ``name`` (the active one or a staged one): into its language
        partitions when it has the partitioned layout, in batches of Chroma's size limit."""
        store = self.store
        if name == store.chunk_collection_name:
            base, by_language = store._chunks, store.by_language
        else:
            base = store._collection(name)
            by_language = (base.metadata or {}).get("layout") == LAYOUT_BY_LANGUAGE
        vectors = np.asarray(vectors, dtype=np.float32)  # once, not per batch
        groups: dict[Any, list[int]] = {}
        for i, meta in enumerate(metadatas):
            groups.setdefault(part_language(meta) if by_language else None, []).append(i)
        step = max(1, min(PAGE, store._client.get_max_batch_size() if not store.remote else 1000))
        for language, rows in sorted(groups.items(), key=lambda kv: str(kv[0])):
            if language is None:
                target = base
            elif name == store.chunk_collection_name:
                target = store._part(language)
            else:
                with self._chroma("creating a language partition"):
                    target = store._collection(part_name(name, language))
            for start in range(0, len(rows), step):
                part = rows[start : start + step]
                with self._chroma("writing chunks"):
                    target.upsert(
                        ids=[ids[i] for i in part],
                        embeddings=vectors[part],
                        documents=[texts[i] for i in part],
                        metadatas=[metadatas[i] for i in part],
                    )

    def delete_orphans(self, ids: list[str]) -> None:
        """Chunks that no committed document owns (found by the consistency check)."""
        self._delete_chunks(ids)
        self.bump_version()

    def _delete_chunks(self, ids: list[str]) -> None:
        if not ids:
            return
        if self.store.remote:
            # Another machine may have written this document's chunks into a partition made after we looked.
            self.store.reload_layout()
        for member in self.store._members():
            for start in range(0, len(ids), PAGE):
                with self._chroma("deleting old chunks"):
                    member.delete(ids=ids[start : start + PAGE])

    def record_embedder(self, name: str, dim: int, *, by_language: bool = True) -> None:
        """Remember which model made this collection's vectors (first write), refuse another one afterwards. An
        empty collection also takes the partitioned layout here (``by_language=False`` keeps one collection: the
        search benchmark compares the two)."""
        info = self.store.embedder_info()
        if info is None:
            with self._chroma("recording the embedder"):
                meta = dict(self._chunks.metadata or {})
                meta.update(embed_model=name, embed_dim=dim)
                if by_language and self.store.chunk_count_raw() == 0:
                    meta["layout"] = LAYOUT_BY_LANGUAGE
                self._chunks.modify(metadata=meta)
                self.store._load_layout()
        else:
            self.store.require_embedder(name, dim)
            if self.store.remote:  # the first write may have been another machine's, after this session began
                self.store.reload_layout()

    def bump_version(self) -> None:
        version = uuid.uuid4().hex
        with self._chroma("committing"):
            self._docs.upsert(ids=[VERSION_ID], embeddings=[_NO_VECTOR], metadatas=[{"kind": "meta", "value": version}])
        self.store._local_version = version

    def _check_active(self) -> None:
        """With a server, another client may have switched the chunk collection (re-embed) since we opened it."""
        if self.store.remote and self.store._active_name() != self.store.chunk_collection_name:
            raise StoreError(
                f"collection {self.store.name!r} was re-embedded by another client meanwhile; run the command again"
            )

    # -- re-embedding
    def stage_collection(self, embed_name: str, dim: int) -> tuple[str, Any]:
        """The chunk collection a re-embed writes into: resumed if an interrupted one with this embedder exists."""
        retired = self._retired()
        for name in self.store._client.list_collections():
            name = name if isinstance(name, str) else name.name
            if not name.startswith(self.store.name + ".r") or name in retired or PART_SEP in name:
                continue
            if name == self.store.chunk_collection_name:
                continue
            collection = self.store._collection(name)
            meta = collection.metadata or {}
            if meta.get("staged_for") == self.store.chunk_collection_name and meta.get("embed_model") == embed_name:
                return name, collection
        name = f"{self.store.name}.r{new_rev()}"
        collection = self.store._collection(name)
        collection.modify(
            metadata={
                "embed_model": embed_name,
                "embed_dim": dim,
                "staged_for": self.store.chunk_collection_name,
                "layout": LAYOUT_BY_LANGUAGE,
            }
        )
        return name, collection

    def update_languages(self, langs: Mapping[str, str]) -> None:
        """Fill in the chunk languages of records that lack them (written before languages were kept)."""
        records = [r for doc_id in langs if (r := self.store.document(doc_id)) is not None and not r.langs]
        if not records:
            return
        with self._chroma("updating the ledger"):
            self._docs.upsert(
                ids=[r.doc_id for r in records],
                embeddings=[_NO_VECTOR] * len(records),
                metadatas=[{**asdict(r), "langs": langs[r.doc_id], "kind": "doc"} for r in records],
            )

    def staged_ids(self, collection: Any) -> set[str]:
        """Chunk ids already in a staged collection (a re-embed resumes after them)."""
        ids: set[str] = set()
        for member in self.store._all_members(collection.name):
            offset = 0
            while True:
                with self._chroma("reading the staged collection"):
                    got = member.get(include=[], limit=PAGE, offset=offset)
                ids.update(got["ids"])
                if len(got["ids"]) < PAGE:
                    break
                offset += PAGE
        return ids

    def put_staged(
        self, collection: Any, ids: list[str], vectors: Any, texts: list[str], metadatas: list[dict]
    ) -> None:
        self._upsert(collection.name, ids, vectors, texts, metadatas)

    def activate(self, name: str) -> None:
        """Switch readers to another chunk collection in one ledger upsert; the old one is dropped afterwards."""
        previous = self.store.chunk_collection_name
        with self._chroma("switching the chunk collection"):
            self._docs.upsert(
                ids=[RETIRED_ID],
                embeddings=[_NO_VECTOR],
                metadatas=[{"kind": "meta", "value": json.dumps(sorted({*self._retired(), previous}))}],
            )
            self._docs.upsert(ids=[ACTIVE_ID], embeddings=[_NO_VECTOR], metadatas=[{"kind": "meta", "chunks": name}])
        with self.store._swap:
            self.store.chunk_collection_name = name
            self.store._chunks = self.store._collection(name)
        with self._chroma("marking the new chunk collection"):
            meta = {k: v for k, v in (self.store._chunks.metadata or {}).items() if k != "staged_for"}
            self.store._chunks.modify(metadata=meta or None)
            self.store._load_layout()
        self.bump_version()
        self._drop_retired()

    def _retired(self) -> set[str]:
        got = self._docs.get(ids=[RETIRED_ID], include=["metadatas"])
        return set(json.loads(got["metadatas"][0]["value"])) if got["ids"] else set()

    def _drop_retired(self) -> None:
        retired = self._retired()
        if not retired:
            return
        existing = {c if isinstance(c, str) else c.name for c in self.store._client.list_collections()}
        for name in retired:
            if name == self.store.chunk_collection_name:
                continue
            # The retired record stays until every one is gone, so a crash here is finished by the next recover.
            for other in sorted(existing):
                if other == name or other.startswith(name + PART_SEP):
                    with self._chroma("dropping a retired chunk collection"):
                        self.store._client.delete_collection(other)
        with self._chroma("dropping a retired chunk collection"):
            self._docs.delete(ids=[RETIRED_ID])


# ---------------------------------------------------------------------------------------------- the writer lock
def lock_path(settings: Settings) -> Path:
    return settings.store_dir / ".write.lock"


@contextlib.contextmanager
def writer_lock(
    settings: Settings, *, wait: bool = True, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """One writer process per embedded store. Re-entrant within a thread; a no-op for a Chroma server."""
    if settings.chroma_host:
        yield
        return
    from filelock import FileLock, Timeout

    settings.store_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(settings)
    lock = FileLock(str(path))  # a new descriptor per call: exclusive against other threads too
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = describe_holder(path)
        if not wait:
            raise WriterBusy(
                f"{settings.store_dir} is being written by {holder}; wait for it to finish (or run without --no-wait)"
            ) from None
        if on_wait:
            on_wait(holder)
        lock.acquire()
    try:
        _write_holder(path)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.with_suffix(".owner").unlink()
        lock.release()


def _write_holder(path: Path) -> None:
    import sys

    command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:120]
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": time.time()}
    with contextlib.suppress(OSError):
        path.with_suffix(".owner").write_text(json.dumps(info))


def describe_holder(path: Path) -> str:
    try:
        info = json.loads(path.with_suffix(".owner").read_text())
        since = time.strftime("%H:%M:%S", time.localtime(float(info["since"])))
        return f"another process (pid {info['pid']}: {info['command']}, since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _dead_local_owner(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# ---------------------------------------------------------------------------------------------- records
def _rev(record: DocRecord | None) -> str | None:
    return record.rev if record else None


def _n(record: DocRecord | None) -> int:
    return record.n_chunks if record else 0


def _record(meta: Mapping[str, Any]) -> DocRecord:
    return DocRecord(
        doc_id=str(meta["doc_id"]),
        source=str(meta["source"]),
        file_name=str(meta["file_name"]),
        doc_hash=str(meta["doc_hash"]),
        n_chunks=int(meta["n_chunks"]),
        n_pages=int(meta.get("n_pages", 0)),
        ingested_at=float(meta.get("ingested_at", 0.0)),
        rev=str(meta.get("rev") or ""),
        langs=str(meta.get("langs") or ""),
    )


def _intent(meta: Mapping[str, Any]) -> Intent:
    return Intent(
        doc_id=str(meta["doc_id"]),
        new_rev=str(meta.get("new_rev") or "") or None,
        new_n=int(meta.get("new_n") or 0),
        old_rev=str(meta.get("old_rev") or "") or None,
        old_n=int(meta.get("old_n") or 0),
        owner=str(meta.get("owner", "")),
        started_at=float(meta.get("started_at") or 0.0),
    )
