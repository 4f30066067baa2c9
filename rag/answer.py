"""Grounded answers: retrieve, abstain when nothing is relevant, pack numbered sources, stream from the model.

The sources list is part of every answer, whether or not the model cited them: a small local model often forgets
to cite, but the user can still check where the answer came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from rag.config import Settings
from rag.models import ChatModel
from rag.retrieve import Hit, Retriever
from rag.tokenize import cjk_fraction, keyword_tokens

SYSTEM_EN = (
    "You answer questions using only the numbered sources you are given. Cite the sources you use as [1], [2]. "
    "If the sources do not contain the answer, say that the documents do not contain it. Answer in English."
)
SYSTEM_ZH = (
    "你只根据给出的编号资料回答问题，并用 [1]、[2] 标注引用的资料。"
    "如果资料中没有答案，就说文档中没有相关内容。请用中文回答。"
)
ABSTAIN_EN = "The documents do not contain an answer to this question."
ABSTAIN_ZH = "文档中没有找到这个问题的答案。"

Message = dict[str, str]

_FOLLOW_UP = re.compile(
    r"^(and|but|also|what about|how about|then|so)\b|\b(it|its|it's|they|them|their|this|that|these|those|he|she|"
    r"his|her|there)\b|^(那|那么|还有|并且|而且|另外)|它|他们|她们|其|这个|那个|这些|那些|该|呢\s*[？?]?\s*$",
    re.IGNORECASE,
)


def is_chinese(text: str) -> bool:
    return cjk_fraction(text) >= 0.3


def standalone_query(question: str, history: list[Message] | None) -> str:
    """Make a follow-up retrievable on its own by carrying the previous question's terms along.

    A 135M model rewrites questions badly; a follow-up detected by its pronouns or its opening word, or one with
    fewer than three content words, is searched together with the previous user question instead.
    """
    previous = [m["content"] for m in history or [] if m.get("role") == "user" and m.get("content", "").strip()]
    if not previous:
        return question
    if _FOLLOW_UP.search(question.strip()) or len(keyword_tokens(question)) < 3:
        return f"{previous[-1]} {question}"
    return question


def format_source(number: int, hit: Hit) -> str:
    where = f"{hit.file_name}, page {hit.page}" if hit.page else hit.file_name
    return f"[{number}] ({where})\n{hit.text}"


def pack_sources(hits: list[Hit], budget_tokens: int, count_tokens) -> list[Hit]:
    """Keep the best-ranked sources that fit the budget; the lowest-ranked are dropped first."""
    kept, used = [], 0
    for hit in hits:
        cost = count_tokens(format_source(len(kept) + 1, hit)) + 2
        if used + cost > budget_tokens:
            continue  # a shorter, lower-ranked source may still fit
        kept.append(hit)
        used += cost
    return kept


def build_messages(question: str, hits: list[Hit], history: list[Message] | None = None) -> list[Message]:
    system = SYSTEM_ZH if is_chinese(question) else SYSTEM_EN
    sources = "\n\n".join(format_source(i, hit) for i, hit in enumerate(hits, start=1))
    label = ("资料", "问题") if is_chinese(question) else ("Sources", "Question")
    messages: list[Message] = [{"role": "system", "content": system}]
    for turn in (history or [])[-4:]:
        if turn.get("role") in ("user", "assistant") and turn.get("content"):
            messages.append({"role": turn["role"], "content": turn["content"]})
    messages.append({"role": "user", "content": f"{label[0]}:\n{sources}\n\n{label[1]}: {question}"})
    return messages


@dataclass
class AnswerStream:
    """Iterate for text pieces; ``sources``, ``abstained`` and (after iteration) ``text`` describe the answer."""

    question: str
    query: str
    sources: list[Hit]
    abstained: bool
    _pieces: Iterator[str]
    text: str = ""
    messages: list[Message] = field(default_factory=list)

    def __iter__(self) -> Iterator[str]:
        for piece in self._pieces:
            self.text += piece
            yield piece

    def as_json(self) -> dict:
        return {
            "answer": self.text,
            "abstained": self.abstained,
            "sources": [h.as_json() | {"file_name": h.file_name} for h in self.sources],
        }


class Answerer:
    def __init__(self, settings: Settings, retriever: Retriever, chat_model: ChatModel) -> None:
        self.settings = settings
        self.retriever = retriever
        self.chat_model = chat_model

    def stream(
        self,
        question: str,
        history: list[Message] | None = None,
        *,
        top_k: int | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> AnswerStream:
        query = standalone_query(question, history)
        hits = self.retriever.search(query, top_k or self.settings.top_k)
        relevant = [h for h in hits if h.relevance >= self.settings.min_relevance]
        if not relevant:
            message = ABSTAIN_ZH if is_chinese(question) else ABSTAIN_EN
            return AnswerStream(question, query, [], True, iter([message]))
        max_tokens = max_tokens or self.settings.max_tokens
        overhead = self.chat_model.count_tokens(build_messages(question, [], history)[-1]["content"]) + 64
        for turn in build_messages(question, [], history)[:-1]:
            overhead += self.chat_model.count_tokens(turn["content"]) + 8
        budget = self.chat_model.n_ctx - max_tokens - overhead
        packed = pack_sources(relevant, budget, self.chat_model.count_tokens)
        messages = build_messages(question, packed, history)
        pieces = self.chat_model.stream_chat(
            messages,
            max_tokens=max_tokens,
            temperature=self.settings.temperature if temperature is None else temperature,
        )
        return AnswerStream(question, query, packed, False, pieces, messages=messages)

    def ask(self, question: str, history: list[Message] | None = None, **options) -> AnswerStream:
        answer = self.stream(question, history, **options)
        for _ in answer:
            pass
        return answer
