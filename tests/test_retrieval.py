"""Hybrid retrieval and keyword tokens, with the word-hashing fake embedder (fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import Ingestor
from rag import dictionary
from rag.config import Settings
from rag.embedders import FakeEmbedder
from rag.errors import EmptyIndex
from rag.keyword_sync import open_keyword_index
from rag.retrieve import (
    DENSE_WEIGHT,
    FUSION_BY_QUESTION_LANGUAGE,
    KEYWORD_WEIGHT_CROSS,
    Retriever,
    term_coverage,
    unknown_share,
)
from rag.store import Store
from rag.tokenize import keyword_tokens

DOCS = {
    "llama.md": "Llama 2 is a family of language models released by Meta. The largest Llama 2 model has 70 billion "
    "parameters and its parameter file is 140GB.",
    "garden.md": "Tomatoes need full sun and regular watering. Prune the side shoots of tomato plants every week.",
    "模型.md": "盘古大模型的参数量是10850亿。魔搭社区提供的一站式微调框架叫做SWIFT。",
    "天氣.txt": "今天的天氣很好，我們去公園散步。公園裡有很多花。",
}


def make_settings(tmp_path: Path, **overrides) -> Settings:
    # The default RAG_MIN_RELEVANCE and RAG_UNKNOWN_WORD_PENALTY are calibrated on e5's similarity scale; the hashing
    # fake's is another.
    values = dict(store_dir=tmp_path / "store", embed_model="fake", chunk_size=64, chunk_overlap=8, min_relevance=0.3,
                  unknown_word_penalty=0.0)  # fmt: skip
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
    return Retriever(settings, store, embedder, open_keyword_index(settings))


def make_retriever(settings: Settings, embedder=None) -> Retriever:
    return Retriever(settings, Store(settings), embedder or FakeEmbedder(), open_keyword_index(settings))


def test_keyword_tokens_mix_jieba_words_bigrams_and_english() -> None:
    tokens = keyword_tokens("大型语言模型的参数 Tomatoes need sun")
    assert "语言" in tokens and "模型" in tokens  # jieba words
    assert "型语" in tokens  # a bigram across a word boundary: robust to segmentation differences
    assert "tomatoe" in tokens and "sun" in tokens  # plural stripped, lower-cased
    assert "need" in tokens and "的" not in tokens  # stop words dropped


def test_traditional_chinese_is_folded_to_simplified() -> None:
    """A question in traditional characters shares its words with a passage in simplified ones (and vice versa)."""
    assert {"天气", "公园"} <= set(keyword_tokens("天氣公園"))
    assert {"检索", "数量"} <= set(keyword_tokens("預設的檢索數量")) & set(keyword_tokens("默认的检索数量"))


def test_term_coverage() -> None:
    assert term_coverage(["a", "b"], ["b", "c"]) == 0.5
    assert term_coverage([], ["b"]) == 0.0
    assert term_coverage(["rare", "common"], ["rare"], {"rare": 3.0, "common": 1.0}) == 0.75  # rarity counts


def test_english_question_finds_its_document(retriever: Retriever) -> None:
    hits = retriever.search("How large is the Llama 2 parameter file?", top_k=2)
    assert hits[0].file_name == "llama.md"
    assert hits[0].page is None
    assert hits[0].score > hits[1].score > 0
    assert hits[0].relevance >= retriever.settings.min_relevance


def test_chinese_question_finds_its_document(retriever: Retriever) -> None:
    hits = retriever.search("魔搭社区的微调框架叫什么？", top_k=2)
    assert hits[0].file_name == "模型.md"
    assert "SWIFT" in hits[0].text


def test_off_topic_question_has_low_relevance(retriever: Retriever) -> None:
    hits = retriever.search("Who painted the Mona Lisa?", top_k=3)
    assert all(h.relevance < retriever.settings.min_relevance for h in hits)


def test_unknown_share_counts_words_held_neither_as_they_are_nor_in_translation() -> None:
    tokens = ["country", "share", "border", "switzerland"]
    nothing = dictionary.Translation([], [])
    held = {"country": 1.0, "share": 2.0}  # the keyword index's idf of the words it holds
    assert unknown_share(tokens, held, nothing) == 0.5
    # "border" is held in translation (边界); "switzerland" has none the collection holds
    translated = dictionary.Translation([[["边界"]]], ["switzerland"])
    assert unknown_share(tokens, held, translated) == 0.25
    assert unknown_share(tokens, dict.fromkeys(tokens, 1.0), translated) == 0.0
    assert unknown_share([], {}, nothing) == 0.0


def test_relevance_drops_with_the_share_of_unknown_question_words(retriever: Retriever) -> None:
    """A question whose words the documents never use needs more evidence than its common words give."""
    strict = make_retriever(retriever.settings.model_copy(update={"unknown_word_penalty": 0.5}))
    question = "Do tomatoes need sun in Switzerland?"
    share = strict.unknown_share(question)
    assert share == pytest.approx(1 / len(set(keyword_tokens(question))))  # "switzerland" only
    penalised, plain = strict.search(question, top_k=2), retriever.search(question, top_k=2)
    assert penalised[0].chunk_id == plain[0].chunk_id  # ranking does not change, relevance does
    assert penalised[0].relevance == pytest.approx(plain[0].relevance - 0.5 * share)
    known = "Do tomatoes need full sun?"
    assert strict.unknown_share(known) == 0.0
    assert strict.search(known, top_k=1)[0].relevance == retriever.search(known, top_k=1)[0].relevance


def test_results_follow_removal(retriever: Retriever, tmp_path: Path) -> None:
    ingestor = Ingestor(retriever.settings, retriever.store, retriever.embedder)
    ingestor.remove([str(tmp_path / "docs" / "garden.md")])
    retriever.refresh()
    hits = retriever.search("tomato plants side shoots", top_k=4)
    assert all(h.file_name != "garden.md" for h in hits)


def test_uncommitted_chunks_are_invisible(retriever: Retriever) -> None:
    """Chunks whose ledger record is missing (a crash mid-document) never reach an answer."""
    doc = next(r for r in retriever.store.documents().values() if r.file_name == "garden.md")
    retriever.store._docs.delete(ids=[doc.doc_id])
    retriever.refresh()
    hits = retriever.search("tomato plants side shoots", top_k=4)
    assert all(h.file_name != "garden.md" for h in hits)


def test_empty_store_says_how_to_add_documents(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(EmptyIndex, match="python -m ingest"):
        make_retriever(settings).search("anything")


def test_weights_depend_on_the_languages(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    retriever = make_retriever(settings)
    assert retriever.dense_weight("en") == retriever.dense_weight("zh") == DENSE_WEIGHT  # multilingual, untuned fake
    assert retriever.keyword_weight("zh", "zh") == settings.keyword_weight
    assert retriever.keyword_weight("zh", "en") == KEYWORD_WEIGHT_CROSS  # the tuned default
    set_by_user = make_retriever(make_settings(tmp_path, dense_weight=0.7))
    assert set_by_user.dense_weight("en") == set_by_user.dense_weight("zh") == 0.7

    class EnglishOnly(FakeEmbedder):
        name = "all-MiniLM-L6-v2"
        multilingual = False

    english_only = make_retriever(settings, EnglishOnly())
    assert english_only.dense_weight("zh") == english_only.dense_weight("ja") == 0.0
    assert english_only.dense_weight("en") == DENSE_WEIGHT
    explicit = make_retriever(make_settings(tmp_path, keyword_weight_cross=0.0))
    assert explicit.keyword_weight("en", "zh") == 0.0


def test_fusion_weights_follow_the_question_language_unless_set(tmp_path: Path, monkeypatch) -> None:
    """The packaged e5 has weights tuned per question language; a value the user sets applies to every language."""
    tuned = FUSION_BY_QUESTION_LANGUAGE["multilingual-e5-small"]
    monkeypatch.setattr(FakeEmbedder, "name", "multilingual-e5-small")
    retriever = make_retriever(make_settings(tmp_path))
    english, chinese, japanese = retriever.fusion("en"), retriever.fusion("zh"), retriever.fusion("ja")
    for fusion, language in ((english, "en"), (chinese, "zh")):
        values = (fusion.dense_weight, fusion.keyword_weight_cross, fusion.translated_weight)
        names = ("dense_weight", "keyword_weight_cross", "translated_weight")
        assert values == tuple(tuned[language][k] for k in names)
    assert (japanese.dense_weight, japanese.keyword_weight_cross) == (DENSE_WEIGHT, KEYWORD_WEIGHT_CROSS)
    assert english.keyword_weight_cross != chinese.keyword_weight_cross
    user = make_retriever(make_settings(tmp_path, dense_weight=1.0, keyword_weight_cross=0.4, translated_weight=0.0))
    for language in ("en", "zh"):
        fusion = user.fusion(language)
        assert (fusion.dense_weight, fusion.keyword_weight_cross, fusion.translated_weight) == (1.0, 0.4, 0.0)
    # an English question's keyword match in a Chinese chunk counts for nothing; a Chinese question's in English does
    assert english.scores("en", {}, {"zh1": 0.9}, {"zh1": "zh"})["zh1"] == 0.0
    cross = tuned["zh"]["keyword_weight_cross"]
    assert chinese.scores("zh", {}, {"en1": 0.9}, {"en1": "en"})["en1"] == pytest.approx(0.9 * cross)


def test_cross_language_keyword_matches_count_for_less(retriever: Retriever) -> None:
    """ "Llama 2" and "140GB" are the only words a Chinese question shares with the English passage: such a match
    gets the cross-language weight, a same-language match the full one."""
    question = "Llama 2 的参数文件 140GB 是多大？"
    damped = make_retriever(retriever.settings.model_copy(update={"keyword_weight_cross": 0.3}))
    llama = next(h for h in damped.search(question, top_k=4) if h.file_name == "llama.md")
    assert llama.lang == "en" and llama.keyword_score is not None and llama.keyword_score > 0
    full = make_retriever(retriever.settings.model_copy(update={"keyword_weight_cross": 1.0}))
    boosted = next(h for h in full.search(question, top_k=4) if h.file_name == "llama.md")
    assert boosted.score == pytest.approx(llama.score + 0.7 * llama.keyword_score)


def test_relevance_is_judged_on_the_users_own_question(retriever: Retriever) -> None:
    """A follow-up is searched with the previous question's words, but grounding looks at what was asked."""
    merged = "How large is the Llama 2 parameter file? And what is the price of bitcoin?"
    hits = retriever.search(merged, top_k=3, judge="And what is the price of bitcoin?")
    assert hits[0].file_name == "llama.md"  # retrieval used both questions
    assert all(h.relevance < retriever.settings.min_relevance for h in hits)  # but nothing answers this one
    plain = retriever.search(merged, top_k=3)
    assert plain[0].relevance >= retriever.settings.min_relevance


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
        retriever.keyword_index,
    )
    reranking._reranker = PrefersGarden()
    hits = reranking.search("How large is the Llama 2 parameter file?", top_k=2)
    assert [h.file_name for h in hits] == ["garden.md", "llama.md"]


def test_querying_with_another_embedder_is_refused(retriever: Retriever) -> None:
    from rag.errors import ConfigError

    class OtherModel(FakeEmbedder):
        name = "some-other-model"

    with pytest.raises(ConfigError, match=r"built with the embedder 'fake-hash-256'.*RAG_EMBED_MODEL"):
        Retriever(retriever.settings, retriever.store, OtherModel(), retriever.keyword_index)


def test_one_language_collection_is_searched_without_a_metadata_filter(tmp_path: Path, monkeypatch) -> None:
    """Chroma's `where` filter is slow at scale; in a one-language collection it must be skipped, same results."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ("llama.md", "garden.md"):
        (folder / name).write_text(DOCS[name], encoding="utf-8")
    settings = make_settings(tmp_path)
    Ingestor(settings, Store(settings), FakeEmbedder()).ingest_paths([folder])
    retriever = make_retriever(settings)
    languages: list[str | None] = []
    query = Store.query

    def spy(self, vector, n, visible, *, language=None, with_vectors=False):
        languages.append(language)
        return query(self, vector, n, visible, language=language, with_vectors=with_vectors)

    monkeypatch.setattr(Store, "query", spy)
    for question in ("How many parameters does Llama 2 have?", "西红柿需要多少阳光？"):
        hits = retriever.search(question, 2)
        visible = {doc_id: record.rev for doc_id, record in retriever._records.items()}
        vector = retriever.embedder.embed_query(question)
        filtered = query(retriever.store, vector, 10, visible, language="en")
        unfiltered = query(retriever.store, vector, 10, visible)
        assert [c.chunk_id for c in filtered] == [c.chunk_id for c in unfiltered]
        assert hits
    assert languages and set(languages) == {None}


def legacy_store(tmp_path: Path) -> Store:
    """The DOCS in one chunk collection, as stores made before language partitions hold them."""
    folder = tmp_path / "docs"
    settings = make_settings(tmp_path, store_dir=tmp_path / "legacy-store")
    store = Store(settings)
    with store.writer() as session:
        session.record_embedder(FakeEmbedder.name, FakeEmbedder().dim, by_language=False)
    Ingestor(settings, store, FakeEmbedder()).ingest_paths([folder])
    assert not store.by_language and store._parts == {}
    return store


@pytest.mark.parametrize("unfiltered_max", [1, 400])  # 1: every language query falls back to Chroma's filter
def test_language_queries_match_chromas_filtered_results(
    retriever: Retriever, tmp_path: Path, monkeypatch, unfiltered_max
) -> None:
    """A partitioned store searches one language's partition; a store made before partitions looks among the
    nearest of all first (Chroma's filter is slow at scale). Either way the result is what Chroma's filtered query
    over one collection of every chunk returns."""
    import rag.store

    monkeypatch.setattr(rag.store, "UNFILTERED_MAX_ASKED", unfiltered_max)
    store = retriever.store
    assert store.by_language and set(store._parts) == {"en", "zh"}
    assert store._chunks.count() == 0  # every chunk is in its language's partition
    legacy = legacy_store(tmp_path)
    visible = {doc_id: record.rev for doc_id, record in store.documents().items()}
    legacy_visible = {doc_id: record.rev for doc_id, record in legacy.documents().items()}
    assert set(visible) == set(legacy_visible)

    def same(ids: list[str]) -> list[tuple[str, str]]:  # (doc_id, chunk number): each write has its own revision
        return [(cid.split("-")[0], cid.rsplit("-", 1)[1]) for cid in ids]

    for question in ("Llama 2 parameters", "盘古大模型的参数量", "公園裡有很多花", "tomato watering"):
        vector = retriever.embedder.embed_query(question)
        for language in ("en", "zh"):
            want = legacy._chunks.query(query_embeddings=[list(map(float, vector))], n_results=2,
                                        where={"lang": language})["ids"][0]  # fmt: skip
            got = legacy.query(vector, 2, legacy_visible, language=language)
            assert [c.chunk_id for c in got] == want
            partitioned = store.query(vector, 2, visible, language=language)
            assert same([c.chunk_id for c in partitioned]) == same(want)
            assert all(c.meta["lang"] == language for c in got + partitioned)
        every = legacy._chunks.query(query_embeddings=[list(map(float, vector))], n_results=3)
        merged = store.query(vector, 3, visible)  # all partitions, merged by similarity (ties in either order)
        assert [round(c.similarity, 5) for c in merged] == [round(1 - d, 5) for d in every["distances"][0]]
        assert same([c.chunk_id for c in merged])[0] == same(every["ids"][0])[0]


def test_language_means_are_sampled_again_only_when_the_collection_moves(
    retriever: Retriever, tmp_path: Path, monkeypatch
) -> None:
    """Sampling the means costs seconds at scale: a small addition keeps them, a new language does not."""
    import rag.retrieve

    retriever.search("Llama 2 parameters", 2)
    before = dict(retriever._means.counts)
    sampled: list[dict] = []
    real = rag.retrieve.estimate_means
    monkeypatch.setattr(rag.retrieve, "estimate_means", lambda store, counts, name: sampled.append(dict(counts))
                        or real(store, counts, name))  # fmt: skip
    monkeypatch.setattr(rag.retrieve, "MEANS_DRIFT", 1.0)  # the 4-document fixture moves by 50% per document
    more = tmp_path / "more"
    more.mkdir()
    (more / "bees.md").write_text("Bees collect nectar and pollen from flowers in the garden.", encoding="utf-8")
    Ingestor(retriever.settings, retriever.store, retriever.embedder).ingest_paths([more / "bees.md"])
    retriever.refresh(force=True)
    assert sampled == [] and retriever._means.counts["en"] > before["en"]  # kept, counts brought up to date
    (more / "日本.md").write_text("これは日本語の文章です。ひらがなとカタカナがあります。", encoding="utf-8")
    Ingestor(retriever.settings, retriever.store, retriever.embedder).ingest_paths([more / "日本.md"])
    retriever.refresh(force=True)
    assert len(sampled) == 1 and sampled[0].get("ja", 0) > 0  # a new language: sampled again


def test_tied_scores_rank_the_same_way_in_every_process() -> None:
    """Similarities past the top of the range clip to the same relevance; the unclipped similarity decides, then
    BM25, then the id, whatever order the candidates came in."""
    from rag.retrieve import Candidates, Fusion

    fusion = Fusion(1.0, 1.0, 0.5, (0.8, 0.9), (0.05, 0.25))
    dense = {"a": 0.95, "b": 0.97, "c": 0.93, "d": 0.5}
    keyword = {"a": 0.0, "b": 0.0, "c": 0.0, "e": 0.2}
    for order in (list("abcde"), list("edcba"), list("cbeda")):
        found = Candidates("en", {k: dense[k] for k in order if k in dense},
                           {k: keyword[k] for k in order if k in keyword}, dict.fromkeys(order, "en"), {})  # fmt: skip
        scores = fusion.scores("en", found.dense, found.keyword, found.languages)
        assert scores["a"] == scores["b"] == scores["c"] == 1.0  # all three past 0.9
        assert found.ranked(scores) == ["b", "a", "c", "e", "d"]


@pytest.mark.parametrize("translated_coverage", [False, True])
def test_grounding_reads_a_chunk_in_the_other_language_in_translation(
    tmp_path: Path, monkeypatch, translated_coverage
) -> None:
    """An English question shares no word with the Chinese passage that answers it ("Pangu" is 盘古 there); in
    translation (参数, 盘古, 模型) it holds most of the question's words."""
    import rag.retrieve

    monkeypatch.setattr(rag.retrieve, "TRANSLATED_COVERAGE", translated_coverage)
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    settings = make_settings(tmp_path, translated_weight=1.0)
    Ingestor(settings, Store(settings), FakeEmbedder()).ingest_paths([folder])
    retriever = make_retriever(settings)
    question = "How many parameters does the Pangu model have?"
    found = retriever.candidates(question, 5)
    [pangu] = [cid for cid, chunk in found.rows.items() if "盘古" in chunk.text]
    _, coverage, _ = retriever.evidence(question, [pangu], found.rows, None)[pangu]
    assert (coverage > 0.5) is translated_coverage
    assert found.translated[pangu] > 0  # and the translated question found it by keywords
