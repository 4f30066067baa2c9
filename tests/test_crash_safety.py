"""A crash at any moment leaves a store that the next run repairs into exactly what a clean run makes.

The real cases: `python -m ingest` killed with SIGKILL while it ingests, replaces, removes and updates the keyword
index (at exact steps, through tests/crash_helper.py), then `--check` and a re-run, compared with a clean run of the
same files into another store. A fast in-process variant crashes at a chosen embedding batch.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ingest.check import check_store
from ingest.pipeline import Ingestor
from rag.config import Settings
from rag.embedders import FakeEmbedder
from rag.keyword_sync import open_keyword_index
from rag.store import Store, fresh_client
from rag.tokenize import keyword_tokens
from tests.conftest import PYTHON, ROOT, cli_env, raw_chunks, sentences

N_FILES = 30


def make_corpus(folder: Path, n_files: int = N_FILES, n_sentences: int = 120, topic: str = "topic") -> Path:
    """Distinct files (no duplicate skips) of ~30 chunks each at chunk_size 64: a few seconds of work in all."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        (folder / f"doc_{i:02d}.txt").write_text(sentences(f"{topic}{i}", n_sentences), encoding="utf-8")
    return folder.resolve()


def small_settings(store_dir: Path, batch: int = 16) -> Settings:
    # the values cli_env gives the subprocess
    return Settings(
        _env_file=None, store_dir=store_dir, embed_model="fake", chunk_size=64, chunk_overlap=8, embed_batch_size=batch
    )


def open_store(store_dir: Path) -> Store:
    settings = small_settings(store_dir)
    return Store(settings, fresh_client(settings))  # another process wrote since: no cached view of an older state


def content(store_dir: Path, *, clean: bool = True) -> dict:
    """What a search can see, read through the public API; with ``clean``, also that --check finds nothing."""
    store = open_store(store_dir)
    records = store.documents()
    texts = {}
    for record in records.values():
        chunks = store.document_chunks(record)
        assert len(chunks) == record.n_chunks, record.source
        for chunk in chunks:
            texts[(record.doc_id, chunk.meta["chunk_index"])] = chunk.text
    if clean:
        index = open_keyword_index(store.settings)
        report = check_store(store, index, check_files=False)
        assert report.clean, [str(p) for p in report.problems]
        # the vector index answers with committed chunks only (HNSW replayed after the kill)
        visible = {d: r.rev for d, r in records.items()}
        probe = FakeEmbedder().embed_query("topic2 manual case number 3")
        hits = store.query(probe, 5, visible)
        assert len(hits) == min(5, sum(r.n_chunks for r in records.values()))
        index.close()
    return {
        "documents": {r.doc_id: (r.source, r.file_name, r.doc_hash, r.n_chunks, r.n_pages) for r in records.values()},
        "texts": texts,
        "count": store.count_chunks(),
    }


def run_ingest(store_dir: Path, *args: str, step: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [PYTHON, "-m", "tests.crash_helper", step] if step else [PYTHON, "-m", "ingest"]
    return subprocess.run(
        [*command, *args, "--json"],
        cwd=ROOT,
        env=cli_env(store_dir, RAG_EMBED_BATCH_SIZE="16"),
        capture_output=True,
        text=True,
        timeout=300,
    )


def stored_ids(store_dir: Path) -> int:
    return len(raw_chunks(open_store(store_dir)))


def keyword_finds(store_dir: Path, word: str) -> bool:
    index = open_keyword_index(small_settings(store_dir))
    try:
        return bool(index.search(keyword_tokens(word), 5))
    finally:
        index.close()


# ---------------------------------------------------------------------------------------------- kills at exact steps
@pytest.mark.slow
@pytest.mark.parametrize("step", ["chunks-written", "ledger-switched", "keyword-update"])
def test_kill_during_replace_keeps_one_version_and_the_rerun_repairs(tmp_path: Path, rag_env, step: str) -> None:
    docs = make_corpus(tmp_path / "docs", n_files=3, n_sentences=40, topic="walrus")
    crashed, clean = tmp_path / "crashed", tmp_path / "clean"
    assert run_ingest(crashed, str(docs)).returncode == 0
    make_corpus(docs, n_files=3, n_sentences=40, topic="narwhal")  # every file changes

    killed = run_ingest(crashed, str(docs), step=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # Right after the kill: exactly one version of each document is visible, never a mix.
    after_kill = content(crashed, clean=False)
    texts = " ".join(after_kill["texts"].values())
    if step == "chunks-written":
        assert "walrus" in texts and "narwhal" not in texts  # the old version is still what search sees
    else:
        assert "narwhal" in texts  # the switch happened before the kill
    assert after_kill["count"] == sum(n for *_, n, _ in after_kill["documents"].values())
    problems = check_store(open_store(crashed), open_keyword_index(small_settings(crashed)), check_files=False)
    assert not problems.clean  # leftovers or a lagging keyword index are reported, with the fix
    assert all("python -m ingest" in p.fix or "search" in p.fix for p in problems.problems)

    rerun = run_ingest(crashed, str(docs))
    assert rerun.returncode == 0, rerun.stderr
    assert run_ingest(clean, str(docs)).returncode == 0
    got, want = content(crashed), content(clean)
    assert (got["documents"], got["texts"]) == (want["documents"], want["texts"])
    assert stored_ids(crashed) == got["count"]  # no old or half-written chunk left anywhere
    assert not keyword_finds(crashed, "walrus0") and keyword_finds(crashed, "narwhal0")


@pytest.mark.slow
def test_kill_during_remove_is_finished_by_the_next_run(tmp_path: Path, rag_env) -> None:
    docs = make_corpus(tmp_path / "docs", n_files=3, n_sentences=40)
    store_dir = tmp_path / "store"
    assert run_ingest(store_dir, str(docs)).returncode == 0
    victim = docs / "doc_01.txt"

    killed = run_ingest(store_dir, "--remove", str(victim), step="ledger-switched")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    state = content(store_dir, clean=False)
    assert str(victim) not in {source for source, *_ in state["documents"].values()}  # gone from search already
    assert stored_ids(store_dir) > state["count"]  # its chunks are still stored

    again = run_ingest(store_dir, "--remove", str(victim))
    assert again.returncode == 1 and "not in the store" in again.stderr  # already removed: says so
    final = content(store_dir)  # and the run repaired the leftovers first: --check is clean
    assert stored_ids(store_dir) == final["count"]
    assert not keyword_finds(store_dir, "topic1")


# ---------------------------------------------------------------------------------------------- kills at random moments
def kill_mid_run(docs: Path, store_dir: Path, delay: float) -> bool:
    """Start an ingest, wait until it has written chunks, let it run ``delay`` s more, then SIGKILL it."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "ingest", str(docs), "--json"],
        cwd=ROOT,
        env=cli_env(store_dir, RAG_EMBED_BATCH_SIZE="16"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        marker = store_dir / "chroma.sqlite3"
        while proc.poll() is None and time.monotonic() < deadline and not marker.exists():
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)  # does nothing if it has exited already
        proc.wait(timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, -signal.SIGKILL), proc.returncode
    return proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_at_several_moments_then_rerun_equals_a_clean_run(tmp_path: Path, rag_env) -> None:
    docs = make_corpus(tmp_path / "docs")
    clean_store, crashed = tmp_path / "clean-store", tmp_path / "crashed-store"
    # the clean run embeds 64 chunks per batch: what is stored must not depend on how the work was batched
    clean_report = Ingestor(small_settings(clean_store, batch=64)).ingest_paths([docs])
    assert [r.status for r in clean_report.results] == ["ingested"] * N_FILES

    kills = [kill_mid_run(docs, crashed, delay) for delay in (0.5, 2.0, 4.0)]
    assert any(kills), "every run finished before it could be killed; make the corpus larger"

    final = run_ingest(crashed, str(docs))
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout)
    assert summary["failed"] == [] and summary["ingested"] + summary["skipped"] == N_FILES
    got, want = content(crashed), content(clean_store)
    assert (got["documents"], got["texts"]) == (want["documents"], want["texts"])
    assert got["count"] == want["count"] == summary["chunks"] == stored_ids(crashed)


class CrashingEmbedder(FakeEmbedder):
    """Dies in the middle of a run, like a kill between two batches."""

    def __init__(self, crash_on_call: int) -> None:
        self.calls = 0
        self.crash_on_call = crash_on_call

    def embed_passages(self, texts: list[str]):
        self.calls += 1
        if self.calls == self.crash_on_call:
            raise KeyboardInterrupt
        return super().embed_passages(texts)


@pytest.mark.parametrize("crash_on_call", [1, 2, 5])
def test_interrupted_batch_is_completed_by_the_next_run(tmp_path: Path, rag_env, crash_on_call: int) -> None:
    docs = make_corpus(tmp_path / "docs", n_files=4, n_sentences=120)  # 2 batches of 16 chunks per file
    crashed, clean = tmp_path / "crashed", tmp_path / "clean"

    with pytest.raises(KeyboardInterrupt):
        Ingestor(small_settings(crashed), embedder=CrashingEmbedder(crash_on_call)).ingest_paths([docs])
    partial = open_store(crashed)
    committed = len(partial.documents())
    assert stored_ids(crashed) == partial.count_chunks()  # nothing written that is not committed

    report = Ingestor(small_settings(crashed), embedder=FakeEmbedder()).ingest_paths([docs])
    assert sorted(r.status for r in report.results) == sorted(["skipped"] * committed + ["ingested"] * (4 - committed))
    Ingestor(small_settings(clean), embedder=FakeEmbedder()).ingest_paths([docs])
    got, want = content(crashed), content(clean)
    assert (got["documents"], got["texts"]) == (want["documents"], want["texts"])
