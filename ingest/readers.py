"""Turn one document file into clean text units (PDF pages, or the whole file for other formats).

Every problem a user can cause (a corrupt, encrypted, empty, binary or unreadable file) surfaces as
:class:`~rag.errors.UnreadableFile` with a one-line reason, so ingestion can skip the file and say why
instead of crashing on a third-party library's exception.
"""

from __future__ import annotations

import codecs
import io
import logging
import os
import re
import stat
import unicodedata
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import UnreadableFile

if TYPE_CHECKING:  # imported lazily at run time: they are only needed for their own file types
    from docx.document import Document
    from docx.table import _Cell
    from pypdf import PdfReader

__all__ = [
    "SUPPORTED_SUFFIXES",
    "PageText",
    "decode_text",
    "display_path",
    "html_to_text",
    "iter_pages",
    "normalize_text",
    "strip_markdown_links",
]


@dataclass(frozen=True)
class PageText:
    """One unit of extracted text; ``page`` is 1-based for PDFs and ``None`` for formats without pages."""

    text: str
    page: int | None


_TEXT_SUFFIXES = frozenset({".txt", ".text"})
_MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
_HTML_SUFFIXES = frozenset({".html", ".htm"})
SUPPORTED_SUFFIXES: frozenset[str] = frozenset({".pdf", ".docx"} | _TEXT_SUFFIXES | _MARKDOWN_SUFFIXES | _HTML_SUFFIXES)

# pypdf logs what it recovers from ("EOF marker not found") at WARNING. With no handler anywhere, Python prints that
# to stderr next to our own one-line error; a NullHandler stops that while an app's logging setup still receives it.
logging.getLogger("pypdf").addHandler(logging.NullHandler())

# Reasons shown to users (after "<path>: "). Kept as constants so callers and tests match them exactly.
EMPTY_FILE = "empty file"
NO_TEXT = "no text"
BINARY = "binary content, not text"
NOT_A_FILE = "not a file"
FILE_NOT_FOUND = "file not found"
PERMISSION_DENIED = "permission denied"
INVALID_DOCX = "not a valid DOCX file"
ENCRYPTED_PDF = "encrypted PDF; remove the password and try again"
PDF_NO_TEXT = "no extractable text; OCR is not supported"
_MAX_DETAIL = 100  # characters of a library's own message kept inside "(...)"


# --------------------------------------------------------------------------------------------------------------------
# Text clean-up and decoding
# --------------------------------------------------------------------------------------------------------------------

_LINE_BREAKS_RE = re.compile(r"\r\n?|[\f\v]")  # form feeds (page breaks) and vertical tabs act as line breaks
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0/C1 controls except \t and \n
_SPACES_RE = re.compile(r"[ \t]+")
_TRAILING_SPACE_RE = re.compile(r" +\n")
_MANY_NEWLINES_RE = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """Normalise text so the same words always embed and match the same way, whatever the source format.

    NFKC folds compatibility forms (Kangxi radicals that PDF extraction produces, full-width letters, ligatures)
    into the ordinary characters users type. Controls are removed *before* NFKC so that removing them cannot
    create new compositions, which keeps the function idempotent.
    """
    text = _LINE_BREAKS_RE.sub("\n", text)
    text = _CONTROL_RE.sub("", text)
    text = unicodedata.normalize("NFKC", text)
    text = _SPACES_RE.sub(" ", text)
    text = _TRAILING_SPACE_RE.sub("\n", text)
    text = _MANY_NEWLINES_RE.sub("\n\n", text)
    return text.strip()


_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: the UTF-32 LE BOM starts with the UTF-16 LE BOM.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Legacy encodings tried last, in order of preference when the detector cannot tell them apart.
_LEGACY_ENCODINGS = ("gb18030", "big5", "cp1252")
_BINARY_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")  # controls other than \t \n \v \f \r
_MAX_CONTROL_RATIO = 0.1
_SAMPLE_CHARS = 4096


def _control_ratio(text: str) -> float:
    """Share of control characters that real text does not contain; high means we decoded a binary file."""
    return len(_BINARY_CONTROL_RE.findall(text)) / len(text) if text else 0.0


def _looks_like_text(text: str) -> bool:
    return "\x00" not in text and _control_ratio(text) <= _MAX_CONTROL_RATIO


def _looks_like_wide_text(text: str) -> bool:
    """Stricter check for UTF-16/32 guesses: random bytes also decode as UTF-16, but into unassigned or
    private-use code points, which real text almost never contains."""
    if not _looks_like_text(text):
        return False
    sample = text[:_SAMPLE_CHARS]
    odd = sum(1 for ch in sample if unicodedata.category(ch) in ("Cn", "Co", "Cs"))
    return odd <= len(sample) * 0.02


def _try_decode(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _decode_bom(data: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = _try_decode(data[len(bom) :], encoding)
            if text is not None:
                return text
    return None


def _decode_wide(data: bytes) -> str | None:
    """Decode UTF-16/32 without a BOM, recognised by NUL bytes that fall in a regular byte position."""
    candidates: list[str] = []
    if len(data) % 4 == 0:
        candidates += ["utf-32-le", "utf-32-be"]
    if len(data) % 2 == 0:
        even_nuls = data[0::2].count(0)
        odd_nuls = data[1::2].count(0)
        if odd_nuls >= 3 * even_nuls:
            candidates.append("utf-16-le")
        if even_nuls >= 3 * odd_nuls:
            candidates.append("utf-16-be")
    for encoding in candidates:
        text = _try_decode(data, encoding)
        if text is not None and _looks_like_wide_text(text):
            return text
    return None


def _decode_legacy(data: bytes) -> str:
    """Pick among GB18030 (a superset of GBK/GB2312), Big5 and cp1252; ties go to the earlier one."""
    try:
        from charset_normalizer import from_bytes

        matches = list(from_bytes(data, cp_isolation=list(_LEGACY_ENCODINGS)))
    except Exception:
        matches = []
    ranked = sorted(
        (m for m in matches if m.encoding in _LEGACY_ENCODINGS),
        key=lambda m: (m.chaos, -m.coherence, _LEGACY_ENCODINGS.index(m.encoding)),
    )
    for match in ranked:
        text = _try_decode(data, match.encoding)
        if text is not None:
            return text
    return _try_decode(data, "cp1252") or data.decode("latin-1")


def decode_text(data: bytes) -> str:
    """Decode a text file of unknown encoding; raise ``ValueError("binary content, not text")`` for binary data.

    Order matters: BOMs are unambiguous, strict UTF-8 almost never matches anything else by accident, NUL
    bytes only occur in UTF-16/32 text, and the legacy Chinese/Western code pages are a best guess.
    """
    text = _decode_bom(data)
    if text is None:
        if b"\x00" in data:
            text = _decode_wide(data)
        else:
            text = _try_decode(data, "utf-8")
            if text is None:
                text = _decode_legacy(data)
    if text is None or not _looks_like_text(text):
        raise ValueError(BINARY)
    return text


# --------------------------------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------------------------------


def display_path(path: str | os.PathLike[str]) -> str:
    """Printable form of a path: undecodable bytes in Linux file names become U+FFFD instead of surrogates,
    which would make ``print`` or a UTF-8 encoder raise."""
    try:
        return os.fsencode(path).decode("utf-8", "replace")
    except (UnicodeError, TypeError, ValueError):
        return str(path).encode("utf-8", "backslashreplace").decode("utf-8")


def _short_reason(exc: object) -> str:
    """One printable line from a library's exception, short enough to sit inside a user-facing message."""
    detail = " ".join(str(exc).split()) or type(exc).__name__
    detail = "".join(ch if ch.isprintable() else "?" for ch in detail)
    if len(detail) > _MAX_DETAIL:
        detail = detail[: _MAX_DETAIL - 3].rstrip() + "..."
    return detail


def _unreadable(path: Path, reason: str) -> UnreadableFile:
    return UnreadableFile(display_path(path), reason)


# --------------------------------------------------------------------------------------------------------------------
# File access
# --------------------------------------------------------------------------------------------------------------------


def _os_error_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return PERMISSION_DENIED
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return FILE_NOT_FOUND
    if isinstance(exc, IsADirectoryError):
        return NOT_A_FILE
    return f"cannot read file ({_short_reason(exc.strerror or exc)})"


def _read_bytes(path: Path) -> bytes:
    """Read the whole file, refusing directories, FIFOs and devices (reading a FIFO would block forever)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise _unreadable(path, NOT_A_FILE)
        if info.st_size == 0:
            raise _unreadable(path, EMPTY_FILE)
        data = path.read_bytes()
    except OSError as exc:
        raise _unreadable(path, _os_error_reason(exc)) from None
    except ValueError:  # e.g. an embedded NUL in the name
        raise _unreadable(path, FILE_NOT_FOUND) from None
    if not data:
        raise _unreadable(path, EMPTY_FILE)
    return data


def _decode_or_raise(path: Path, data: bytes) -> str:
    try:
        return decode_text(data)
    except ValueError:
        raise _unreadable(path, BINARY) from None


def _single_unit(path: Path, text: str) -> Iterator[PageText]:
    text = normalize_text(text)
    if not text:
        raise _unreadable(path, NO_TEXT)
    yield PageText(text, None)


# --------------------------------------------------------------------------------------------------------------------
# Plain text and Markdown
# --------------------------------------------------------------------------------------------------------------------

_URL = r"\((?:[^()\n]|\([^()\n]*\))*\)"  # allows one level of parentheses, as in Wikipedia URLs
_MD_IMAGE_RE = re.compile(r"!\[([^\]\n]*)\]" + _URL)
_MD_LINK_RE = re.compile(r"\[([^\]\n]+)\]" + _URL)


def strip_markdown_links(text: str) -> str:
    """Keep what a reader sees: ``![alt](url)`` -> ``alt`` and ``[text](url)`` -> ``text``; URLs only add noise
    to embeddings and keyword search."""
    return _MD_LINK_RE.sub(r"\1", _MD_IMAGE_RE.sub(r"\1", text))


def _read_plain(path: Path) -> Iterator[PageText]:
    yield from _single_unit(path, _decode_or_raise(path, _read_bytes(path)))


def _read_markdown(path: Path) -> Iterator[PageText]:
    yield from _single_unit(path, strip_markdown_links(_decode_or_raise(path, _read_bytes(path))))


# --------------------------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------------------------

_HTML_DROP = ("script", "style", "noscript", "template", "head", "svg", "iframe")
_HTML_BLOCKS = (
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li",
    "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tr", "ul",
)  # fmt: skip
_HTML_CELLS = ("td", "th")
_CHARSET_RE = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_XML_ENCODING_RE = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
# Labels browsers decode differently from Python's codec of the same name (WHATWG Encoding Standard).
_CHARSET_ALIASES = {"gb2312": "gb18030", "gbk": "gb18030", "iso-8859-1": "cp1252", "latin1": "cp1252",
                    "ascii": "cp1252", "us-ascii": "cp1252", "big5": "big5hkscs"}  # fmt: skip


def _declared_charset(data: bytes) -> str | None:
    """The charset a ``<meta>`` tag or XML declaration names, if Python knows it."""
    head = data[:4096]
    match = _CHARSET_RE.search(head) or _XML_ENCODING_RE.search(head)
    if match is None:
        return None
    label = match.group(1).decode("ascii").lower()
    try:
        name = codecs.lookup(_CHARSET_ALIASES.get(label, label)).name
    except LookupError:
        return None
    # A page that really is UTF-16 has no readable ASCII <meta> tag; one that says so is lying (browsers agree).
    return "utf-8" if name.startswith(("utf-16", "utf-32")) else name


def _decode_html(path: Path, data: bytes) -> str:
    charset = None if data.startswith(tuple(bom for bom, _ in _BOMS)) else _declared_charset(data)
    if charset is None:
        return _decode_or_raise(path, data)
    text = data.decode(charset, errors="replace")
    if not _looks_like_text(text):
        raise _unreadable(path, BINARY)
    return text


def html_to_text(markup: str) -> str:
    """Visible text of an HTML document, one line per block element, as a browser's "select all" would copy."""
    from bs4 import BeautifulSoup, NavigableString

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "looks like a URL/XML" hints meant for developers, not users
        soup = BeautifulSoup(markup, "html.parser")
    for tag in soup.find_all(_HTML_DROP):
        tag.decompose()
    for string in soup.find_all(string=True):
        if type(string) is NavigableString and string.find_parent("pre") is None:  # not comments or doctypes
            string.replace_with(re.sub(r"\s+", " ", str(string)))
    for tag in soup.find_all("br"):
        tag.replace_with(NavigableString("\n"))
    for tag in soup.find_all(_HTML_BLOCKS):
        tag.insert_before(NavigableString("\n"))
        tag.insert_after(NavigableString("\n"))
    for tag in soup.find_all(_HTML_CELLS):
        tag.insert_after(NavigableString(" "))
    lines = (line.strip() for line in soup.get_text().split("\n"))
    return "\n".join(line for line in lines if line)


def _read_html(path: Path) -> Iterator[PageText]:
    markup = _decode_html(path, _read_bytes(path))
    try:
        text = html_to_text(markup)
    except Exception as exc:
        raise _unreadable(path, f"not a valid HTML file ({_short_reason(exc)})") from None
    yield from _single_unit(path, text)


# --------------------------------------------------------------------------------------------------------------------
# DOCX
# --------------------------------------------------------------------------------------------------------------------


def _docx_blocks(container: Document | _Cell) -> Iterator[str]:
    """Paragraph texts and table rows (cells joined by " | ") of a document or table cell, in document order."""
    from docx.table import Table

    for block in container.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells: list[str] = []
                seen: set[int] = set()
                for cell in row.cells:
                    if id(cell._tc) in seen:  # a merged cell is returned once per grid column it spans
                        continue
                    seen.add(id(cell._tc))
                    cells.append(" ".join("\n".join(_docx_blocks(cell)).split()))
                yield " | ".join(cell for cell in cells if cell)
        else:
            yield block.text


def _read_docx(path: Path) -> Iterator[PageText]:
    data = _read_bytes(path)
    try:
        import docx

        text = "\n".join(_docx_blocks(docx.Document(io.BytesIO(data))))
    except Exception:
        raise _unreadable(path, INVALID_DOCX) from None
    yield from _single_unit(path, text)


# --------------------------------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------------------------------


def _open_pdf(path: Path, data: bytes) -> PdfReader:
    """A pypdf reader ready to extract text, or UnreadableFile for a corrupt or password-protected file."""
    from pypdf import PdfReader

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                try:
                    decrypted = reader.decrypt("")  # PDFs with only an owner password open with an empty one
                except Exception:
                    decrypted = False
                if not decrypted:
                    raise _unreadable(path, ENCRYPTED_PDF)
            len(reader.pages)  # parse the page tree now so a broken one is reported as an invalid PDF
    except UnreadableFile:
        raise
    except Exception as exc:
        raise _unreadable(path, f"not a valid PDF ({_short_reason(exc)})") from None
    return reader


def _extract_page(reader: PdfReader, index: int) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reader.pages[index].extract_text() or ""


def _read_pdf(path: Path) -> Iterator[PageText]:
    """Stream pages one at a time; one bad page is skipped rather than losing the whole document."""
    reader = _open_pdf(path, _read_bytes(path))
    page_count = len(reader.pages)
    found = False
    first_error: Exception | None = None
    for index in range(page_count):
        try:
            text = normalize_text(_extract_page(reader, index))
        except Exception as exc:
            first_error = first_error or exc
            continue
        if text:
            found = True
            yield PageText(text, index + 1)
    if not found:
        if first_error is not None and page_count > 0:
            raise _unreadable(path, f"not a valid PDF ({_short_reason(first_error)})")
        raise _unreadable(path, PDF_NO_TEXT)


# --------------------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------------------

_READERS: dict[str, Callable[[Path], Iterator[PageText]]] = {
    **dict.fromkeys(_TEXT_SUFFIXES, _read_plain),
    **dict.fromkeys(_MARKDOWN_SUFFIXES, _read_markdown),
    **dict.fromkeys(_HTML_SUFFIXES, _read_html),
    ".docx": _read_docx,
    ".pdf": _read_pdf,
}


def iter_pages(path: Path) -> Iterator[PageText]:
    """Yield the text units of one file. Raises UnreadableFile(path, reason) for every problem a user can cause,
    either before the first yield or during iteration (PDF pages are streamed one at a time so a 1,000-page PDF
    is read in bounded memory). Never raises anything else for bad input. Pages with no text are not yielded."""
    path = Path(path)
    suffix = path.suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        shown = f"'{display_path(suffix)}'" if suffix else "(no extension)"
        raise _unreadable(path, f"unsupported file type {shown}")
    yield from reader(path)
