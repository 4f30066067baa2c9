"""ingest.pipeline with the hashing embedder: statuses, skip/replace/duplicate/prune/remove, the keyword cache, PDFs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.check import check_store, repair_store
from ingest.chunking import chunk_page, make_splitter
from ingest.pipeline import Ingestor, Progress, collect_files
from rag.config import Settings, load_settings
from rag.embedders import FakeEmbedder
from rag.errors import ConfigError
from rag.keyword_index import KeywordIndex
from rag.keyword_sync import keyword_index_path, sync_keyword_index
from rag.store import Store, chunk_id, doc_id_for
from rag.tokenize import keyword_tokens
from tests.conftest import WriteDoc, raw_chunks, sentences
from tests.fixtures_docs import pdf_bytes

JSON_KEYS = {"ingested", "skipped", "failed", "chunks", "seconds"}
CHUNK_META_KEYS = {"doc_id", "source", "file_name", "doc_hash", "chunk_index", "lang", "rev"}


def expected_chunks(text: str, settings: Settings) -> list[str]:
    """What the pipeline must store for a one-unit file: the chunker's output, in order."""
    return chunk_page(make_splitter(FakeEmbedder().tokenize, settings.chunk_size, settings.chunk_overlap), text)


def doc_chunks(store: Store, path: Path) -> list[tuple[str, dict, str]]:
    """(id, metadata, text) of one document's chunks, ordered by chunk_index."""
    rows = raw_chunks(store, where={"doc_id": doc_id_for(str(path))})
    return sorted(rows, key=lambda row: row[1]["chunk_index"])


def by_name(report) -> dict[str, tuple[str, int, str]]:
    return {Path(r.path).name: (r.status, r.chunks, r.reason) for r in report.results}


def keyword_hits(settings: Settings, store: Store, word: str) -> set[str]:
    """What the keyword index on disk finds, as the writer left it (no sync here: the writer must have updated it)."""
    index = KeywordIndex.open(keyword_index_path(settings))
    try:
        return {cid for cid, _ in index.search(keyword_tokens(word), 100)}
    finally:
        index.close()


def is_clean(ingestor: Ingestor) -> bool:
    report = check_store(ingestor.store, ingestor.keyword_index, check_files=False)
    assert report.clean, [str(p) for p in report.problems]
    return True


@pytest.fixture
def corpus(write_doc: WriteDoc, settings: Settings) -> dict[str, Path]:
    """Two documents (one long, one short), an unsupported file and a hidden file."""
    return {
        "alpha": write_doc("alpha.txt", sentences("walrus", 12)),
        "beta": write_doc("beta.md", "# Beta\n\nThe pelican guide is short."),
        "csv": write_doc("table.csv", "a,b\n1,2\n"),
        "hidden": write_doc(".hidden.txt", "Hidden files are ignored in folders."),
    }


@pytest.fixture
def ingestor(settings: Settings) -> Ingestor:
    return Ingestor(settings, embedder=FakeEmbedder())


# ------------------------------------------------------------------------------------------------ first ingest
def test_ingest_folder_statuses_chunks_and_metadata(ingestor, corpus, docs_dir, settings) -> None:
    report = ingestor.ingest_paths([docs_dir])
    alpha_text = corpus["alpha"].read_text()
    alpha_expected = expected_chunks(alpha_text, settings)
    assert len(alpha_expected) >= 3  # the test needs a multi-chunk document
    assert by_name(report) == {
        "alpha.txt": ("ingested", len(alpha_expected), ""),
        "beta.md": ("ingested", 1, ""),
        "table.csv": ("skipped", 0, "unsupported file type '.csv'"),
    }
    assert report.chunks_total == len(alpha_expected) + 1 == ingestor.store.count_chunks()
    assert report.as_json()["ingested"] == 2 and report.as_json()["skipped"] == 1

    rows = doc_chunks(ingestor.store, corpus["alpha"])
    assert [text for _, _, text in rows] == alpha_expected
    doc_id = doc_id_for(str(corpus["alpha"]))
    records = ingestor.store.documents()
    record = records[doc_id]
    assert set(records) == {doc_id, doc_id_for(str(corpus["beta"]))}
    assert (record.source, record.file_name, record.n_chunks, record.n_pages) == (
        str(corpus["alpha"]),
        "alpha.txt",
        len(alpha_expected),
        0,
    )
    for index, (cid, meta, _text) in enumerate(rows):
        assert cid == chunk_id(doc_id, record.rev, index)
        assert set(meta) == CHUNK_META_KEYS  # no "page" for formats without pages
        assert meta["chunk_index"] == index
        assert (meta["source"], meta["file_name"], meta["doc_hash"]) == (
            str(corpus["alpha"]),
            "alpha.txt",
            record.doc_hash,
        )
        assert (meta["rev"], meta["lang"]) == (record.rev, "en")
    assert ingestor.keyword_index.tokens_of([rows[0][0]])[rows[0][0]] == keyword_tokens(rows[0][2])
    assert ingestor.store.embed_model == FakeEmbedder.name
    assert is_clean(ingestor)


def test_progress_events(ingestor, corpus, docs_dir) -> None:
    events: list[Progress] = []
    report = ingestor.ingest_paths([docs_dir], on_progress=events.append)
    assert events[0].kind == "start" and events[0].n_files == 2
    # chunks of both files share embedding batches; a file is done when its group is committed
    assert [e.kind for e in events if e.kind not in ("chunks", "page")] == ["start", "file", "file", "done", "done"]
    assert sum(e.n_chunks for e in events if e.kind == "chunks") == report.chunks_total
    assert [Path(e.result.path).name for e in events if e.kind == "done"] == ["alpha.txt", "beta.md"]


def test_rerun_skips_everything_without_loading_a_model(settings, corpus, docs_dir, monkeypatch) -> None:
    first = Ingestor(settings, embedder=FakeEmbedder()).ingest_paths([docs_dir])

    def no_model(*_args):
        raise AssertionError("an unchanged re-run must not load the embedder")

    monkeypatch.setattr("ingest.pipeline.load_embedder", no_model)
    again = Ingestor(settings)  # no embedder given: one would be loaded on first need
    report = again.ingest_paths([docs_dir])
    assert again._embedder is None and again._splitter is None
    assert by_name(report) == {
        "alpha.txt": ("skipped", by_name(first)["alpha.txt"][1], "unchanged"),
        "beta.md": ("skipped", 1, "unchanged"),
        "table.csv": ("skipped", 0, "unsupported file type '.csv'"),
    }
    assert report.as_json()["ingested"] == 0 and report.as_json()["skipped"] == 3
    assert report.chunks_total == first.chunks_total


def test_changed_file_is_replaced_and_old_chunks_are_gone(ingestor, corpus, docs_dir, settings) -> None:
    ingestor.ingest_paths([docs_dir])
    old_ids = {cid for cid, _, _ in doc_chunks(ingestor.store, corpus["alpha"])}
    new_text = sentences("narwhal", 20)
    corpus["alpha"].write_text(new_text)

    report = ingestor.ingest_paths([docs_dir])
    new_expected = expected_chunks(new_text, settings)
    assert by_name(report)["alpha.txt"] == ("replaced", len(new_expected), "")
    assert by_name(report)["beta.md"][0] == "skipped"
    rows = doc_chunks(ingestor.store, corpus["alpha"])
    record = ingestor.store.document(doc_id_for(str(corpus["alpha"])))
    assert [text for _, _, text in rows] == new_expected
    assert {meta["doc_hash"] for _, meta, _ in rows} == {record.doc_hash}
    assert record.n_chunks == len(rows)
    assert not old_ids & {cid for cid, _, _ in rows}
    assert raw_chunks(ingestor.store, ids=sorted(old_ids)) == []
    assert ingestor.store.count_chunks() == len(new_expected) + 1
    assert is_clean(ingestor)


def test_duplicate_content_under_another_name_is_skipped(ingestor, corpus, docs_dir, write_doc) -> None:
    ingestor.ingest_paths([docs_dir])
    copy = write_doc("zz-copy.txt", corpus["alpha"].read_text())
    report = ingestor.ingest_paths([docs_dir])
    status, chunks, reason = by_name(report)["zz-copy.txt"]
    assert (status, chunks) == ("skipped", 0)
    assert "alpha.txt" in reason
    assert ingestor.store.document(doc_id_for(str(copy))) is None
    assert doc_chunks(ingestor.store, copy) == []


def test_file_changed_into_a_copy_of_another_loses_its_old_text(ingestor, corpus, docs_dir, settings) -> None:
    ingestor.ingest_paths([docs_dir])
    assert keyword_hits(settings, ingestor.store, "pelican")
    corpus["beta"].write_text(corpus["alpha"].read_text())

    report = ingestor.ingest_paths([docs_dir])
    assert by_name(report)["beta.md"][0] == "skipped"
    assert "alpha.txt" in by_name(report)["beta.md"][2]
    assert ingestor.store.document(doc_id_for(str(corpus["beta"]))) is None
    assert doc_chunks(ingestor.store, corpus["beta"]) == []  # "pelican" is no longer in the file
    assert keyword_hits(settings, ingestor.store, "pelican") == set()


# ------------------------------------------------------------------------------------------------ prune and remove
def test_prune_removes_deleted_files(ingestor, corpus, docs_dir, tmp_path, write_doc) -> None:
    outside = write_doc("outside.txt", "The heron lives outside the pruned folder.", folder=tmp_path / "elsewhere")
    ingestor.ingest_paths([docs_dir, outside])
    outside.unlink()
    corpus["beta"].unlink()

    without = ingestor.ingest_paths([docs_dir])  # no prune: the record stays
    assert ingestor.store.document(doc_id_for(str(corpus["beta"]))) is not None
    assert "removed" not in {r.status for r in without.results}

    report = ingestor.ingest_paths([docs_dir], prune=True)
    removed = [(r.path, r.status, r.chunks, r.reason) for r in report.results if r.status == "removed"]
    assert removed == [(str(corpus["beta"]), "removed", 1, "file is gone")]
    assert ingestor.store.document(doc_id_for(str(corpus["beta"]))) is None
    assert doc_chunks(ingestor.store, corpus["beta"]) == []
    # a document outside the given folders is kept, even though its file is gone too
    assert ingestor.store.document(doc_id_for(str(outside))) is not None


def test_check_finds_and_repair_deletes_chunks_no_document_owns(ingestor, corpus, docs_dir) -> None:
    ingestor.ingest_paths([docs_dir])
    beta_id = doc_id_for(str(corpus["beta"]))
    ingestor.store._docs.delete(ids=[beta_id])  # what a crash of an older version (no intents yet) could leave
    report = check_store(ingestor.store, ingestor.keyword_index, check_files=False)
    assert any("1 stored chunks belong to no committed document" in p.what for p in report.problems)
    assert any("keyword index is behind" in p.what for p in report.problems)
    repaired = repair_store(ingestor.store, ingestor.keyword_index)
    assert any("deleted 1 chunks" in line for line in repaired)
    assert raw_chunks(ingestor.store, where={"doc_id": beta_id}) == []
    assert is_clean(ingestor)


def test_remove_by_path_and_by_bare_name(ingestor, corpus, docs_dir, write_doc, tmp_path, settings) -> None:
    twin_folder = tmp_path / "other"
    write_doc("alpha.txt", "Another alpha file about the kiwi bird.", folder=twin_folder)
    ingestor.ingest_paths([docs_dir, twin_folder])
    alpha_chunks = len(doc_chunks(ingestor.store, corpus["alpha"]))

    [by_path] = ingestor.remove([str(corpus["alpha"])])
    assert (by_path.path, by_path.status, by_path.chunks) == (str(corpus["alpha"]), "removed", alpha_chunks)
    assert doc_chunks(ingestor.store, corpus["alpha"]) == []

    [by_name_result] = ingestor.remove(["beta.md"])
    assert (by_name_result.path, by_name_result.status, by_name_result.chunks) == (str(corpus["beta"]), "removed", 1)
    assert [r.file_name for r in ingestor.store.documents().values()] == ["alpha.txt"]  # the one in other/
    assert keyword_hits(settings, ingestor.store, "walrus") == set()
    assert keyword_hits(settings, ingestor.store, "pelican") == set()

    [missing] = ingestor.remove(["nothing-here.md"])
    assert (missing.status, missing.reason) == ("failed", "not in the store (see --list)")


def test_ambiguous_bare_name_is_not_removed(ingestor, corpus, docs_dir, write_doc, tmp_path) -> None:
    write_doc("beta.md", "A second beta about the puffin.", folder=tmp_path / "other")
    ingestor.ingest_paths([docs_dir, tmp_path / "other"])
    [result] = ingestor.remove(["beta.md"])
    assert result.status == "failed"
    assert len(ingestor.store.documents()) == 3


# ------------------------------------------------------------------------------------------------ paths
def test_folder_and_file_given_twice_are_ingested_once(ingestor, corpus, docs_dir) -> None:
    report = ingestor.ingest_paths([docs_dir, docs_dir, corpus["alpha"], Path(os.path.relpath(corpus["alpha"]))])
    names = [Path(r.path).name for r in report.results if r.status != "skipped"]
    assert sorted(names) == ["alpha.txt", "beta.md"]
    assert len(ingestor.store.documents()) == 2


def test_other_spellings_of_a_path_are_the_same_document(ingestor, corpus, docs_dir, settings) -> None:
    ingestor.ingest_paths([docs_dir])
    detour = Path(f"{docs_dir}/../{docs_dir.name}")
    again = ingestor.ingest_paths([detour])
    assert by_name(again)["alpha.txt"] == ("skipped", by_name(again)["alpha.txt"][1], "unchanged")

    corpus["alpha"].write_text(sentences("narwhal", 14))
    report = ingestor.ingest_paths([detour])
    assert by_name(report)["alpha.txt"][0] == "replaced"
    assert len(ingestor.store.documents()) == 2  # no second copy of alpha.txt with its old text
    assert keyword_hits(settings, ingestor.store, "walrus") == set()
    assert ingestor.remove([str(detour / "alpha.txt")])[0].status == "removed"


def test_symlink_loop_terminates_and_does_not_fail(ingestor, corpus, docs_dir) -> None:
    os.symlink(docs_dir, docs_dir / "loop")
    (docs_dir / "sub").mkdir()
    os.symlink(docs_dir, docs_dir / "sub" / "back-up")
    report = ingestor.ingest_paths([docs_dir])
    assert report.failed == []
    assert sorted(Path(r.path).name for r in report.results if r.status == "ingested") == ["alpha.txt", "beta.md"]
    files, problems = collect_files([docs_dir])
    assert [(Path(p.path).name, p.status) for p in problems] == [("table.csv", "skipped")]
    assert [f.name for f in files] == ["alpha.txt", "beta.md"]


def test_missing_path_is_reported(ingestor, tmp_path) -> None:
    report = ingestor.ingest_paths([tmp_path / "nope"])
    assert [(r.status, r.reason) for r in report.results] == [("failed", "no such file or folder")]


# ------------------------------------------------------------------------------------------------ broken files
def test_broken_files_fail_alone_with_one_line_reasons(ingestor, corpus, docs_dir, write_doc) -> None:
    (docs_dir / "empty.txt").write_bytes(b"")
    (docs_dir / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (docs_dir / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    write_doc("numbers.txt", "12 34\n\n— 56 —")
    report = ingestor.ingest_paths([docs_dir])

    statuses = {name: status for name, (status, _, _) in by_name(report).items()}
    assert statuses["alpha.txt"] == statuses["beta.md"] == "ingested"
    failed = {Path(entry["path"]).name: entry["error"] for entry in report.as_json()["failed"]}
    assert set(failed) == {"empty.txt", "binary.txt", "broken.pdf", "numbers.txt"}
    assert failed["empty.txt"] == "empty file"
    assert failed["binary.txt"] == "binary content, not text"
    assert failed["broken.pdf"].startswith("not a valid PDF")
    assert failed["numbers.txt"] == "no text to index"
    assert all("\n" not in reason and reason for reason in failed.values())
    assert len(ingestor.store.documents()) == 2
    assert is_clean(ingestor)


def test_json_summary_has_exactly_the_documented_keys(ingestor, corpus, docs_dir) -> None:
    (docs_dir / "empty.md").write_bytes(b"")
    summary = ingestor.ingest_paths([docs_dir]).as_json()
    assert set(summary) == JSON_KEYS
    assert summary["ingested"] == 2 and summary["skipped"] == 1
    assert summary["failed"] == [{"path": str(docs_dir / "empty.md"), "error": "empty file"}]
    assert summary["chunks"] == ingestor.store.count_chunks()
    assert isinstance(summary["seconds"], float) and summary["seconds"] >= 0


# ------------------------------------------------------------------------------------------------ keyword index
def test_keyword_index_follows_replace_and_remove(ingestor, corpus, docs_dir, settings) -> None:
    ingestor.ingest_paths([docs_dir])
    store = ingestor.store
    walrus = keyword_hits(settings, store, "walrus")
    assert walrus == {cid for cid, _, _ in doc_chunks(store, corpus["alpha"])}
    assert keyword_hits(settings, store, "pelican") == {cid for cid, _, _ in doc_chunks(store, corpus["beta"])}

    corpus["alpha"].write_text(sentences("narwhal", 12))
    ingestor.ingest_paths([docs_dir])
    assert keyword_hits(settings, store, "walrus") == set()
    assert keyword_hits(settings, store, "narwhal") == {cid for cid, _, _ in doc_chunks(store, corpus["alpha"])}

    ingestor.remove([str(corpus["beta"])])
    assert keyword_hits(settings, store, "pelican") == set()
    assert ingestor.keyword_index.documents() == {d: r.rev for d, r in store.documents().items()}


def test_keyword_sync_follows_the_ledger(ingestor, corpus, docs_dir, settings) -> None:
    """A reader's sync brings the index to the ledger's state, whatever a crash or another machine left."""
    ingestor.ingest_paths([docs_dir])
    ingestor.store._docs.delete(ids=[doc_id_for(str(corpus["beta"]))])  # the document is no longer committed
    assert keyword_hits(settings, ingestor.store, "pelican")  # the index has not heard of it yet
    report = sync_keyword_index(ingestor.store, ingestor.keyword_index)
    assert (report.added, report.removed) == (0, 1)
    assert keyword_hits(settings, ingestor.store, "pelican") == set()
    assert keyword_hits(settings, ingestor.store, "walrus")


# ------------------------------------------------------------------------------------------------ settings
def test_embedder_mismatch_names_the_variable(ingestor, corpus, docs_dir, settings) -> None:
    ingestor.ingest_paths([docs_dir])
    other = settings.model_copy(update={"embed_model": "BAAI/bge-m3"})
    with pytest.raises(ConfigError, match="RAG_EMBED_MODEL") as info:
        Ingestor(other)
    assert FakeEmbedder.name in str(info.value) and "RAG_COLLECTION" in str(info.value)


def test_fake_embedder_over_a_real_models_collection_is_refused_up_front(settings, corpus, docs_dir) -> None:
    class MiniLMNamed(FakeEmbedder):
        name = "all-MiniLM-L6-v2"

    Ingestor(settings, embedder=MiniLMNamed()).ingest_paths([docs_dir])
    corpus["alpha"].write_text(sentences("narwhal", 12))
    with pytest.raises(ConfigError, match="RAG_EMBED_MODEL"):
        Ingestor(settings).ingest_paths([docs_dir])  # settings say "fake"
    # refused before anything was deleted: the old version of the changed file is still there
    assert Store(settings).document(doc_id_for(str(corpus["alpha"]))) is not None


def test_invalid_collection_names_the_variable(rag_env, monkeypatch, store_dir) -> None:
    for name in ("a b", "a--b", "x" * 481):  # "--" names a language partition; room is kept for the suffixes
        monkeypatch.setenv("RAG_COLLECTION", name)
        with pytest.raises(ConfigError, match=f"RAG_COLLECTION='{name}' is invalid"):
            load_settings(_env_file=None, store_dir=store_dir)
    monkeypatch.delenv("RAG_COLLECTION")
    assert load_settings(_env_file=None, store_dir=store_dir, collection="a-b.c_d").collection == "a-b.c_d"
    # a name Chroma rejects (set past our check): still a ConfigError, and no collection left behind
    long_name = "x" * 510
    settings = load_settings(_env_file=None, store_dir=store_dir, embed_model="fake").model_copy(
        update={"collection": long_name}
    )
    with pytest.raises(ConfigError, match="RAG_COLLECTION"):
        Store(settings)
    assert Store(settings.model_copy(update={"collection": "documents"})).list_collections() == ["documents"]


# ------------------------------------------------------------------------------------------------ PDF
def test_pdf_page_numbers_land_in_chunk_metadata(ingestor, tmp_path, settings) -> None:
    pages = [
        "ACME Handbook\nThe first page describes the aardvark enclosure.",
        "ACME Handbook\nThe second page describes the bison meadow.",
        "ACME Handbook\nThe third page describes the caribou trail.",
    ]
    path = tmp_path / "handbook.pdf"
    path.write_bytes(pdf_bytes(pages))
    report = ingestor.ingest_paths([path])
    assert by_name(report) == {"handbook.pdf": ("ingested", 3, "")}
    rows = doc_chunks(ingestor.store, path)
    assert [(meta["page"], meta["chunk_index"]) for _, meta, _ in rows] == [(1, 0), (2, 1), (3, 2)]
    assert [text for _, _, text in rows] == [p.split("\n")[1] for p in pages]  # the running header is stripped
    assert set(rows[0][1]) == CHUNK_META_KEYS | {"page"}
    assert ingestor.store.document(doc_id_for(str(path))).n_pages == 3
    tokens = ingestor.keyword_index.tokens_of([cid for cid, _, _ in rows])
    assert {meta["page"] for cid, meta, _ in rows if "bison" in tokens[cid]} == {2}
