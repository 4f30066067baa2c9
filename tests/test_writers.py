"""Several writers on one embedded store: real processes wait for each other, nothing is lost or left half-written."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from ingest.check import check_store
from ingest.pipeline import Ingestor
from rag.config import PACKAGED_MINILM, Settings
from rag.embedders import FakeEmbedder
from rag.keyword_sync import open_keyword_index
from rag.service import RagService
from rag.store import Store, fresh_client
from tests.conftest import PYTHON, ROOT, cli_env, sentences


def corpus(folder: Path, topic: str, n_files: int, n_sentences: int = 150) -> Path:
    folder.mkdir(parents=True)
    for i in range(n_files):
        (folder / f"{topic}-{i:02d}.txt").write_text(sentences(f"{topic}{i}", n_sentences), encoding="utf-8")
    return folder.resolve()


def start_ingest(store_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, "-m", "ingest", *args, "--json"], cwd=ROOT, env=cli_env(store_dir, RAG_EMBED_BATCH_SIZE="16"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_writer(store_dir: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until ``process`` holds the store's writer lock (it writes the holder file when it takes the lock)."""
    owner = store_dir / ".write.owner"
    deadline = time.monotonic() + timeout
    while not owner.exists():
        assert process.poll() is None and time.monotonic() < deadline, "the first ingest never took the lock"
        time.sleep(0.02)


def state(store_dir: Path) -> tuple[dict, dict]:
    """(documents, texts) as search sees them, after checking that --check finds nothing."""
    settings = Settings(_env_file=None, store_dir=store_dir, embed_model="fake", chunk_size=64, chunk_overlap=8)
    store = Store(settings, fresh_client(settings))
    report = check_store(store, open_keyword_index(settings), check_files=False)
    assert report.clean, [str(p) for p in report.problems]
    records = store.documents()
    documents = {r.doc_id: (r.source, r.doc_hash, r.n_chunks) for r in records.values()}
    texts = {(r.doc_id, c.meta["chunk_index"]): c.text for r in records.values() for c in store.document_chunks(r)}
    return documents, texts


@pytest.mark.slow
def test_two_ingest_processes_on_one_embedded_store(tmp_path: Path, rag_env) -> None:
    otters, herons = corpus(tmp_path / "otters", "otter", 12), corpus(tmp_path / "herons", "heron", 12)
    shared, clean = tmp_path / "shared", tmp_path / "clean"
    first = start_ingest(shared, str(otters))
    wait_for_writer(shared, first)
    second = start_ingest(shared, str(herons))
    outputs = [first.communicate(timeout=300), second.communicate(timeout=300)]
    assert [first.returncode, second.returncode] == [0, 0], [err for _, err in outputs]
    assert "waiting for another process (pid" in outputs[1][1]  # it said why it was not starting
    assert [json.loads(out)["ingested"] for out, _ in outputs] == [12, 12]
    Ingestor(Settings(_env_file=None, store_dir=clean, embed_model="fake", chunk_size=64, chunk_overlap=8),
             embedder=FakeEmbedder()).ingest_paths([otters, herons])  # fmt: skip
    assert state(shared) == state(clean)


@pytest.mark.slow
def test_prune_during_an_ingest_waits_and_loses_nothing(tmp_path: Path, rag_env) -> None:
    """The review's case: `--prune` of a folder while another process is still writing a document of it."""
    folder = corpus(tmp_path / "docs", "walrus", 3, n_sentences=40)
    store_dir, clean = tmp_path / "store", tmp_path / "clean"
    assert start_ingest(store_dir, str(folder)).wait(timeout=300) == 0
    big = folder / "big.txt"
    big.write_text(sentences("narwhal", 3000), encoding="utf-8")  # hundreds of chunks: a long write
    writer = start_ingest(store_dir, str(folder))
    wait_for_writer(store_dir, writer)
    pruner = start_ingest(store_dir, str(folder), "--prune")
    outputs = [writer.communicate(timeout=600), pruner.communicate(timeout=600)]
    assert [writer.returncode, pruner.returncode] == [0, 0], [err for _, err in outputs]
    assert json.loads(outputs[1][0])["failed"] == []
    Ingestor(Settings(_env_file=None, store_dir=clean, embed_model="fake", chunk_size=64, chunk_overlap=8),
             embedder=FakeEmbedder()).ingest_paths([folder])  # fmt: skip
    documents, texts = state(store_dir)
    assert (documents, texts) == state(clean)  # the big document is complete, nothing pruned that exists


def test_a_failed_re_read_keeps_the_old_version_searchable(settings: Settings, docs_dir: Path, write_doc) -> None:
    path = write_doc("notes.txt", sentences("pelican", 12))
    ingestor = Ingestor(settings, embedder=FakeEmbedder())
    ingestor.ingest_paths([docs_dir])
    before = {c.text for r in ingestor.store.documents().values() for c in ingestor.store.document_chunks(r)}
    path.write_bytes(bytes(range(256)) * 40)  # the file changed into something unreadable
    [result] = ingestor.ingest_paths([docs_dir]).results
    assert (result.status, result.reason) == ("failed", "binary content, not text")
    store = ingestor.store
    [record] = store.documents().values()
    assert {c.text for c in store.document_chunks(record)} == before  # still there, still complete
    hits = RagService(settings, store=store, embedder=FakeEmbedder()).retriever.search("pelican manual case 3")
    assert hits and hits[0].file_name == "notes.txt"


def test_a_minilm_collection_keeps_working_and_says_what_to_do(settings: Settings) -> None:
    auto = settings.model_copy(update={"embed_model": "auto"})
    with Store(auto).writer() as session:
        session.record_embedder("all-MiniLM-L6-v2", 384)  # what a collection from before e5 records
    service = RagService(auto)
    assert service.embedder_setting == PACKAGED_MINILM  # queries keep using the model that built it
    assert "python -m ingest --reembed" in (service.notice or "") and "English-only" in service.notice
    fresh = RagService(auto.model_copy(update={"collection": "fresh"}))
    assert fresh.embedder_setting == "packaged:multilingual-e5-small" and fresh.notice is None


HOLD_LOCK = """
import sys, time
from pathlib import Path
from rag.config import Settings
from rag.store import writer_lock
with writer_lock(Settings(_env_file=None, store_dir=Path(sys.argv[1]), embed_model="fake")):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.mark.slow
def test_a_reader_keeps_answering_while_another_process_still_writes(tmp_path: Path, rag_env) -> None:
    """A reader whose Chroma client predates another process's commit cannot reopen it while that process still
    holds the writer lock. Its searches must still work (no "Error finding id" from Chroma's metadata filter) on the
    documents it could see, in both languages, and it sees the new ones once the writer is done."""
    store_dir = tmp_path / "store"
    first = corpus(tmp_path / "first", "otter", 3)
    (first / "鸟.txt").write_text("白鹭是一种水鸟。" * 40, encoding="utf-8")
    settings = Settings(_env_file=None, store_dir=store_dir, embed_model="fake", chunk_size=64, chunk_overlap=8,
                        min_relevance=0.0)  # fmt: skip
    service = RagService(settings)
    Ingestor(settings, service.store, service.embedder).ingest_paths([first])
    assert service.retriever.search("otter manual", 3)
    more = corpus(tmp_path / "more", "heron", 6)
    (more / "鱼.txt").write_text("鲤鱼生活在淡水中，喜欢温暖的水。" * 40, encoding="utf-8")
    done = subprocess.run([PYTHON, "-m", "ingest", str(more), "--json"], cwd=ROOT, env=cli_env(store_dir),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr

    def found(question: str, wanted: str) -> bool:
        return any(wanted in hit.source for hit in service.retriever.search(question, 5))

    holder = subprocess.Popen([PYTHON, "-c", HOLD_LOCK, str(store_dir)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        service.retriever.refresh(force=True)
        assert service.store.stale  # it could not reopen: the other process holds the store
        assert found("otter1 manual case", "otter-01") and found("白鹭是什么", "鸟.txt")
        assert found("which case does otter2 handle", "otter-02")  # an English question: Chinese chunks searched too
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    service.retriever.refresh(force=True)
    assert not service.store.stale  # the writer is gone: reopened
    assert found("heron3 manual case", "heron-03") and found("鲤鱼生活在哪里", "鱼.txt")
