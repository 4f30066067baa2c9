"""Hybrid retrieval and keyword tokens, with the word-hashing fake embedder (fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import Ingestor
from rag.config import Settings
from rag.errors import EmptyIndex
from rag.models import FakeEmbedder
from rag.retrieve import Retriever, fuse_rankings, term_coverage
from rag.store import Store
from rag.tokenize import cjk_fraction, keyword_tokens

DOCS = {
    "llama.md": "Llama 2 is a family of language models released by Meta. The largest Llama 2 model has 70 billion "
    "parameters and its parameter file is 140GB.",
    "garden.md": "Tomatoes need full sun and regular watering. Prune the side shoots of tomato plants every week.",
    "模型.md": "盘古大模型的参数量是10850亿。魔搭社区提供的一站式微调框架叫做SWIFT。",
    "天氣.txt": "今天的天氣很好，我們去公園散步。公園裡有很多花。",
}


def make_settings(tmp_path: Path, **overrides) -> Settings:
    values = dict(store_dir=tmp_path / "store", embed_model="fake", chunk_size=64, chunk_overlap=8)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture()
def retriever(tmp_path: Path) -> Retriever:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    settings = make_settings(tmp_path)
    store = Store(settings)
    embedder = FakeEmbedder()
    report = Ingestor(settings, store, embedder).ingest_paths([folder])
    assert report.count("ingested") == len(DOCS)
    return Retriever(settings, store, embedder)


def test_keyword_tokens_mix_jieba_words_bigrams_and_english() -> None:
    tokens = keyword_tokens("大型语言模型的参数 Tomatoes need sun")
    assert "语言" in tokens and "模型" in tokens  # jieba words
    assert "型语" in tokens  # a bigram across a word boundary: robust to segmentation differences
    assert "tomatoe" in tokens and "sun" in tokens  # plural stripped, lower-cased
    assert "need" in tokens and "的" not in tokens  # stop words dropped


def test_traditional_chinese_matches_through_bigrams() -> None:
    assert {"天氣", "公園"} <= set(keyword_tokens("天氣公園"))


def test_cjk_fraction() -> None:
    assert cjk_fraction("What is RLHF?") == 0.0
    assert cjk_fraction("盘古大模型") == 1.0
    assert 0.3 < cjk_fraction("GPT-4 拥有多少参数") < 1.0


def test_fuse_rankings_weights_and_agreement() -> None:
    fused = fuse_rankings([(["a", "b", "c"], 1.0), (["c", "a"], 1.0)], k=60)
    assert sorted(fused, key=fused.get, reverse=True)[:2] == ["a", "c"]  # found by both rankings
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    dense_off = fuse_rankings([(["x"], 0.0), (["y"], 1.0)])
    assert "x" not in dense_off and dense_off["y"] == pytest.approx(1 / 61)


def test_term_coverage() -> None:
    assert term_coverage(["a", "b"], ["b", "c"]) == 0.5
    assert term_coverage([], ["b"]) == 0.0


def test_english_question_finds_its_document(retriever: Retriever) -> None:
    hits = retriever.search("How large is the Llama 2 parameter file?", top_k=2)
    assert hits[0].file_name == "llama.md"
    assert hits[0].page is None
    assert 0 < hits[0].score <= 1.0
    assert hits[0].relevance >= retriever.settings.min_relevance


def test_chinese_question_finds_its_document(retriever: Retriever) -> None:
    hits = retriever.search("魔搭社区的微调框架叫什么？", top_k=2)
    assert hits[0].file_name == "模型.md"
    assert "SWIFT" in hits[0].text


def test_off_topic_question_has_low_relevance(retriever: Retriever) -> None:
    hits = retriever.search("Who painted the Mona Lisa?", top_k=3)
    assert all(h.relevance < retriever.settings.min_relevance for h in hits)


def test_results_follow_removal(retriever: Retriever, tmp_path: Path) -> None:
    ingestor = Ingestor(retriever.settings, retriever.store, retriever.embedder)
    ingestor.remove(str(tmp_path / "docs" / "garden.md"))
    retriever.refresh()
    hits = retriever.search("tomato plants side shoots", top_k=4)
    assert all(h.file_name != "garden.md" for h in hits)


def test_uncommitted_chunks_are_invisible(retriever: Retriever) -> None:
    """Chunks whose ledger record is missing (a crash mid-document) never reach an answer."""
    doc = next(r for r in retriever.store.documents().values() if r.file_name == "garden.md")
    retriever.store.docs.delete(ids=[doc.doc_id])
    retriever.refresh()
    hits = retriever.search("tomato plants side shoots", top_k=4)
    assert all(h.file_name != "garden.md" for h in hits)


def test_empty_store_says_how_to_add_documents(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(EmptyIndex, match="python -m ingest"):
        Retriever(settings, Store(settings), FakeEmbedder()).search("anything")


def test_dense_weight_for_cjk_depends_on_the_embedder(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    retriever = Retriever(settings, Store(settings), FakeEmbedder())
    assert retriever.dense_weight_for("what is this") == settings.dense_weight
    assert retriever.dense_weight_for("这是什么东西") == 1.0  # the fake embedder is not English-only

    class MiniLMName(FakeEmbedder):
        name = "all-MiniLM-L6-v2"

    english_only = Retriever(settings, Store(settings), MiniLMName())
    assert english_only.dense_weight_for("这是什么东西") == 0.0
    explicit = Retriever(make_settings(tmp_path, dense_weight_cjk=0.3), Store(settings), MiniLMName())
    assert explicit.dense_weight_for("这是什么东西") == 0.3


def test_optional_reranker_reorders_candidates(retriever: Retriever) -> None:
    """The cross-encoder stage (RAG_RERANK_MODEL) re-orders the fused candidates by its own scores."""

    class PrefersGarden:
        def predict(self, pairs: list[tuple[str, str]]) -> list[float]:
            return [1.0 if "Tomatoes" in text else 0.0 for _query, text in pairs]

    plain = retriever.search("How large is the Llama 2 parameter file?", top_k=2)
    assert plain[0].file_name == "llama.md"
    reranking = Retriever(
        retriever.settings.model_copy(update={"rerank_model": "test-cross-encoder"}),
        retriever.store,
        retriever.embedder,
    )
    reranking._reranker = PrefersGarden()
    hits = reranking.search("How large is the Llama 2 parameter file?", top_k=2)
    assert [h.file_name for h in hits] == ["garden.md", "llama.md"]


def test_querying_with_another_embedder_is_refused(retriever: Retriever) -> None:
    from rag.errors import ConfigError

    class OtherModel(FakeEmbedder):
        name = "some-other-model"

    with pytest.raises(ConfigError, match=r"built with the embedder 'fake-hash-256'.*RAG_EMBED_MODEL"):
        Retriever(retriever.settings, retriever.store, OtherModel())
