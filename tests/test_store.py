"""rag/store.py: the write order (intent, chunks, ledger, cleanup), recovery, the writer lock, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import Ingestor
from rag.config import Settings
from rag.embedders import FakeEmbedder
from rag.errors import ConfigError, StoreError, WriterBusy
from rag.store import INTENT, DocRecord, NewChunks, Store, chunk_id, new_rev, writer_lock
from tests.conftest import ROOT, raw_chunks, sentences


def new_doc(doc_id: str, texts: list[str], doc_hash: str = "h" * 64) -> NewChunks:
    record = DocRecord(doc_id, f"/docs/{doc_id}.txt", f"{doc_id}.txt", doc_hash, len(texts), 0, time.time(), new_rev())
    metadatas = [
        {"doc_id": doc_id, "rev": record.rev, "doc_hash": doc_hash, "chunk_index": i, "source": record.source,
         "file_name": record.file_name, "lang": "en"}
        for i in range(len(texts))
    ]  # fmt: skip
    return NewChunks(record, texts, FakeEmbedder().embed_passages(texts), metadatas)


def visible_texts(store: Store) -> dict[str, list[str]]:
    return {r.doc_id: [c.text for c in store.document_chunks(r)] for r in store.documents().values()}


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings)


def test_commit_replace_and_remove_leave_exactly_the_visible_version(store: Store) -> None:
    with store.writer() as session:
        first = new_doc("a", ["old one", "old two"])
        session.commit([first])
    assert visible_texts(store) == {"a": ["old one", "old two"]}
    version = store.version()

    with store.writer() as session:
        second = new_doc("a", ["new one"])
        session.commit([second], old={"a": first.record})
    assert visible_texts(store) == {"a": ["new one"]}
    assert {cid for cid, _, _ in raw_chunks(store)} == {chunk_id("a", second.record.rev, 0)}  # old chunks deleted
    assert store.version() != version and store.intents() == []

    with store.writer() as session:
        session.commit([], removals=[store.document("a")])
    assert store.documents() == {} and raw_chunks(store) == [] and store.count_chunks() == 0


def test_a_crash_after_writing_chunks_keeps_the_old_version_and_recovery_deletes_the_new(store: Store) -> None:
    with store.writer() as session:
        old = new_doc("a", ["old text"])
        session.commit([old])
        new = new_doc("a", ["new text", "more new text"])
        # the first two steps of commit(), then "the process dies"
        session._put_intents([session._intent("a", new.record, old.record)])
        session._put_chunks([new])
    assert visible_texts(store) == {"a": ["old text"]}  # readers never see the half-written version
    assert store.count_chunks() == 1 and len(raw_chunks(store)) == 3
    assert [i.doc_id for i in store.intents()] == ["a"]
    with store.writer():  # the next writer repairs first
        pass
    assert len(raw_chunks(store)) == 1 and store.intents() == []
    assert visible_texts(store) == {"a": ["old text"]}


def test_a_crash_after_the_ledger_switch_keeps_the_new_version_and_recovery_deletes_the_old(store: Store) -> None:
    with store.writer() as session:
        old = new_doc("a", ["old text"])
        session.commit([old])
        new = new_doc("a", ["new text"])
        session._put_intents([session._intent("a", new.record, old.record)])
        session._put_chunks([new])
        session._docs.upsert(ids=["a"], embeddings=[[0.0]], metadatas=[{**new.record.__dict__, "kind": "doc"}])
    assert visible_texts(store) == {"a": ["new text"]}
    with store.writer() as session:
        assert session.store.intents() == []  # settled on entry
    assert [t for _, _, t in raw_chunks(store)] == ["new text"]


def test_a_crash_during_a_remove_is_finished_by_the_next_writer(store: Store) -> None:
    with store.writer() as session:
        doc = new_doc("a", ["text"])
        session.commit([doc])
        session._put_intents([session._intent("a", None, doc.record)])
        session._docs.delete(ids=["a"])
    assert store.documents() == {} and len(raw_chunks(store)) == 1
    with store.writer():
        pass
    assert raw_chunks(store) == []


def test_legacy_records_without_a_revision_stay_visible(store: Store) -> None:
    """Stores written before revisions existed: chunk ids carry the hash prefix, records have no rev."""
    doc_hash = "c0ffee" * 10 + "abcd"
    legacy = DocRecord("old", "/docs/old.txt", "old.txt", doc_hash, 1, 0, 0.0)
    assert legacy.rev == doc_hash[:12] and legacy.chunk_ids() == [f"old-{doc_hash[:12]}-00000"]
    store._chunks.upsert(
        ids=legacy.chunk_ids(), embeddings=FakeEmbedder().embed_passages(["legacy text"]), documents=["legacy text"],
        metadatas=[{"doc_id": "old", "doc_hash": doc_hash, "chunk_index": 0, "tokens": "legacy text"}],
    )  # fmt: skip
    meta = {k: v for k, v in legacy.__dict__.items() if k != "rev"}
    store._docs.upsert(ids=["old"], embeddings=[[0.0]], metadatas=[meta])
    assert visible_texts(store) == {"old": ["legacy text"]}
    hits = store.query(FakeEmbedder().embed_query("legacy text"), 3, {"old": legacy.rev})
    assert [h.text for h in hits] == ["legacy text"]


def test_dense_query_skips_uncommitted_chunks_without_losing_committed_ones(store: Store) -> None:
    with store.writer() as session:
        kept = new_doc("kept", [f"walrus fact number {i}" for i in range(5)])
        session.commit([kept])
        pending = new_doc("pending", [f"walrus fact number {i} draft" for i in range(10)])
        session._put_chunks([pending])  # written, never committed: closer to the query than most committed ones
    visible = {"kept": kept.record.rev}
    hits = store.query(FakeEmbedder().embed_query("walrus fact number draft"), 5, visible)
    assert len(hits) == 5 and {h.doc_id for h in hits} == {"kept"}


def test_readonly_open_of_a_missing_collection_names_it_and_creates_nothing(settings: Settings) -> None:
    Store(settings)  # "documents" exists
    typo = settings.model_copy(update={"collection": "documnets"})
    with pytest.raises(ConfigError, match=r"there is no collection .documnets.*existing: documents"):
        Store(typo, create=False)
    assert Store(settings).list_collections() == ["documents"]


def test_chroma_failures_after_connecting_become_one_line_store_errors(store: Store) -> None:
    class Broken:
        def get(self, **_kwargs):
            raise ConnectionResetError("Connection reset by peer\nsecond line of a traceback")

    store._docs = Broken()
    with pytest.raises(StoreError) as info:
        store.documents()
    message = str(info.value)
    assert "\n" not in message and "reading the ledger" in message and "Connection reset by peer" in message


def test_the_writer_lock_excludes_other_threads(settings: Settings) -> None:
    with writer_lock(settings), pytest.raises(WriterBusy), writer_lock(settings, wait=False):
        pass


def test_a_second_process_waits_for_the_writer_or_fails_fast_naming_it(settings: Settings) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from rag.config import Settings
        from rag.store import writer_lock
        from rag.errors import WriterBusy
        settings = Settings(_env_file=None, store_dir={str(settings.store_dir)!r}, embed_model="fake")
        try:
            with writer_lock(settings, wait=sys.argv[1] == "wait", on_wait=lambda who: print("waiting:", who)):
                print("got the lock")
        except WriterBusy as exc:
            print("busy:", exc)
        """
    )

    def child(mode: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-c", script, mode], cwd=ROOT, stdout=subprocess.PIPE, text=True)

    with writer_lock(settings):
        fast = child("no-wait")
        out, _ = fast.communicate(timeout=60)
        assert out.startswith("busy:") and f"pid {os.getpid()}" in out and out.count("\n") == 1
        patient = child("wait")
        time.sleep(3)
        assert patient.poll() is None  # still waiting while we hold the lock
    out, _ = patient.communicate(timeout=60)
    assert out.splitlines()[0].startswith("waiting: another process (pid") and out.splitlines()[1] == "got the lock"


def test_intent_records_are_not_documents(store: Store) -> None:
    with store.writer() as session:
        session.commit([new_doc("a", ["x"])])
        session._put_intents([session._intent("b", new_doc("b", ["y"]).record, None)])
    assert set(store.documents()) == {"a"}
    assert store._docs.get(ids=[INTENT + "b"])["ids"] == [INTENT + "b"]
    assert store.count_chunks() == 1
    first = chunk_id("a", store.document("a").rev, 0)
    assert np.isclose(float(np.linalg.norm(store.get_vectors([first])[first])), 1.0)


def test_a_client_behind_another_writer_reads_the_vectors_it_can(settings: Settings, docs_dir: Path, write_doc) -> None:
    """Chroma fails a batch read ("Error finding id") on a client opened before another process's write: the store
    marks itself stale (reopened at the next refresh) and returns the vectors it can read instead of failing."""
    write_doc("a.md", sentences("alpha", 30))
    store = Store(settings)
    Ingestor(settings, store, FakeEmbedder()).ingest_paths([docs_dir])
    record = next(iter(store.documents().values()))
    ids = record.chunk_ids()
    assert store.by_language and set(store._parts) == {"en"}
    real = store._parts["en"]

    class Behind:
        def __getattr__(self, name):
            return getattr(real, name)

        def get(self, ids=None, **kwargs):
            if ids and "written-by-another-process" in ids:
                raise RuntimeError("Error executing plan: Internal error: Error finding id")
            return real.get(ids=ids, **kwargs)

    store._parts = {"en": Behind()}
    assert not store.stale
    got = store.get_vectors([*ids, "written-by-another-process"])
    assert set(got) == set(ids) and store.stale
    fresh = Store(settings)
    assert all(np.allclose(got[cid], vec) for cid, vec in fresh.get_vectors(ids).items())
