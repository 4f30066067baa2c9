"""Grounding, follow-up rewriting, context packing and the prompt, with fakes behind the real interfaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import Ingestor
from rag.answer import (
    ABSTAIN_EN,
    ABSTAIN_ZH,
    Answerer,
    build_messages,
    format_source,
    pack_sources,
    standalone_query,
)
from rag.config import Settings
from rag.models import EchoChat, FakeEmbedder
from rag.retrieve import Hit, Retriever
from rag.store import Store


def hit(text: str, page: int | None = None, name: str = "a.pdf") -> Hit:
    return Hit("id-" + text[:8], text, f"/docs/{name}", name, page, 0.5, 0.5, None, 0.9)


@pytest.fixture()
def answerer(tmp_path: Path) -> Answerer:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "llama.md").write_text(
        "Llama 2 was released by Meta in July 2023. The largest Llama 2 model has 70 billion parameters.",
        encoding="utf-8",
    )
    (folder / "盘古.md").write_text("盘古大模型由华为发布，参数量是10850亿。", encoding="utf-8")
    settings = Settings(
        store_dir=tmp_path / "store", embed_model="fake", llm_model="fake", chunk_size=64, chunk_overlap=8
    )
    store, embedder = Store(settings), FakeEmbedder()
    Ingestor(settings, store, embedder).ingest_paths([folder])
    return Answerer(settings, Retriever(settings, store, embedder), EchoChat())


def test_answer_cites_numbered_sources_and_returns_them(answerer: Answerer) -> None:
    answer = answerer.ask("Who released Llama 2 and when?")
    assert not answer.abstained
    assert answer.sources[0].file_name == "llama.md"
    assert "[1]" in answer.text  # the echo model repeats the numbers it was given
    prompt = answer.messages[-1]["content"]
    assert "[1] (llama.md)" in prompt and "Question: Who released Llama 2 and when?" in prompt
    assert "Answer in English" in answer.messages[0]["content"]


def test_chinese_question_gets_a_chinese_prompt(answerer: Answerer) -> None:
    answer = answerer.ask("盘古大模型的参数量是多少？")
    assert answer.sources[0].file_name == "盘古.md"
    assert "请用中文回答" in answer.messages[0]["content"]
    assert "问题: 盘古大模型的参数量是多少？" in answer.messages[-1]["content"]


def test_abstains_without_calling_the_model(answerer: Answerer) -> None:
    model: EchoChat = answerer.chat_model  # type: ignore[assignment]
    english = answerer.ask("What is the boiling point of mercury?")
    chinese = answerer.ask("红烧肉怎么做？")
    assert (english.text, english.abstained, english.sources) == (ABSTAIN_EN, True, [])
    assert (chinese.text, chinese.abstained) == (ABSTAIN_ZH, True)
    assert model.calls == []


def test_answer_json_shape(answerer: Answerer) -> None:
    data = answerer.ask("How many parameters does the largest Llama 2 model have?").as_json()
    assert set(data) == {"answer", "abstained", "sources"}
    source = data["sources"][0]
    assert {"text", "source", "page", "score"} <= set(source)
    assert source["source"].endswith("llama.md") and source["page"] is None


def test_follow_up_is_searched_with_the_previous_question(answerer: Answerer) -> None:
    history = [
        {"role": "user", "content": "Who released Llama 2?"},
        {"role": "assistant", "content": "Meta released it [1]."},
    ]
    answer = answerer.ask("And how many parameters does it have?", history)
    assert answer.query == "Who released Llama 2? And how many parameters does it have?"
    assert answer.sources[0].file_name == "llama.md"


@pytest.mark.parametrize(
    ("question", "expected_standalone"),
    [
        ("and how many parameters does it have?", True),
        ("What about its licence?", True),
        ("那它的参数量呢？", True),
        ("参数量呢", True),  # too few content words to stand alone
        ("What is the capital of Australia in the atlas?", False),
        ("盘古大模型由哪家公司发布的", False),
    ],
)
def test_standalone_query(question: str, expected_standalone: bool) -> None:
    history = [{"role": "user", "content": "Tell me about Llama 2"}]
    rewritten = standalone_query(question, history)
    assert (rewritten != question) is expected_standalone
    assert standalone_query(question, None) == question


def test_pack_sources_drops_the_lowest_ranked_first() -> None:
    hits = [hit("alpha " * 30), hit("beta " * 30), hit("gamma " * 30)]

    def count(text: str) -> int:
        return len(text.split())

    one_cost = count(format_source(1, hits[0])) + 2
    kept = pack_sources(hits, budget_tokens=2 * one_cost + 1, count_tokens=count)
    assert [h.text[:5] for h in kept] == ["alpha", "beta "]
    assert pack_sources(hits, budget_tokens=10, count_tokens=count) == []


def test_context_is_packed_to_the_model_window(answerer: Answerer) -> None:
    small = EchoChat(n_ctx=400 + answerer.settings.max_tokens)
    tight = Answerer(answerer.settings, answerer.retriever, small)
    answer = tight.ask("Who released Llama 2 and when?")
    total = sum(small.count_tokens(m["content"]) for m in answer.messages)
    assert total + answerer.settings.max_tokens <= small.n_ctx


def test_build_messages_keeps_recent_history_and_page_labels() -> None:
    history = [{"role": "user", "content": f"q{i}"} for i in range(10)]
    messages = build_messages("What is it?", [hit("Text on page three.", page=3)], history)
    assert messages[0]["role"] == "system"
    assert [m["content"] for m in messages[1:-1]] == ["q6", "q7", "q8", "q9"]
    assert "[1] (a.pdf, page 3)\nText on page three." in messages[-1]["content"]
