"""rag/language.py: languages told by their scripts (Han, kana, Hangul, Latin), not by "Han or not"."""

from __future__ import annotations

import pytest

from rag.language import detect_language
from rag.tokenize import keyword_tokens


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("What is the default chunk size?", "en"),
        ("默认的检索数量是多少？", "zh"),
        ("預設的檢索數量是多少？", "zh"),  # traditional Chinese is Chinese
        ("RAG_N_GPU_LAYERS 设为 -1 表示什么？", "zh"),  # an identifier is one word, not four
        ("Llama-2-70b 的参数文件有多大?", "zh"),
        ("What does 向量 mean in this article?", "en"),
        ("東京は日本の首都です。", "ja"),  # kanji with kana is Japanese
        ("モデルのパラメータ数は？", "ja"),
        ("한국어 문장입니다", "ko"),
        ("Привет, как дела?", "other"),
        ("12345 67", "en"),
        ("", "en"),
    ],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_kana_and_hangul_give_bigrams_and_lone_particles_are_dropped() -> None:
    assert keyword_tokens("한국어 문장") == ["한국", "국어", "문장"]
    tokens = keyword_tokens("東京は日本の首都です")
    assert "首都" in tokens and "です" in tokens
    assert "は" not in tokens and "の" not in tokens
