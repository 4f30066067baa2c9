"""The chat history kept in ``st.session_state``: plain dicts, so it survives reruns and exports without objects.

A message is ``{"role": "user"|"assistant", "content": str}``. An assistant message also carries, copied from the
AnswerStream when it finished: ``kind`` (see :func:`answer_kind`), ``quotes`` (verbatim sentences with file and
page, shown first), ``generated`` and ``model`` (whose text ``content`` is), ``sources`` (file name, source
path, page, chunk id, chunk text, score) and ``closest`` (a refusal's line on the passage that came closest, or None).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from rag.answer import NO_ROOM_EN, NO_ROOM_ZH, is_chinese
from ui.text import escape_markdown, model_label, quote_markdown, where

Message = dict[str, Any]
AnswerKind = Literal["generated", "quotes", "abstained", "no_room"]
ABSTAINED_NOTE = "No passage in the documents was relevant enough to answer from, so the model was not asked."


def user_message(question: str) -> Message:
    return {"role": "user", "content": question}


def answer_kind(answer: Any) -> AnswerKind:
    """'abstained' (nothing relevant: no quotes, no model), 'no_room' (quotes, but the conversation left the model
    no room for sources), 'generated' (quotes, then the model's text) or 'quotes' (quote-only mode)."""
    if answer.abstained:
        return "no_room" if answer.text in (NO_ROOM_EN, NO_ROOM_ZH) else "abstained"
    return "generated" if answer.generated else "quotes"


def assistant_message(answer: Any, model: str | None = None) -> Message:
    """Snapshot of a finished AnswerStream (duck-typed: ``text``, ``abstained``, ``generated``, ``quotes``,
    ``sources`` of Hits; ``closest``, the NearMiss of a refusal, and ``question`` when present). ``model`` names the
    chat model that wrote a generated text."""
    quotes = getattr(answer, "quotes", None) or []
    closest = getattr(answer, "closest", None)
    return {
        "role": "assistant",
        "content": answer.text,
        "kind": answer_kind(answer),
        "abstained": bool(answer.abstained),
        "generated": bool(getattr(answer, "generated", False)),
        "model": model_label(model) if model and getattr(answer, "generated", False) else None,
        "quotes": [
            {"text": q.text, "source": q.source, "file_name": q.file_name, "page": q.page, "chunk_id": q.chunk_id}
            for q in quotes
        ],
        "sources": [
            {
                "file_name": h.file_name,
                "source": h.source,
                "page": h.page,
                "chunk_id": getattr(h, "chunk_id", ""),
                "text": h.text,
                "score": float(h.score),
                "relevance": float(h.relevance),
            }
            for h in answer.sources
        ],
        "closest": closest.describe(is_chinese(getattr(answer, "question", ""))) if closest is not None else None,
    }


def generated_label(message: Message) -> str:
    """The heading over a model's text: it says the text is generated, and by which model."""
    model = message.get("model")
    return f"Generated answer ({model})" if model else "Generated answer"


def quotes_for(message: Message, source: Message) -> list[str]:
    """The quoted sentences taken from this source's chunk (they are highlighted in it)."""
    chunk_id = source.get("chunk_id")
    return [q["text"] for q in message.get("quotes") or [] if chunk_id and q.get("chunk_id") == chunk_id]


def model_history(messages: list[Message]) -> list[dict[str, str]]:
    """What the answerer sees of earlier turns: roles and texts only."""
    return [{"role": m["role"], "content": m["content"]} for m in messages if m.get("content")]


def closing_stream(answer: Any) -> Iterator[str]:
    """Yield an answer's pieces; when abandoned (a rerun stops the script), close the model's generator at once.

    LlamaCppChat holds its lock while its generator is open: closing it here releases the model for the other
    sessions now rather than whenever the garbage collector gets to the half-read stream.
    """
    try:
        yield from answer
    finally:
        close = getattr(getattr(answer, "_pieces", None), "close", None)
        if close is not None:
            close()


def _quote(text: str) -> str:
    return "\n".join(f"> {escape_markdown(line.strip())}".rstrip() for line in text.strip().splitlines())


def _escaped_block(text: str) -> str:
    """Escaped line by line, line breaks kept: model output and questions render as the text they are."""
    lines = [escape_markdown(line.strip()) for line in text.strip().splitlines()]
    return "  \n".join(line for line in lines if line)


def _answer_lines(message: Message) -> list[str]:
    lines: list[str] = []
    quotes = message.get("quotes") or []
    if quotes:
        lines += ["#### Quoted from the documents", ""]
        for quote in quotes:
            place = escape_markdown(where(quote.get("file_name", ""), quote.get("page")))
            lines += [quote_markdown(quote.get("text", "")), "", place, ""]
    kind = message.get("kind")
    text = _escaped_block(message.get("content", ""))
    if kind == "generated" or (kind is None and text):
        lines += [f"#### {escape_markdown(generated_label(message))}", "", text or "_(no answer)_", ""]
    elif kind in ("abstained", "no_room"):
        lines += [text, ""]
    if kind == "abstained" or (kind is None and message.get("abstained")):
        lines += [f"_{ABSTAINED_NOTE}_", ""]
        if message.get("closest"):
            lines += [f"_{escape_markdown(message['closest'])}_", ""]
    return lines


def conversation_markdown(history: list[Message], title: str = "DocChat conversation") -> str:
    """The conversation as a Markdown file: questions, quotes, answers, and each answer's sources.

    Everything but our own headings is escaped, as in the chat: a model can be talked (by a document it reads) into
    writing a Markdown image whose URL carries data, and a viewer that opens this file would fetch it.
    """
    lines = [f"# {title}", ""]
    turn = 0
    for message in history:
        if message.get("role") == "user":
            turn += 1
            lines += [f"## Question {turn}", "", _escaped_block(message.get("content", "")), ""]
        elif message.get("role") == "assistant":
            lines += ["### Answer", "", *_answer_lines(message)]
            sources = message.get("sources") or []
            if sources:
                lines += ["#### Sources", ""]
                for number, source in enumerate(sources, start=1):
                    label = escape_markdown(where(source.get("file_name", ""), source.get("page")))
                    lines += [f"\\[{number}\\] {label}", "", _quote(source.get("text", "")), ""]
    return "\n".join(lines).rstrip() + "\n"
