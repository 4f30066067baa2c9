"""CJK-aware chunking on top of llama-index's SentenceSplitter.

The splitter is configured, not rewritten: sentences end at 。！？；… as well as . ! ?, sizes are counted in the
embedding model's own tokens (MiniLM truncates at 256, so a chunk that is too long is silently cut off), and
boilerplate (page numbers, running headers) never becomes a chunk.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llama_index.core.node_parser import SentenceSplitter

# A sentence ends after CJK terminal punctuation, or after . ! ? followed by a space; closing quotes and brackets
# and reference markers (Wikipedia's "...in 1991.[42] Its", "...。[3]") stay with the sentence they close.
_CLOSING = r"(?:[”’」』）)\]\"'»]|\[[^\[\]\n]{1,30}\])*"
_SENTENCE_END = re.compile(rf"(?<=[。！？；…!?;]){_CLOSING}|(?<=[.!?]){_CLOSING}(?=\s)")
# A period after these does not end the sentence: "The Milky Way is called Lodde-raiddaras (lit. bird path)", nor
# after an initial or an initialism ("George W. Bush", "Washington, D.C. and"), nor after "No." or "c." before a
# number ("No. 1", "born c. 1956").
_ABBREVIATION = re.compile(
    r"(?:(?:^|[\s(\[])(?:lit|e\.g|i\.e|cf|vs|viz|approx|ca|fig|figs|eq|vol|pp|mr|mrs|ms|dr|prof|st|jr|sr|et al"
    r"|jan|feb|apr|jun|jul|aug|sept?|oct|nov|dec|gen|gov|sen|rep|lt|col|capt|sgt|mt|ft|inc|ltd|corp|(?-i:[A-Z]))"
    r"|\b(?:[^\W\d_]\.)+[^\W\d_])\.$",
    re.IGNORECASE,
)
_NEXT_CHARACTER = re.compile(r"\s*(\S)")
_BEFORE_NUMBER = re.compile(r"(?:^|[\s(\[])(?:no|nos|c|p|art|sec|ch|op|ed)\.$", re.IGNORECASE)
_SECONDARY = r"[^,.;，、；。？！]+[,.;，、；。？！]?|[,.;，、；。？！]"
_MEANINGFUL = re.compile(r"[^\W\d_]", re.UNICODE)


# A line ends with sentence punctuation, or starts a list item: the author ended it, not the page's width.
_LINE_END = (".", "!", "?", ":", ";", "。", "！", "？", "：", "；", "…")
_LIST_START = re.compile(r"^\s*([-*•·]|\d+[.)])\s")
# A line that is not indented, not a Markdown heading, quote or table row, a blank line, then lower case.
_CUT_PHRASE = re.compile(r"^(?P<phrase>[^\s#>|][^\n]*)\n[ \t]*\n(?=[a-z])", re.MULTILINE)
FULL_LINE = 60  # display columns: a PDF line this wide was wrapped by the layout, not ended by the author
# Join a line that goes on in lower case to the one before (hard-wrapped text and Markdown). bench/tune_quotes.py
# measures quotes with and without it in one run.
JOIN_CONTINUATIONS = True


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _is_wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in "WF"


def unwrap_lines(text: str) -> str:
    """Join lines that PDF layout or a text editor wrapped, keep the ones an author ended (headings, list items,
    sentence ends).

    Extracted PDF text breaks every printed line, and text and Markdown files are often wrapped by their editor (or
    one clause per line); shown as is, a highlighted sentence becomes a ragged staircase, and a quote picked line by
    line stops mid-sentence ("The very first article about Python was"). A line counts as wrapped when it does not
    end a sentence and is nearly full width, or the next line goes on in lower case or closes a bracket the line
    opened ("in hexadecimal (base" / "16), again giving...") (neither indented: code keeps its lines). A short phrase
    that a blank line cuts off from the lower-case rest of its sentence (web pages turned to text: "Mother Hen
    (Kvachka)" / "" / "is the best-known constellation") joins it too. Chinese lines join without a space.
    """
    if JOIN_CONTINUATIONS:
        text = _CUT_PHRASE.sub(_join_cut_phrase, text)
    lines = text.split("\n")
    out = lines[0]
    for previous, line in itertools.pairwise(lines):
        prev = previous.rstrip()
        soft = (
            prev
            and not prev.endswith(_LINE_END)
            and line.strip()
            and not _LIST_START.match(line)
            and (_width(prev) >= FULL_LINE or (JOIN_CONTINUATIONS and _continues(prev, line)))
        )
        if not soft:
            out += "\n" + line
        elif _is_wide(prev[-1]) and _is_wide(line.lstrip()[0]):
            out = out.rstrip() + line.lstrip()
        else:
            out = out.rstrip() + " " + line.lstrip()
    return out


def _continues(prev: str, line: str) -> bool:
    """``line`` carries on ``prev``'s sentence: it starts with a lower-case Latin letter, or ``prev`` leaves a bracket
    open, and neither is indented."""
    if prev[:1].isspace() or line[:1].isspace():
        return False
    opened = prev.count("(") > prev.count(")") or prev.count("[") > prev.count("]")
    return opened or (line[:1].isascii() and line[:1].islower())


def _join_cut_phrase(match: re.Match[str]) -> str:
    phrase = match.group("phrase")
    if (
        _width(phrase) >= FULL_LINE
        or phrase.rstrip().endswith(_LINE_END)
        or _LIST_START.match(phrase)
        or any(_is_wide(ch) for ch in phrase)  # a Chinese heading before an English word is not one sentence
    ):
        return match.group(0)
    return phrase.rstrip() + " "


def _continues_after_period(text: str, period: int, end: int) -> bool:
    """Whether the period before index ``period`` (its closing quotes and brackets end at ``end``) ends no sentence:
    after an abbreviation or an initial, "No." before a number, or when the next word goes on in lower case ("in the
    U.S.) won 3 games", "etc. and")."""
    following = _NEXT_CHARACTER.match(text, end)
    after = following.group(1) if following else ""
    if after.islower() and after.isascii():
        return True
    begin = max(0, period - 10)
    if after.isdigit() and _BEFORE_NUMBER.search(text, begin, period):
        return True
    return bool(_ABBREVIATION.search(text, begin, period))


def split_sentences(text: str) -> list[str]:
    """Split keeping every character, so chunks joined back are the original text."""
    pieces, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        if text[match.start() - 1] == "." and _continues_after_period(text, match.start(), end):
            continue
        if end > start:
            pieces.append(text[start:end])
            start = end
    if start < len(text):
        pieces.append(text[start:])
    return [p for p in pieces if p]


def make_splitter(tokenize: Callable[[str], list], chunk_size: int, chunk_overlap: int) -> SentenceSplitter:
    # Imported here: llama_index costs 1.3 s at import, and a re-run over unchanged files never splits anything.
    from llama_index.core.node_parser import SentenceSplitter

    return SentenceSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        tokenizer=tokenize,
        chunking_tokenizer_fn=split_sentences,
        secondary_chunking_regex=_SECONDARY,
        paragraph_separator="\n\n",
        include_metadata=False,
        include_prev_next_rel=False,
    )


def is_boilerplate(chunk: str) -> bool:
    """Nothing but whitespace, digits and punctuation (page numbers, rules, dot leaders)."""
    return len(_MEANINGFUL.findall(chunk)) < 2


# A page number before or after a running header or footer ("12 ACME Handbook", "https://example.org/page 3/25"), or
# the whole line ("Page 3 of 12"): the line differs on every page only by it.
_PAGE_LINE = re.compile(
    r"page\s*\d{1,4}(?:\s*(?:/|of)\s*\d{1,4})?|第\s*\d{1,4}\s*[页頁](?:\s*[,，/]?\s*共\s*\d{1,4}\s*[页頁])?",
    re.IGNORECASE,
)
_TRAILING_PAGE = re.compile(r"\s+\d{1,3}(?:\s*(?:/|of)\s*\d{1,4})?$")
_LEADING_PAGE = re.compile(r"^\d{1,3}\s+")


def _furniture_key(line: str) -> str:
    """The line without its page number (a bare number stays itself: it may be a table's value)."""
    line = line.strip()
    if _PAGE_LINE.fullmatch(line):
        return "page #"
    key = _TRAILING_PAGE.sub("", line)
    key = key if key != line else _LEADING_PAGE.sub("", line)
    return key if _MEANINGFUL.search(key) else line


def repeated_lines(pages: Iterable[str], min_pages: int = 3, share: float = 0.6) -> set[str]:
    """Lines (running headers and footers) that stand on most pages of a multi-page document, as their keys
    (without the page number)."""
    page_list = list(pages)
    if len(page_list) < min_pages:
        return set()
    counts: Counter[str] = Counter()
    for text in page_list:
        counts.update({_furniture_key(line) for line in text.splitlines() if line.strip()})
    limit = max(min_pages, share * len(page_list))
    return {key for key, n in counts.items() if n >= limit and len(key) < 200}


# What a browser prints in the margins of a web page saved as PDF (Chrome: "11/28/26, 12:40 PM <page title>" and
# "<address> 1/3"). repeated_lines finds them on three pages or more; a one- or two-page printout kept them, and the
# title line then matched every question about the page. Only the first and last two lines of a page are looked at,
# and the date line only goes with the address line: a chat export's "12/1/23, 9:15 PM - Alice: hello" stays.
_PRINT_HEADER = re.compile(r"\d{1,2}/\d{1,2}/\d{2,4},?\s+\d{1,2}:\d{2}(?:\s*[AP]M)?\s+\S.*", re.IGNORECASE)
_PRINT_FOOTER = re.compile(r"(?:https?|file)://\S+\s+\d{1,4}\s*/\s*\d{1,4}", re.IGNORECASE)


def _print_margins(rows: list[str]) -> set[int]:
    """Indexes of a browser's print header and footer among ``rows`` (empty unless the address line is there)."""
    edges = [i for i in dict.fromkeys((0, 1, len(rows) - 2, len(rows) - 1)) if 0 <= i < len(rows)]
    footers = {i for i in edges if _PRINT_FOOTER.fullmatch(rows[i].strip())}
    if not footers:
        return set()
    return footers | {i for i in edges if _PRINT_HEADER.fullmatch(rows[i].strip())}


def strip_lines(text: str, lines: set[str]) -> str:
    """``text`` without the lines whose key ``repeated_lines`` found, and without a browser's print header and footer
    at the page's edges."""
    rows = text.splitlines()
    margins = _print_margins(rows)
    if not lines and not margins:
        return text
    kept = [line for i, line in enumerate(rows) if i not in margins and not (lines and _furniture_key(line) in lines)]
    return "\n".join(kept).strip()


def chunk_page(splitter: SentenceSplitter, text: str) -> list[str]:
    return [c.strip() for c in splitter.split_text(text) if not is_boilerplate(c)]
