"""Dictionary translation of question words (rag/dictionary.py) and weighted keyword queries."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag import dictionary
from rag.keyword_index import IndexedChunk, IndexedDoc, KeywordIndex
from rag.retrieve import Fusion
from rag.tokenize import keyword_tokens


def test_english_phrases_translate_to_chinese_headwords_longest_first() -> None:
    pairs = dictionary.english_to_chinese("What do Mongolians call the Milky Way?")
    assert (["milky", "way"], ["天河", "天汉", "星汉", "银河", "银汉"]) in pairs  # one gloss, not "milky" and "way"
    assert not any("道路" in found for _, found in pairs)
    assert (["mongolian"], []) in pairs  # no entry: the word stays as it is


def test_chinese_words_translate_to_their_glosses() -> None:
    pairs = dictionary.chinese_to_english("蒙古人把银河叫作什么？")
    assert (["银河"], [("milky", "way")]) in pairs
    # a Latin-script name stays as it is
    pairs = dictionary.chinese_to_english("GPT大模型")
    assert (["模型"], [("model",), ("mold",), ("matrix",), ("pattern",)]) in pairs and (["gpt"], []) in pairs
    # "/country; nation; state/": synonyms separated by ";" are glosses of their own
    assert (["国家"], [("country",), ("nation",), ("state",)]) in dictionary.chinese_to_english("哪些国家？")


@pytest.mark.parametrize("whole", [False, True])
def test_a_chinese_word_translated_by_a_phrase_needs_all_its_words(monkeypatch, whole) -> None:
    """红烧肉 is "red braised pork": a chunk that only says "red" does not hold it (an off-topic cooking question
    passed grounding over an English article through "red")."""
    monkeypatch.setattr(dictionary, "WHOLE_GLOSSES", whole)
    held = {"red", "giant", "star"}

    def known(tokens):
        return {t: 1.0 for t in tokens if t in held}

    translation = dictionary.translate("红烧肉怎么做？", "zh", known)
    assert translation.coverage({"red", "giant"}, absent=1.0) == (0.0 if whole else 1.0)
    held.update({"braised", "pork"})
    translation = dictionary.translate("红烧肉怎么做？", "zh", known)
    assert translation.coverage({"red", "braised", "pork"}, absent=1.0) == 1.0
    assert translation.coverage({"red"}, absent=1.0) == (0.0 if whole else 1.0)
    # a catalogue number after the name ("Pleiades M45") is not a word a chunk must hold; a plain number ("32 bit") is
    held = {"pleiade", "bit"}
    assert dictionary.translate("昴星团", "zh", known).coverage({"pleiade"}, absent=1.0) == 1.0
    assert dictionary.translate("三十二位元", "zh", known).coverage({"bit"}, absent=1.0) == (0.0 if whole else 1.0)


@pytest.mark.parametrize("merge", [False, True])
def test_words_jieba_cuts_apart_are_joined_when_the_dictionary_knows_them(monkeypatch, merge) -> None:
    """jieba cuts 昴星团 into 昴 / 星团 (and drops the one-character 昴): "Pleiades" was never asked for."""
    monkeypatch.setattr(dictionary, "MERGE_COMPOUNDS", merge)
    pairs = dictionary.chinese_to_english("萨米人怎么称呼昴星团？")
    assert ((["昴星团"], [("pleiade", "m45")]) in pairs) is merge
    assert (["星团"] in [source for source, _ in pairs]) is not merge


def test_translations_the_collection_lacks_are_dropped_and_the_rest_share_the_weight() -> None:
    held = {"阶段", "模型"}

    def known(tokens):
        return {t: 1.0 for t in tokens if t in held}

    weights = dictionary.translate("Into which stages is the model divided?", "en", known).weights()
    assert set(weights) == held  # 分期, 戏台, 地步 ... are not in this collection
    # each English word's weight goes whole to its one translation the collection holds (jieba word + bigram: 2)
    assert weights["阶段"] == pytest.approx(2.0) and weights["模型"] == pytest.approx(2.0)
    held.add("分期")  # now "stage" has two translations here: they share its weight
    shared = dictionary.translate("Into which stages is the model divided?", "en", known).weights()
    assert shared["阶段"] == pytest.approx(1.0) and shared["分期"] == pytest.approx(1.0)
    assert dictionary.translate("これは何ですか", "ja", known).weights() == {}


def test_weighted_query_scores_like_repeated_tokens(tmp_path: Path) -> None:
    index = KeywordIndex.open(tmp_path / "kw.sqlite")
    texts = {"a": "the galaxy and the milky way", "b": "a way through the garden", "c": "stars of the galaxy"}
    index.apply([IndexedDoc(cid, cid, [IndexedChunk(cid, 0, keyword_tokens(text))]) for cid, text in texts.items()])
    repeated = dict(index.search(["milky", "milky", "way"], 5))
    weighted = dict(index.search({"milky": 2.0, "way": 1.0}, 5))
    assert weighted.keys() == repeated.keys() and all(weighted[k] == pytest.approx(repeated[k]) for k in weighted)
    half = dict(index.search({"milky": 0.5, "way": 1.0}, 5))
    assert half["a"] < weighted["a"] and half["b"] == pytest.approx(weighted["b"])
    assert index.idf({"milky": 0.5}) == pytest.approx({"milky": 0.5 * index.idf(["milky"])["milky"]})


def test_translation_counts_only_for_chunks_in_another_language() -> None:
    fusion = Fusion(1.0, 1.0, 0.0, translated_weight=2.0)
    scores = fusion.scores("en", {}, {}, {"zh1": "zh", "en1": "en"}, {"zh1": 0.5, "en1": 0.5})
    assert scores == {"zh1": pytest.approx(1.0), "en1": 0.0}
    assert Fusion(1.0, 1.0, 0.0).scores("en", {}, {}, {"zh1": "zh"}, {"zh1": 0.5}) == {"zh1": 0.0}


def test_translated_coverage_counts_a_word_once_whichever_translation_the_chunk_holds() -> None:
    held = {"阶段": 2.0, "分期": 2.0, "模型": 1.0}

    def known(tokens):
        return {t: held[t] for t in tokens if t in held}

    translation = dictionary.translate("Which stages does the Zorblax model have?", "en", known)
    assert sorted(map(sorted, translation.groups)) == [[["分期", "分期"], ["阶段", "阶段"]], [["模型", "模型"]]]
    assert translation.untranslated == ["zorblax"]  # no chunk holds it: it weighs as much as the rarest
    assert translation.idf == held  # the one lookup's result, kept for grounding
    absent = 5.0
    full = translation.coverage({"阶段", "模型", "zorblax"}, absent)
    either = translation.coverage({"分期", "模型"}, absent)
    assert full == pytest.approx(1.0) and either == pytest.approx(3.0 / 8.0)
    assert translation.coverage(set(), absent) == 0.0
    assert translation.weighted_idf() == pytest.approx({"阶段": 2.0, "分期": 2.0, "模型": 2.0})


def test_parsed_tables_are_cached_and_a_damaged_cache_is_parsed_again(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DOCCHAT_CACHE_DIR", str(tmp_path))
    dictionary._read_tables.cache_clear()
    try:
        parsed = dictionary._read_tables()
        [cached] = (tmp_path / "cedict").iterdir()
        assert not list((tmp_path / "cedict").glob(".*.tmp"))
        dictionary._read_tables.cache_clear()
        assert dictionary._read_tables() == parsed  # read back from the file
        cached.write_bytes(cached.read_bytes()[:1000])  # a write cut short
        dictionary._read_tables.cache_clear()
        assert dictionary._read_tables() == parsed and cached.stat().st_size > 1000  # parsed and written again
    finally:
        dictionary._read_tables.cache_clear()
