"""Document text shown in Streamlit Markdown: escaped so it stays inert, with the answer's support highlighted.

Streamlit renders Markdown (links, images, LaTeX, colour directives) but never raw HTML unless asked, and this app
never asks. Escaping every Markdown-significant character makes a chunk display exactly as written: a ``<script>``,
a ``[link](javascript:...)`` or ``**`` in a document is shown as text, never acted on.
"""

from __future__ import annotations

import itertools
import re
import unicodedata

from ingest.chunking import split_sentences
from rag.tokenize import keyword_tokens

# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones Markdown, GFM (tables, strikethrough,
# autolinks), Streamlit's directives (:orange[...], :material/x:) and LaTeX ($) give a meaning to.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=@^\"'])")
_CITATION = re.compile(r"\[\d+(?:\s*[,，]\s*\d+)*\]")
_BLANK_LINES = re.compile(r"\n\s*\n")

_LINE_END = (".", "!", "?", ":", ";", "。", "！", "？", "：", "；", "…")
_LIST_START = re.compile(r"^\s*([-*•·]|\d+[.)])\s")
FULL_LINE = 60  # display columns: a PDF line this wide was wrapped by the layout, not ended by the author

HIGHLIGHT = "orange-background"
MIN_SHARED = 2  # content words a sentence must share with the answer (fewer when the answer has fewer)
MIN_SHARE = 0.2  # ... and the share of the sentence's own content words they make up


def escape_markdown(text: str) -> str:
    """Backslash-escape Markdown syntax so the text renders literally."""
    return _SPECIAL.sub(r"\\\1", text)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _is_wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in "WF"


def unwrap_lines(text: str) -> str:
    """Join lines that PDF layout wrapped, keep the ones an author ended (headings, list items, sentence ends).

    Extracted PDF text breaks every printed line; shown as is, a highlighted sentence becomes a ragged staircase.
    A line counts as wrapped when it is nearly full width and does not end a sentence; Chinese lines join without
    a space.
    """
    lines = text.split("\n")
    out = lines[0]
    for previous, line in itertools.pairwise(lines):
        prev = previous.rstrip()
        soft = (
            _width(prev) >= FULL_LINE and not prev.endswith(_LINE_END) and line.strip() and not _LIST_START.match(line)
        )
        if not soft:
            out += "\n" + line
        elif _is_wide(prev[-1]) and _is_wide(line.lstrip()[0]):
            out = out.rstrip() + line.lstrip()
        else:
            out = out.rstrip() + " " + line.lstrip()
    return out


def _content_tokens(text: str) -> set[str]:
    # Single Latin letters come from contractions ("it's" -> "s") and carry no meaning.
    return {t for t in keyword_tokens(text) if len(t) > 1 or not t.isascii()}


def highlight_supporting(chunk_text: str, answer_text: str) -> list[tuple[str, bool]]:
    """Split a source into sentences and mark those sharing enough content words with the answer.

    Token overlap rather than model attribution: it is cheap, works for Chinese (jieba words + bigrams) and English
    alike, and only has to point the reader's eye, not prove anything. Joining the sentences gives the chunk back.
    """
    wanted = _content_tokens(_CITATION.sub(" ", answer_text))
    needed = min(MIN_SHARED, len(wanted))
    parts = []
    for sentence in split_sentences(chunk_text):
        have = _content_tokens(sentence)
        shared = len(have & wanted)
        parts.append((sentence, bool(have) and needed > 0 and shared >= needed and shared / len(have) >= MIN_SHARE))
    return parts


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
