"""Ingestion against a real Chroma server (`chroma run`), the client-server setup of RAG_CHROMA_HOST/RAG_CHROMA_PORT."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.pipeline import Ingestor
from rag.config import Settings
from rag.errors import StoreError
from rag.models import FakeEmbedder
from rag.retrieve import Retriever
from rag.store import DOCS_SUFFIX, Store, doc_id_for
from tests.conftest import WriteDoc, sentences
from tests.servers import free_port, stop_server

CHROMA = Path(sys.executable).with_name("chroma")


def heartbeat(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


@pytest.fixture
def chroma_port(tmp_path: Path) -> Iterator[int]:
    if not CHROMA.exists():
        pytest.skip(f"no chroma executable at {CHROMA}")
    port = free_port()
    log = (tmp_path / "chroma.log").open("w")
    server = subprocess.Popen(
        [str(CHROMA), "run", "--path", str(tmp_path / "server-data"), "--port", str(port), "--host", "127.0.0.1"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not heartbeat(port):
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"chroma run did not come up: {(tmp_path / 'chroma.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield port
    finally:
        stop_server(server, timeout=10)
        log.close()


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
    chunks = client.get_collection(settings.collection)
    ledger = client.get_collection(settings.collection + DOCS_SUFFIX)
    assert chunks.count() == n_walrus + 1 == report.chunks_total
    assert sorted(ledger.get()["ids"]) == sorted([doc_id_for(str(walrus)), doc_id_for(str(pelican))])
    got = chunks.get(where={"doc_id": doc_id_for(str(walrus))}, include=["metadatas"])
    assert sorted(m["chunk_index"] for m in got["metadatas"]) == list(range(n_walrus))
    assert chunks.metadata["embed_model"] == FakeEmbedder.name

    again = Ingestor(remote).ingest_paths([docs_dir])  # no embedder given: none is needed
    assert [(r.status, r.reason) for r in again.results] == [("skipped", "unchanged")] * 2

    store = Store(remote)
    hits = Retriever(remote, store, FakeEmbedder()).search("Where does the pelican store fish?", top_k=3)
    assert hits[0].file_name == "pelican.md"
    assert "pouch" in hits[0].text and hits[0].page is None
    # the keyword cache lives on this machine, next to the (unused) embedded store folder
    assert (settings.store_dir / "keyword-index" / settings.collection / "meta.json").exists()


def test_unreachable_server_names_the_setting(settings: Settings) -> None:
    remote = settings.model_copy(update={"chroma_host": "127.0.0.1", "chroma_port": free_port()})
    with pytest.raises(StoreError, match="RAG_CHROMA_HOST") as info:
        Store(remote)
    assert f"127.0.0.1:{remote.chroma_port}" in str(info.value)
    assert "\n" not in str(info.value)
