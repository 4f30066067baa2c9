"""A crash at any moment of ingestion leaves a store that the next run completes into exactly what a clean run makes.

The real case: `python -m ingest` killed with SIGKILL at several moments, then re-run to completion, compared with a
clean run of the same folder into another store. A fast in-process variant crashes at a chosen batch.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from ingest.pipeline import Ingestor
from rag.config import Settings
from rag.keyword_index import KeywordIndex, keyword_dir
from rag.models import FakeEmbedder
from rag.store import Store
from tests.conftest import PYTHON, ROOT, cli_env, sentences

N_FILES = 30
COLLECTION = "documents"


def make_corpus(folder: Path, n_files: int = N_FILES, n_sentences: int = 120) -> Path:
    """Distinct files (no duplicate skips) of ~30 chunks each at chunk_size 64: a few seconds of work in all."""
    folder.mkdir(parents=True)
    for i in range(n_files):
        (folder / f"doc_{i:02d}.txt").write_text(sentences(f"topic{i}", n_sentences), encoding="utf-8")
    return folder.resolve()


def small_settings(store_dir: Path, batch: int = 16) -> Settings:
    # the values cli_env gives the subprocess; 16 chunks per batch (the pipeline's minimum): two batches per file
    return Settings(
        _env_file=None, store_dir=store_dir, embed_model="fake", chunk_size=64, chunk_overlap=8, embed_batch_size=batch
    )


def open_store(store_dir: Path) -> Store:
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()  # another process wrote since: no cached segments of an older state
    return Store(small_settings(store_dir))


def store_state(store_dir: Path) -> dict:
    """Everything a search can see, read through the public API, plus the checks that hold after any crash."""
    store = open_store(store_dir)
    records = store.documents()
    got = store.chunks.get(include=["metadatas", "documents"])
    metas = dict(zip(got["ids"], got["metadatas"], strict=True))
    texts = dict(zip(got["ids"], got["documents"], strict=True))

    pairs = Counter((m["doc_id"], m["chunk_index"]) for m in metas.values())
    assert [p for p, n in pairs.items() if n > 1] == [], "duplicate (doc_id, chunk_index)"
    per_doc = Counter(m["doc_id"] for m in metas.values())
    for doc_id, record in records.items():
        assert per_doc[doc_id] == record.n_chunks, f"{record.file_name}: ledger says {record.n_chunks}"
        hashes = {m["doc_hash"] for m in metas.values() if m["doc_id"] == doc_id}
        assert hashes == {record.doc_hash}
    assert store.orphan_doc_ids() == set()

    committed = {cid for cid, m in metas.items() if m["doc_id"] in records}
    index = KeywordIndex.sync(store, keyword_dir(store.settings))
    assert index.fingerprint == store.fingerprint()
    assert set(index.ids) == committed and len(index.ids) == len(committed)
    saved = KeywordIndex.load(keyword_dir(store.settings))
    assert saved is not None and set(saved.ids) == committed  # the cache on disk, not only in memory

    # the vector index answers and only with stored ids (HNSW replayed after the kill)
    probe = FakeEmbedder().embed(["topic2 manual case number 3"])[0].tolist()
    hits = store.chunks.query(query_embeddings=[probe], n_results=5, include=["metadatas"])
    assert len(hits["ids"][0]) == 5 and set(hits["ids"][0]) <= set(metas)
    assert any(m["file_name"] == "doc_02.txt" for m in hits["metadatas"][0])

    return {
        "chunk_ids": set(metas),
        "texts": texts,
        "documents": {r.doc_id: (r.source, r.file_name, r.doc_hash, r.n_chunks, r.n_pages) for r in records.values()},
        "count": store.count_chunks(),
    }


def sql_counts(store_dir: Path, after_kill: bool = False) -> tuple[int, int]:
    """(chunks, ledger records) read from Chroma's SQLite tables; (-1, -1) if unreadable right now.

    Used to time the kills and to describe where they landed; every assertion on the result uses the public API.
    While the ingest runs, a read-only connection reads beside it. After a kill, a transaction it had open leaves a
    hot journal that only a writer can roll back, so the files are copied and the copy is opened instead.
    """
    db = store_dir / "chroma.sqlite3"
    if not db.exists():
        return -1, -1
    if after_kill:
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("chroma.sqlite3", "chroma.sqlite3-journal"):
                if (store_dir / name).exists():
                    shutil.copy(store_dir / name, Path(tmp) / name)
            return _counts(f"file:{Path(tmp) / 'chroma.sqlite3'}")
    return _counts(f"file:{db}?mode=ro")


def _counts(uri: str) -> tuple[int, int]:
    query = (
        "SELECT count(*) FROM embeddings e JOIN segments s ON e.segment_id = s.id "
        "JOIN collections c ON s.collection = c.id WHERE c.name = ? AND s.scope = 'METADATA'"
    )
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=2)) as con:
            return (
                con.execute(query, (COLLECTION,)).fetchone()[0],
                con.execute(query, (COLLECTION + ".docs",)).fetchone()[0],
            )
    except sqlite3.Error:
        return -1, -1


def kill_while_writing(docs: Path, store_dir: Path, delay: float, per_doc: int) -> tuple[bool, int, int]:
    """Start an ingest, wait until it has written new chunks, let it run ``delay`` s more, then SIGKILL it;
    with ``delay=0``, kill it the moment a document is half-written (chunks in, ledger record not yet).

    Returns (killed before it finished, chunks, ledger records) as found after the kill.
    """
    before, _ = sql_counts(store_dir, after_kill=True)
    proc = subprocess.Popen(
        [PYTHON, "-m", "ingest", str(docs), "--json"],
        cwd=ROOT,
        env=cli_env(store_dir, RAG_EMBED_BATCH_SIZE="16"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            chunks, records = sql_counts(store_dir)
            if chunks > max(before, 0) and (delay or chunks != per_doc * records):
                break
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)  # does nothing if it has exited already
        proc.wait(timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    killed = proc.returncode == -signal.SIGKILL
    assert killed or proc.returncode == 0, proc.returncode
    chunks, records = sql_counts(store_dir, after_kill=True)
    return killed, chunks, records


@pytest.mark.slow  # ~15 s of CPU in four processes; 20-30 s wall on a busy 2-core machine
def test_sigkill_at_several_moments_then_rerun_equals_a_clean_run(tmp_path: Path, rag_env) -> None:
    docs = make_corpus(tmp_path / "docs")
    clean_store, crashed = tmp_path / "clean-store", tmp_path / "crashed-store"
    # the clean run embeds 64 chunks per batch: chunk ids must not depend on how the work was batched
    clean_report = Ingestor(small_settings(clean_store, batch=64)).ingest_paths([docs])
    assert [r.status for r in clean_report.results] == ["ingested"] * N_FILES
    per_doc = clean_report.results[0].chunks
    assert {r.chunks for r in clean_report.results} == {per_doc} and per_doc > 16  # two batches or more per file

    kills = [kill_while_writing(docs, crashed, delay, per_doc) for delay in (0, 1.0)]
    assert all(chunks >= 0 and records >= 0 for _, chunks, records in kills), kills
    mid_run = [k for k in kills if k[0]]
    assert mid_run, f"every run finished before it could be killed: {kills}; make the corpus larger"
    half_written = [k for k in mid_run if k[1] != per_doc * k[2]]
    assert half_written, f"no kill landed inside a document: {kills}"

    final = subprocess.run(
        [PYTHON, "-m", "ingest", str(docs), "--json"],
        cwd=ROOT,
        env=cli_env(crashed, RAG_EMBED_BATCH_SIZE="16"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout)
    assert summary["failed"] == []
    assert summary["ingested"] + summary["skipped"] == N_FILES
    assert summary["skipped"] == kills[-1][2]  # every committed document is kept, the others are (re)done

    got, want = store_state(crashed), store_state(clean_store)
    assert got["documents"] == want["documents"]
    assert got["chunk_ids"] == want["chunk_ids"]
    assert got["texts"] == want["texts"]
    assert got["count"] == want["count"] == summary["chunks"]


class CrashingEmbedder(FakeEmbedder):
    """Dies in the middle of a document, like a kill between two batches."""

    def __init__(self, crash_on_call: int) -> None:
        self.calls = 0
        self.crash_on_call = crash_on_call

    def embed(self, texts: list[str]):
        self.calls += 1
        if self.calls == self.crash_on_call:
            raise KeyboardInterrupt
        return super().embed(texts)


@pytest.mark.parametrize("crash_on_call", [1, 2, 5])
def test_interrupted_batch_is_completed_by_the_next_run(tmp_path: Path, rag_env, crash_on_call: int) -> None:
    docs = make_corpus(tmp_path / "docs", n_files=4, n_sentences=120)  # 2 batches of 16 chunks per file
    crashed, clean = tmp_path / "crashed", tmp_path / "clean"

    with pytest.raises(KeyboardInterrupt):
        Ingestor(small_settings(crashed), embedder=CrashingEmbedder(crash_on_call)).ingest_paths([docs])
    partial = open_store(crashed)
    committed = len(partial.documents())
    assert committed == (crash_on_call - 1) // 2  # every file before the crash, not the one it was in
    assert partial.count_chunks() == 16 * ((crash_on_call - 1) % 2) + sum(
        r.n_chunks for r in partial.documents().values()
    )

    report = Ingestor(small_settings(crashed), embedder=FakeEmbedder()).ingest_paths([docs])
    assert [r.status for r in report.results] == ["skipped"] * committed + ["ingested"] * (4 - committed)
    Ingestor(small_settings(clean), embedder=FakeEmbedder()).ingest_paths([docs])
    got, want = store_state(crashed), store_state(clean)
    assert (got["documents"], got["chunk_ids"], got["texts"]) == (want["documents"], want["chunk_ids"], want["texts"])
