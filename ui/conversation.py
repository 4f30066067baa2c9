"""The chat history kept in ``st.session_state``: plain dicts, so it survives reruns and exports without objects.

A message is ``{"role": "user"|"assistant", "content": str}``; an assistant message also carries ``sources`` (file
name, source path, page, chunk text, score) and ``abstained``, copied from the AnswerStream when it finished.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ui.text import escape_markdown, where

Message = dict[str, Any]


def user_message(question: str) -> Message:
    return {"role": "user", "content": question}


def assistant_message(answer: Any) -> Message:
    """Snapshot of a finished AnswerStream (duck-typed: ``text``, ``abstained``, ``sources`` of Hits)."""
    return {
        "role": "assistant",
        "content": answer.text,
        "abstained": bool(answer.abstained),
        "sources": [
            {"file_name": h.file_name, "source": h.source, "page": h.page, "text": h.text, "score": float(h.score)}
            for h in answer.sources
        ],
    }


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


def conversation_markdown(history: list[Message], title: str = "DocChat conversation") -> str:
    """The conversation as a Markdown file: questions, answers, and each answer's sources with the quoted passage.

    Questions and answers are kept as written (they are the user's and the model's Markdown); document text is
    escaped so a passage can never turn into a link or markup in whatever viewer opens the file.
    """
    lines = [f"# {title}", ""]
    turn = 0
    for message in history:
        if message.get("role") == "user":
            turn += 1
            lines += [f"## Question {turn}", "", message.get("content", "").strip(), ""]
        elif message.get("role") == "assistant":
            lines += ["### Answer", "", message.get("content", "").strip() or "_(no answer)_", ""]
            sources = message.get("sources") or []
            if message.get("abstained"):
                lines += ["_No passage in the documents was relevant enough to answer from._", ""]
            if sources:
                lines += ["#### Sources", ""]
                for number, source in enumerate(sources, start=1):
                    label = escape_markdown(where(source.get("file_name", ""), source.get("page")))
                    lines += [f"[{number}] {label}", "", _quote(source.get("text", "")), ""]
    return "\n".join(lines).rstrip() + "\n"
