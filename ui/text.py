"""Document text shown in Streamlit Markdown: escaped so it stays inert, with the answer's support highlighted.

Streamlit renders Markdown (links, images, LaTeX, colour directives) but never raw HTML unless asked, and this app
never asks. Escaping every Markdown-significant character makes a chunk display exactly as written: a ``<script>``,
a ``[link](javascript:...)`` or ``**`` in a document is shown as text, never acted on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ingest.chunking import split_sentences
from rag.tokenize import keyword_tokens

# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones Markdown, GFM (tables, strikethrough,
# autolinks), Streamlit's directives (:orange[...], :material/x:) and LaTeX ($) give a meaning to.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=@^\"'])")
_CITATION = re.compile(r"\[\d+(?:\s*[,，]\s*\d+)*\]")
_BLANK_LINES = re.compile(r"\n\s*\n")


HIGHLIGHT = "orange-background"
MIN_SHARED = 2  # content words a sentence must share with the answer (fewer when the answer has fewer)
MIN_SHARE = 0.2  # ... and the share of the sentence's own content words they make up
MIN_QUOTED_CHARS = 6  # shorter pieces ("1.", "Yes.") are never matched against a quote
_QUANT_SUFFIX = re.compile(r"[.-](?:i?q\d\w*|f16|f32|bf16)$", re.IGNORECASE)


def escape_markdown(text: str) -> str:
    """Backslash-escape Markdown syntax so the text renders literally."""
    return _SPECIAL.sub(r"\\\1", text)


def _content_tokens(text: str) -> set[str]:
    # Single Latin letters come from contractions ("it's" -> "s") and carry no meaning.
    return {t for t in keyword_tokens(text) if len(t) > 1 or not t.isascii()}


def _flat(text: str) -> str:
    return " ".join(text.split()).rstrip("…").strip()


def _in_quotes(sentence: str, quotes: list[str]) -> bool:
    """Whether a sentence is (part of) a quote: quotes are verbatim sentences of this chunk, white space aside."""
    flat = _flat(sentence)
    return len(flat) >= MIN_QUOTED_CHARS and any(flat in quote or quote in flat for quote in quotes)


def highlight_supporting(chunk_text: str, answer_text: str, quotes: Iterable[str] = ()) -> list[tuple[str, bool]]:
    """Split a source into sentences and mark those the answer rests on: the quoted sentences of this chunk, and
    sentences sharing enough content words with the generated answer.

    Token overlap rather than model attribution: it is cheap, works for Chinese (jieba words + bigrams) and English
    alike, and only has to point the reader's eye, not prove anything. Joining the sentences gives the chunk back.
    """
    wanted = _content_tokens(_CITATION.sub(" ", answer_text))
    needed = min(MIN_SHARED, len(wanted))
    quoted = [q for q in (_flat(q) for q in quotes) if len(q) >= MIN_QUOTED_CHARS]
    parts = []
    for sentence in split_sentences(chunk_text):
        have = _content_tokens(sentence)
        shared = len(have & wanted)
        overlaps = bool(have) and needed > 0 and shared >= needed and shared / len(have) >= MIN_SHARE
        parts.append((sentence, overlaps or _in_quotes(sentence, quoted)))
    return parts


def quote_markdown(text: str) -> str:
    """A quoted sentence as a Markdown block quote, escaped like any document text."""
    return "> " + escape_markdown(" ".join(text.split()))


def model_label(name: str) -> str:
    """'SmolLM2-135M-Instruct.Q4_1.gguf' -> 'SmolLM2-135M-Instruct': the model, not its file."""
    return _QUANT_SUFFIX.sub("", re.sub(r"\.gguf$", "", name, flags=re.IGNORECASE)) or name


def _markdown_lines(text: str, highlight: bool) -> str:
    """Escape line by line; a highlight wraps each non-blank line, since a directive cannot span lines."""
    out = []
    for line in text.split("\n"):
        body = escape_markdown(line.strip())
        out.append(f":{HIGHLIGHT}[{body}]" if highlight and body else body)
    return "\n".join(out)


def highlighted_markdown(parts: list[tuple[str, bool]]) -> str:
    """Markdown for a chunk: escaped text, supporting sentences highlighted, line breaks kept."""
    pieces = []
    for sentence, supporting in parts:
        lead = sentence[: len(sentence) - len(sentence.lstrip())]
        trail = sentence[len(sentence.rstrip()) :]
        pieces.append(lead + _markdown_lines(sentence.strip(), supporting) + trail)
    text = _BLANK_LINES.sub("\n\n", "".join(pieces).strip())
    # A single newline is a soft break in Markdown; two trailing spaces keep the document's line breaks.
    return "\n\n".join(
        "  \n".join(line.strip() for line in para.split("\n") if line.strip()) for para in text.split("\n\n")
    )


def where(file_name: str, page: int | None) -> str:
    """'user-guide.pdf, page 3' or just the file name for formats without pages."""
    return f"{file_name}, page {page}" if page else file_name
