"""`python -m ingest --reembed`: another embedder's vectors from the stored texts, crash-safe and resumable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import Ingestor
from ingest.reembed import reembed
from rag.config import Settings
from rag.embedders import FakeEmbedder
from rag.errors import ConfigError
from rag.keyword_sync import open_keyword_index
from rag.retrieve import Retriever
from rag.store import Store
from tests.conftest import raw_chunks, sentences


class OtherEmbedder(FakeEmbedder):
    """A different model: other name, other dimensions."""

    name = "fake-other-128"
    dim = 128

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return super().embed_passages(texts)[:, : self.dim] / np.sqrt(2) + 1e-3


class DiesOnSecondBatch(OtherEmbedder):
    calls = 0

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        type(self).calls += 1
        if type(self).calls == 2:
            raise KeyboardInterrupt
        return super().embed_passages(texts)


@pytest.fixture
def filled(settings: Settings, docs_dir: Path, write_doc) -> Settings:
    for i in range(4):
        write_doc(f"doc{i}.txt", sentences(f"subject{i}", 20))
    Ingestor(settings, embedder=FakeEmbedder()).ingest_paths([docs_dir])
    return settings


def texts_by_doc(store: Store) -> dict[str, list[str]]:
    return {r.source: [c.text for c in store.document_chunks(r)] for r in store.documents().values()}


def test_reembed_switches_the_collection_and_keeps_every_text(filled: Settings) -> None:
    store = Store(filled)
    before = texts_by_doc(store)
    old_collection = store.chunk_collection_name
    report = reembed(filled, store, embedder=OtherEmbedder())
    assert (report.embedder_before, report.embedder_after, report.resumed) == (FakeEmbedder.name, OtherEmbedder.name, 0)
    assert report.chunks == sum(len(t) for t in before.values())

    fresh = Store(filled)
    assert fresh.embed_model == OtherEmbedder.name and fresh.chunk_collection_name != old_collection
    names = {c.name for c in fresh._client.list_collections()}
    assert not {n for n in names if n == old_collection or n.startswith(old_collection + "--")}  # old vectors gone
    assert fresh.by_language and set(fresh._parts) == {"en"}
    assert texts_by_doc(fresh) == before
    assert all(r.langs == f"en:{r.n_chunks}" for r in fresh.documents().values())
    vectors = fresh.get_vectors([cid for r in fresh.documents().values() for cid in r.chunk_ids()])
    assert {v.shape for v in vectors.values()} == {(OtherEmbedder.dim,)}
    with pytest.raises(ConfigError, match="--reembed"):
        Retriever(filled, fresh, FakeEmbedder(), open_keyword_index(filled))
    hits = Retriever(filled, fresh, OtherEmbedder(), open_keyword_index(filled)).search("subject2 manual case 3")
    assert hits[0].file_name == "doc2.txt"
    again = reembed(filled, fresh, embedder=OtherEmbedder())
    assert again.chunks == 0  # already done: nothing to do


def test_a_crashed_reembed_changes_nothing_and_the_next_run_resumes(filled: Settings) -> None:
    store = Store(filled)
    before = texts_by_doc(store)
    with pytest.raises(KeyboardInterrupt):
        reembed(filled.model_copy(update={"embed_batch_size": 8}), store, embedder=DiesOnSecondBatch())
    after_crash = Store(filled)
    assert after_crash.embed_model == FakeEmbedder.name  # search still uses the old, complete vectors
    assert texts_by_doc(after_crash) == before
    report = reembed(filled.model_copy(update={"embed_batch_size": 8}), after_crash, embedder=OtherEmbedder())
    assert report.resumed == 8 and report.chunks == sum(len(t) for t in before.values())
    final = Store(filled)
    assert final.embed_model == OtherEmbedder.name and texts_by_doc(final) == before
    assert len(raw_chunks(final)) == final.count_chunks()


def test_reembed_with_the_same_embedder_moves_a_collection_into_language_partitions(
    settings: Settings, docs_dir: Path, write_doc
) -> None:
    """A store made before partitions (one collection, searched with Chroma's slow filter) is moved by --reembed
    with its own embedder: vectors copied, not computed again, and the same answers afterwards."""
    write_doc("english.txt", sentences("walrus", 12))
    write_doc("中文.txt", "海象生活在北极的海冰上。" * 30)
    store = Store(settings)
    with store.writer() as session:
        session.record_embedder(FakeEmbedder.name, FakeEmbedder().dim, by_language=False)
    Ingestor(settings, store, FakeEmbedder()).ingest_paths([docs_dir])
    assert not store.by_language and {m["lang"] for _, m, _ in raw_chunks(store)} == {"en", "zh"}
    ids = [cid for r in store.documents().values() for cid in r.chunk_ids()]
    before_vectors = store.get_vectors(ids)
    before_texts = texts_by_doc(store)
    question = FakeEmbedder().embed_query("walrus")
    visible = {doc_id: r.rev for doc_id, r in store.documents().items()}
    before_hits = [(c.chunk_id, round(c.similarity, 5)) for c in store.query(question, 4, visible, language="en")]

    class NeverCalled(FakeEmbedder):
        def embed_passages(self, texts):
            raise AssertionError("vectors are copied, not computed")

    report = reembed(settings, store, embedder=NeverCalled())
    assert (report.embedder_before, report.embedder_after, report.chunks) == (FakeEmbedder.name,) * 2 + (len(ids),)

    fresh = Store(settings)
    assert fresh.by_language and set(fresh._parts) == {"en", "zh"}
    assert fresh._chunks.count() == 0 and fresh.chunk_count_raw() == len(ids)
    assert {m["lang"] for _, m, _ in raw_chunks(fresh)} == {"en", "zh"}
    assert all(fresh._parts[m["lang"]].get(ids=[cid])["ids"] == [cid] for cid, m, _ in raw_chunks(fresh))
    after_vectors = fresh.get_vectors(ids)
    assert set(after_vectors) == set(ids)
    assert all(np.allclose(after_vectors[cid], before_vectors[cid]) for cid in ids)
    assert texts_by_doc(fresh) == before_texts
    after_hits = [(c.chunk_id, round(c.similarity, 5)) for c in fresh.query(question, 4, visible, language="en")]
    assert after_hits == before_hits
    assert reembed(settings, fresh, embedder=NeverCalled()).chunks == 0  # partitioned already: nothing to do
