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
    assert old_collection not in {c.name for c in fresh._client.list_collections()}  # the old vectors are gone
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
