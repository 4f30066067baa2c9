"""Ingestion against a real Chroma server (`chroma run`), the client-server setup of RAG_CHROMA_HOST/RAG_CHROMA_PORT."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.pipeline import Ingestor
from rag.config import Settings
from rag.embedders import FakeEmbedder
from rag.errors import StoreError
from rag.keyword_sync import keyword_index_path, open_keyword_index
from rag.retrieve import Retriever
from rag.store import DOCS_SUFFIX, Store, doc_id_for
from tests.conftest import PYTHON, ROOT, WriteDoc, cli_env, sentences
from tests.servers import free_port, stop_server

CHROMA = Path(sys.executable).with_name("chroma")


def heartbeat(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def chroma_server(folder: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    """A real `chroma run` on 127.0.0.1 with its data in ``folder``, stopped afterwards."""
    if not CHROMA.exists():
        pytest.skip(f"no chroma executable at {CHROMA}")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "chroma.log").open("w")
    server = subprocess.Popen(
        [str(CHROMA), "run", "--path", str(folder / "data"), "--port", str(port), "--host", "127.0.0.1"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not heartbeat(port):
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"chroma run did not come up: {(folder / 'chroma.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield port, server
    finally:
        stop_server(server, timeout=10)
        log.close()


@pytest.fixture
def chroma_port(tmp_path: Path) -> Iterator[int]:
    with chroma_server(tmp_path / "server") as (port, _server):
        yield port


@pytest.mark.slow
def test_ingest_into_a_chroma_server(chroma_port: int, settings: Settings, write_doc: WriteDoc, docs_dir: Path) -> None:
    remote = settings.model_copy(update={"chroma_host": "127.0.0.1", "chroma_port": chroma_port})
    walrus = write_doc("walrus.txt", sentences("walrus", 12))
    pelican = write_doc("pelican.md", "# Pelicans\n\nThe pelican stores fish in the pouch under its beak.")

    report = Ingestor(remote, embedder=FakeEmbedder()).ingest_paths([docs_dir])
    assert [r.status for r in report.results] == ["ingested", "ingested"]
    n_walrus = next(r.chunks for r in report.results if r.path.endswith("walrus.txt"))
    assert n_walrus >= 3
    assert not (settings.store_dir / "chroma.sqlite3").exists()  # nothing went to the embedded store

    # seen by a fresh client of the server, not through our objects
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.HttpClient(
        host="127.0.0.1", port=chroma_port, settings=ChromaSettings(anonymized_telemetry=False)
    )
    base = client.get_collection(settings.collection)
    assert base.metadata["layout"] == "by-language" and base.count() == 0  # the chunks are in language partitions
    names = sorted(c.name for c in client.list_collections())
    assert [n for n in names if n.startswith(settings.collection + "--")] == [settings.collection + "--en"]
    chunks = client.get_collection(settings.collection + "--en")
    ledger = client.get_collection(settings.collection + DOCS_SUFFIX)
    assert chunks.count() == n_walrus + 1 == report.chunks_total
    documents = [i for i in ledger.get()["ids"] if ":" not in i]  # meta:version and the like are not documents
    assert sorted(documents) == sorted([doc_id_for(str(walrus)), doc_id_for(str(pelican))])
    got = chunks.get(where={"doc_id": doc_id_for(str(walrus))}, include=["metadatas"])
    assert sorted(m["chunk_index"] for m in got["metadatas"]) == list(range(n_walrus))
    assert base.metadata["embed_model"] == FakeEmbedder.name

    again = Ingestor(remote).ingest_paths([docs_dir])  # no embedder given: none is needed
    assert [(r.status, r.reason) for r in again.results] == [("skipped", "unchanged")] * 2

    store = Store(remote)
    hits = Retriever(remote, store, FakeEmbedder(), open_keyword_index(remote)).search(
        "Where does the pelican store fish?", top_k=3
    )
    assert hits[0].file_name == "pelican.md"
    assert "pouch" in hits[0].text and hits[0].page is None
    # the keyword index lives on this machine, next to the (unused) embedded store folder, keyed by the server
    assert keyword_index_path(remote).exists() and f"127.0.0.1_{chroma_port}" in str(keyword_index_path(remote))


@pytest.mark.slow
def test_two_ingesters_and_another_machine_on_one_server(chroma_port: int, tmp_path: Path) -> None:
    """Two `python -m ingest` processes write different folders at once; the ledger, every document and this
    machine's keyword index end up complete, and a second machine (another keyword index) finds the same chunks."""
    folders = [make_folder(tmp_path / name, name, 12) for name in ("otters", "herons")]
    env = {"RAG_CHROMA_HOST": "127.0.0.1", "RAG_CHROMA_PORT": str(chroma_port)}
    here = tmp_path / "machine-a"
    procs = [
        subprocess.Popen(
            [PYTHON, "-m", "ingest", str(folder), "--json"], cwd=ROOT, env=cli_env(here, **env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for folder in folders
    ]  # fmt: skip
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    assert sum(json.loads(out)["ingested"] for out, _ in outputs) == 24

    check = subprocess.run(
        [PYTHON, "-m", "ingest", "--check", "--json"], cwd=ROOT, env=cli_env(here, **env),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = json.loads(check.stdout)
    assert check.returncode == 0 and report["clean"] and report["documents"] == 24, check.stdout + check.stderr

    def finds(store_dir: Path, question: str) -> list[str]:
        settings = Settings(_env_file=None, store_dir=store_dir, embed_model="fake", chunk_size=64, chunk_overlap=8,
                            chroma_host="127.0.0.1", chroma_port=chroma_port)  # fmt: skip
        retriever = Retriever(settings, Store(settings), FakeEmbedder(), open_keyword_index(settings))
        return [h.chunk_id for h in retriever.search(question, top_k=5)]

    for question in ("otters7 manual case number 3", "herons11 manual case number 5"):
        assert finds(here, question) == finds(tmp_path / "machine-b", question)


def make_folder(folder: Path, topic: str, n_files: int) -> Path:
    folder.mkdir()
    for i in range(n_files):
        (folder / f"{topic}-{i:02d}.txt").write_text(sentences(f"{topic}{i}", 30), encoding="utf-8")
    return folder


@pytest.mark.slow
def test_a_server_that_goes_away_gives_one_line_errors(settings: Settings, tmp_path: Path) -> None:
    with chroma_server(tmp_path / "server") as (port, server):
        remote = settings.model_copy(update={"chroma_host": "127.0.0.1", "chroma_port": port})
        store = Store(remote)
        assert store.documents() == {}
        stop_server(server)
        with pytest.raises(StoreError) as info:
            store.documents()
    message = str(info.value)
    assert "\n" not in message and f"127.0.0.1:{port}" in message and "reading the ledger" in message


def test_unreachable_server_names_the_setting(settings: Settings) -> None:
    remote = settings.model_copy(update={"chroma_host": "127.0.0.1", "chroma_port": free_port()})
    with pytest.raises(StoreError, match="RAG_CHROMA_HOST") as info:
        Store(remote)
    assert f"127.0.0.1:{remote.chroma_port}" in str(info.value)
    assert "\n" not in str(info.value)
