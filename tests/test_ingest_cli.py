"""`python -m ingest` as a real subprocess: JSON output, exit codes 0/1/2, --list, --remove."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rag.config import Settings
from rag.store import Store
from tests.conftest import PYTHON, ROOT, WriteDoc, cli_env, sentences

JSON_KEYS = {"ingested", "skipped", "failed", "chunks", "seconds"}


def run_ingest(store_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "ingest", *args],
        cwd=ROOT,
        env=cli_env(store_dir, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def two_docs(write_doc: WriteDoc) -> tuple[Path, Path]:
    return write_doc("walrus.txt", sentences("walrus", 12)), write_doc("pelican.md", "# Pelicans\n\nPelicans fish.")


def open_store(store_dir: Path) -> Store:
    return Store(Settings(_env_file=None, store_dir=store_dir, embed_model="fake"))


def test_json_output_and_exit_codes(rag_env, store_dir, docs_dir, two_docs) -> None:
    first = run_ingest(store_dir, str(docs_dir), "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)  # stdout is the JSON object and nothing else
    assert set(summary) == JSON_KEYS
    chunks = open_store(store_dir).count_chunks()
    assert (summary["ingested"], summary["skipped"], summary["failed"], summary["chunks"]) == (2, 0, [], chunks)
    assert chunks >= 3
    assert isinstance(summary["seconds"], float)

    (docs_dir / "empty.txt").write_bytes(b"")
    second = run_ingest(store_dir, str(docs_dir), "--json")
    assert second.returncode == 1
    summary = json.loads(second.stdout)
    assert set(summary) == JSON_KEYS
    assert (summary["ingested"], summary["skipped"], summary["chunks"]) == (0, 2, chunks)
    assert summary["failed"] == [{"path": str(docs_dir / "empty.txt"), "error": "empty file"}]
    assert f"failed: {docs_dir / 'empty.txt'}: empty file" in second.stderr
    assert "Traceback" not in second.stderr


def test_bad_setting_exits_2_naming_the_variable(rag_env, store_dir, docs_dir, two_docs) -> None:
    done = run_ingest(store_dir, str(docs_dir), RAG_CHUNK_SIZE="abc")
    assert done.returncode == 2
    assert done.stderr.startswith("Error: RAG_CHUNK_SIZE='abc' is invalid")
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not store_dir.exists()  # nothing was opened or written

    bad_collection = run_ingest(store_dir, "--list", "--collection", "a b")
    assert bad_collection.returncode == 2
    assert "RAG_COLLECTION='a b'" in bad_collection.stderr


def test_no_arguments_is_a_usage_error(rag_env, store_dir) -> None:
    done = run_ingest(store_dir)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: python -m ingest")
    assert "give files or folders to ingest, or --list, --remove PATH, --check or --reembed" in done.stderr


def test_list_and_remove(rag_env, store_dir, docs_dir, two_docs, tmp_path) -> None:
    walrus, pelican = two_docs
    pdf = tmp_path / "guide.pdf"
    pdf.write_bytes((ROOT / "data" / "user-guide.pdf").read_bytes())
    ingested = run_ingest(store_dir, str(docs_dir), str(pdf))  # the human-readable summary this time
    assert ingested.returncode == 0, ingested.stderr
    store = open_store(store_dir)
    records = {r.file_name: r for r in store.documents().values()}
    assert ingested.stdout.startswith(
        f"ingested 3, skipped 0, failed 0; {store.count_chunks()} chunks in 'documents' ("
    )

    listed = run_ingest(store_dir, "--list")
    assert listed.returncode == 0, listed.stderr
    guide = records["guide.pdf"]
    assert guide.n_pages == 4
    assert listed.stdout.splitlines() == [  # sorted by path
        f"{pelican}\t{records['pelican.md'].n_chunks} chunks",
        f"{walrus}\t{records['walrus.txt'].n_chunks} chunks",
        f"{pdf}\t4 pages, {guide.n_chunks} chunks",
    ]

    # listing needs no embedder: it works even when RAG_EMBED_MODEL no longer matches the collection
    as_json = json.loads(run_ingest(store_dir, "--list", "--json", RAG_EMBED_MODEL="BAAI/bge-m3").stdout)
    assert [(d["file_name"], d["n_chunks"], d["n_pages"]) for d in as_json] == [
        (name, records[name].n_chunks, records[name].n_pages) for name in ("pelican.md", "walrus.txt", "guide.pdf")
    ]
    fields = {"doc_id", "source", "file_name", "doc_hash", "n_chunks", "n_pages", "ingested_at", "rev", "langs"}
    assert set(as_json[0]) == fields

    removed = run_ingest(store_dir, "--remove", "pelican.md", "--remove", str(walrus), "--remove", "nothing.md")
    assert removed.returncode == 1, removed.stderr  # one of the three was not in the store
    assert removed.stdout.splitlines() == [
        f"removed {pelican} ({records['pelican.md'].n_chunks} chunks)",
        f"removed {walrus} ({records['walrus.txt'].n_chunks} chunks)",
    ]
    assert removed.stderr.strip() == "Error: nothing.md: not in the store (see --list)"
    store = open_store(store_dir)
    assert [r.file_name for r in store.documents().values()] == ["guide.pdf"]
    assert store.count_chunks() == guide.n_chunks


def test_check_points_a_store_made_before_partitions_to_reembed_which_moves_it(
    rag_env, store_dir, docs_dir, two_docs
) -> None:
    from ingest.pipeline import Ingestor
    from rag.embedders import FakeEmbedder

    store = open_store(store_dir)
    with store.writer() as session:
        session.record_embedder(FakeEmbedder.name, FakeEmbedder().dim, by_language=False)
    Ingestor(store.settings, store, FakeEmbedder()).ingest_paths([docs_dir])
    del store
    before = run_ingest(store_dir, "--check")
    assert before.returncode == 0, before.stderr
    assert "predates language partitions" in before.stdout and "--reembed" in before.stdout
    moved = run_ingest(store_dir, "--reembed")
    assert moved.returncode == 0, moved.stderr
    assert "into language partitions (vectors kept" in moved.stdout
    after = run_ingest(store_dir, "--check")
    assert after.returncode == 0 and "clean" in after.stdout and "predates" not in after.stdout
    assert open_store(store_dir).by_language
