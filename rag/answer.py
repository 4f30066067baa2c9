"""Grounded answers: retrieve, abstain when nothing is relevant, quote the sentences that answer, then (optionally)
let the model write, with numbered sources packed into its window.

The quotes come first and are verbatim with file and page: whatever the model then writes is labelled as generated,
so nobody has to guess whether the answer text is right when the sentence that answers is already in hand. The
sources list is part of every answer, whether or not the model cited them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from rag.config import Settings
from rag.language import detect_language
from rag.models import ChatModel
from rag.quotes import Quote, RatedSentences, choose_quotes
from rag.retrieve import Hit, Retriever
from rag.tokenize import keyword_tokens

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
ABSENT_NAME_EN = "The documents never mention {names}, so they do not contain an answer to this question."
ABSENT_NAME_ZH = "文档中没有出现{names}，没有找到这个问题的答案。"
NO_ROOM_EN = (
    "The conversation leaves no room for sources in the model's window (RAG_N_CTX); start a new conversation, "
    "or raise RAG_N_CTX."
)
NO_ROOM_ZH = "对话太长，模型的上下文窗口（RAG_N_CTX）已放不下任何资料；请开始新的对话，或调大 RAG_N_CTX。"
HISTORY_TURNS = 4

Message = dict[str, str]
AnswerMode = Literal["quotes", "generate"]

# A follow-up names what it is about with a pronoun or starts by continuing the last question. Only words that are
# pronouns whatever their position count ("it", "they", 它); "this"/"that" only when they end the question ("how big
# is that?"), since elsewhere they are determiners or relative pronouns ("files that are encrypted"). 其 and 该 only
# open a question (其参数量, 该模型), never inside a word (其他, 应该).
_FOLLOW_UP = re.compile(
    r"^(and|but|also|what about|how about|then|so)\b"
    r"|\b(it|its|it's|they|them|their|theirs|he|him|his|she|her)\b"
    r"|\b(this|that|these|those)\s*[?？.!。！]*\s*$"
    r"|^(那|那么|还有|并且|而且|另外)|^(其|该)(?!他|它|实|次)|^(这个|那个|这些|那些)|它|它们|他们|她们"
    r"|呢\s*[？?]?\s*$",
    re.IGNORECASE,
)
_CITATION = re.compile(r"\s*\[\d+(?:\s*[,，]\s*\d+)*\]")


def is_chinese(text: str) -> bool:
    return detect_language(text) == "zh"


def is_follow_up(question: str) -> bool:
    return bool(_FOLLOW_UP.search(question.strip())) or not keyword_tokens(question)


def standalone_query(question: str, history: list[Message] | None) -> str:
    """Make a follow-up retrievable on its own by carrying the previous question's terms along.

    A 135M model rewrites questions badly; a follow-up detected by its pronouns or its opening word (or one with no
    content word at all, such as "why?") is searched together with the previous user question instead.
    """
    previous = [m["content"] for m in history or [] if m.get("role") == "user" and m.get("content", "").strip()]
    if previous and is_follow_up(question):
        return f"{previous[-1]} {question}"
    return question


def format_source(number: int, hit: Hit) -> str:
    where = f"{hit.file_name}, page {hit.page}" if hit.page else hit.file_name
    return f"[{number}] ({where})\n{hit.text}"


def pack_sources(hits: list[Hit], budget_tokens: int, count_tokens: Callable[[str], int]) -> list[Hit]:
    """Keep the best-ranked sources that fit the budget; the lowest-ranked are dropped first."""
    kept: list[Hit] = []
    used = 0
    for hit in hits:
        cost = count_tokens(format_source(len(kept) + 1, hit)) + 2
        if used + cost > budget_tokens:
            continue  # a shorter, lower-ranked source may still fit
        kept.append(hit)
        used += cost
    return kept


def build_messages(question: str, hits: list[Hit], history: list[Message] | None = None) -> list[Message]:
    chinese = is_chinese(question)
    sources = "\n\n".join(format_source(i, hit) for i, hit in enumerate(hits, start=1))
    label = ("资料", "问题") if chinese else ("Sources", "Question")
    messages: list[Message] = [{"role": "system", "content": SYSTEM_ZH if chinese else SYSTEM_EN}]
    for turn in (history or [])[-HISTORY_TURNS:]:
        if turn.get("role") in ("user", "assistant") and turn.get("content"):
            # An earlier answer's [1], [2] point into an earlier source list: drop them, keep the words.
            content = _CITATION.sub("", turn["content"]) if turn["role"] == "assistant" else turn["content"]
            messages.append({"role": turn["role"], "content": content})
    messages.append({"role": "user", "content": f"{label[0]}:\n{sources}\n\n{label[1]}: {question}"})
    return messages


@dataclass(frozen=True)
class NearMiss:
    """The retrieved chunk that came closest to grounding a refused answer. Shown with the refusal, so that a person
    can tell a question the documents do not answer from one they answer in other words ("citation mark" where the
    guide says "citation badge")."""

    file_name: str
    page: int | None
    evidence: float
    needed: float  # RAG_MIN_RELEVANCE

    def describe(self, chinese: bool = False) -> str:
        shown = math.floor(self.evidence * 100) / 100  # rounded down: 0.429 must not read as the 0.43 it missed
        if chinese:
            place = f"{self.file_name}，第 {self.page} 页" if self.page else self.file_name
            return (f"最接近的段落：{place}（依据 {shown:.2f}，回答需要 {self.needed:.2f}）。"
                    "用文档里的说法提问也许有帮助。")  # fmt: skip
        place = f"{self.file_name}, page {self.page}" if self.page else self.file_name
        return (f"Closest passage: {place} (evidence {shown:.2f}; {self.needed:.2f} needed to answer). "
                "Asking in the documents' own words may help.")  # fmt: skip


@dataclass
class AnswerStream:
    """Iterate for the generated text's pieces; ``quotes``, ``sources`` and ``abstained`` are known before that."""

    question: str
    query: str
    sources: list[Hit]
    abstained: bool
    _pieces: Iterator[str]
    quotes: list[Quote] = field(default_factory=list)
    generated: bool = False  # whether the text comes from the model (it is labelled so)
    retrieved: list[Hit] = field(default_factory=list)  # everything retrieval returned, before grounding and packing
    text: str = ""
    messages: list[Message] = field(default_factory=list)
    closest: NearMiss | None = None  # set when the evidence fell short of RAG_MIN_RELEVANCE

    def __iter__(self) -> Iterator[str]:
        for piece in self._pieces:
            self.text += piece
            yield piece

    def as_json(self) -> dict:
        return {
            "answer": self.text,
            "generated": self.generated,
            "abstained": self.abstained,
            "quotes": [q.as_json() for q in self.quotes],
            "sources": [h.as_json() for h in self.sources],
        }


class Answerer:
    def __init__(self, settings: Settings, retriever: Retriever, chat_model: ChatModel | Callable[[], ChatModel]):
        self.settings = settings
        self.retriever = retriever
        self._chat_model = chat_model

    @property
    def chat_model(self) -> ChatModel:
        if callable(self._chat_model) and not hasattr(self._chat_model, "stream_chat"):
            self._chat_model = self._chat_model()
        return self._chat_model  # type: ignore[return-value]

    def stream(
        self,
        question: str,
        history: list[Message] | None = None,
        *,
        top_k: int | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        mode: AnswerMode | None = None,
    ) -> AnswerStream:
        query = standalone_query(question, history)
        hits = self.retriever.search(query, top_k or self.settings.top_k, judge=question)
        chinese = is_chinese(question)
        abstain, closest = None, None
        rated = self.rate_sentences(question, hits)
        if not hits or self.evidence(hits, rated) < self.settings.min_relevance:
            abstain = ABSTAIN_ZH if chinese else ABSTAIN_EN
            closest = self.near_miss(hits, rated)
        elif self.settings.refuse_unknown_names and (missing := self.retriever.absent_names(question)):
            if chinese:
                abstain = ABSENT_NAME_ZH.format(names="、".join(f"“{n}”" for n in missing))
            else:
                abstain = ABSENT_NAME_EN.format(names=", ".join(f'"{n}"' for n in missing))
        if abstain:
            return AnswerStream(question, query, [], True, iter([abstain]), retrieved=hits, closest=closest)
        sources = self.passages(hits, rated)
        quotes = self.quotes(question, sources, rated)
        if (mode or self.settings.resolved_answer_mode) == "quotes":
            return AnswerStream(question, query, sources, False, iter(()), quotes=quotes, retrieved=hits)

        max_tokens = max_tokens or self.settings.max_tokens
        history = list(history or [])
        packed: list[Hit] = []
        while True:
            budget = self._source_budget(question, history, max_tokens)
            packed = pack_sources(sources, budget, self.chat_model.count_tokens) if budget > 0 else []
            if packed or not history:
                break
            history = history[2:]  # the oldest turn goes before any source does
        if not packed:
            no_room = NO_ROOM_ZH if chinese else NO_ROOM_EN
            return AnswerStream(question, query, [], True, iter([no_room]), quotes=quotes, retrieved=hits)
        messages = build_messages(question, packed, history)
        pieces = self.chat_model.stream_chat(
            messages,
            max_tokens=max_tokens,
            temperature=self.settings.temperature if temperature is None else temperature,
        )
        return AnswerStream(
            question, query, packed, False, pieces, quotes=quotes, generated=True, messages=messages, retrieved=hits
        )

    def ask(self, question: str, history: list[Message] | None = None, **options) -> AnswerStream:
        answer = self.stream(question, history, **options)
        for _ in answer:
            pass
        return answer

    def rate_sentences(self, question: str, hits: list[Hit]) -> RatedSentences:
        """Every sentence of ``hits`` against the user's own question, once for grounding and quotes."""
        return RatedSentences(question, hits, self.retriever.sentence_similarity)

    def evidence(self, hits: list[Hit], rated: RatedSentences, hit: Hit | None = None) -> float:
        """How well the retrieved text answers the question, to compare with RAG_MIN_RELEVANCE: the best chunk's
        relevance plus RAG_SENTENCE_WEIGHT times the similarity of the sentence closest to the question (of ``hit``
        alone when given). A chunk can share a question's words and topic while no sentence of it says anything
        close to what is asked ("How many bits are used for the exponent in an IEEE-754 double?" over a text on
        floats); the closest sentence tells those apart better than the chunk alone (bench/calibrate_grounding.py)."""
        relevance = hit.relevance if hit is not None else max((h.relevance for h in hits), default=0.0)
        return relevance + self.settings.sentence_weight * rated.best(hit)

    def near_miss(self, hits: list[Hit], rated: RatedSentences) -> NearMiss | None:
        """The hit with the most evidence of its own, for a refusal to point at."""
        if not hits:
            return None
        hit = max(hits, key=lambda h: self.evidence(hits, rated, h))
        evidence = self.evidence(hits, rated, hit)
        return NearMiss(hit.file_name, hit.page, evidence, self.settings.min_relevance)

    def passages(self, hits: list[Hit], rated: RatedSentences) -> list[Hit]:
        """What reaches the prompt once grounding passed: all top-k hits in rank order, or only those whose own
        evidence reaches the threshold when RAG_FILTER_SOURCES is on. Off by default, by measurement
        (bench/answer_eval.py, tune half): filtering lowered context recall 0.910 -> 0.848 and quote hit 0.674 ->
        0.650, dropping gold chunks that the vectors or neighbour smoothing had found without enough word overlap."""
        if not self.settings.filter_sources:
            return hits
        return [h for h in hits if self.evidence(hits, rated, h) >= self.settings.min_relevance]

    def _source_budget(self, question: str, history: list[Message], max_tokens: int) -> int:
        """Tokens left for sources: the window less the answer, the prompt around the sources and the history,
        and never more than RAG_CONTEXT_TOKENS (time to first token grows with every prompt token)."""
        count = self.chat_model.count_tokens
        frame = build_messages(question, [], history)
        overhead = sum(count(m["content"]) + 8 for m in frame) + 64
        room = self.chat_model.n_ctx - max_tokens - overhead
        return min(room, self.settings.context_tokens)

    def quotes(self, question: str, sources: list[Hit], rated: RatedSentences | None = None) -> list[Quote]:
        idf = self.retriever.keyword_index.idf(keyword_tokens(question))
        translation = self.retriever.translation(question, detect_language(question))
        similarity = rated if rated is not None else self.retriever.sentence_similarity
        return choose_quotes(question, sources, similarity, idf, translation)
