"""Turn one document file into clean text units (PDF pages, or the whole file for other formats).

Every problem a user can cause (a corrupt, encrypted, empty, binary, hostile or unreadable file) surfaces as
:class:`~rag.errors.UnreadableFile` with a one-line reason, so ingestion can skip the file and say why
instead of crashing on a third-party library's exception.

PDF pages without a text layer are OCR'd (``ingest/ocr.py``) unless ``ReadOptions.ocr`` is "off". Limits that
protect the machine from untrusted files (pages, reading time, unpacked zip size) come from :class:`ReadOptions`,
normally built from the settings with :meth:`ReadOptions.from_settings`.
"""

from __future__ import annotations

import codecs
import dataclasses
import io
import logging
import os
import re
import stat
import time
import unicodedata
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from rag.errors import Cancelled, PasswordRequired, UnreadableFile

if TYPE_CHECKING:  # imported lazily at run time: they are only needed for their own file types
    from docx.document import Document
    from docx.table import _Cell
    from pypdf import PdfReader

    from ingest.ocr import ScannedPdf

__all__ = [
    "SUPPORTED_SUFFIXES",
    "PageEvent",
    "PageText",
    "ReadOptions",
    "count_pages",
    "decode_text",
    "display_path",
    "html_to_text",
    "iter_pages",
    "normalize_text",
    "strip_markdown_links",
]


@dataclass(frozen=True)
class PageText:
    """One unit of extracted text; ``page`` is 1-based for PDFs and ``None`` for formats without pages.
    ``ocr`` says the text was recognised from the page's image (it had no text layer)."""

    text: str
    page: int | None
    ocr: bool = False


@dataclass(frozen=True)
class PageEvent:
    """Progress: one page was read (with or without text). ``n_pages`` is 1 for formats without pages."""

    page: int  # 1-based
    n_pages: int
    ocr: bool  # this page's text came from OCR


@dataclass(frozen=True)
class ReadOptions:
    """How to read one document: OCR, the limits that protect the machine from hostile or huge files, an optional
    PDF password, and hooks for progress and cancellation (both called from the reading thread, between pages)."""

    ocr: Literal["auto", "off"] = "auto"
    max_pages: int = 2000
    max_seconds: float = 900.0  # time spent inside the reader, not in the caller between pages
    max_unpacked_mb: int = 200
    password: str | None = field(default=None, repr=False)  # never printed, logged or put into a message
    on_page: Callable[[PageEvent], None] | None = None
    cancelled: Callable[[], bool] | None = None  # True -> rag.errors.Cancelled before the next page

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> ReadOptions:
        """Options from :class:`rag.config.Settings` (RAG_OCR, RAG_MAX_PAGES, RAG_MAX_SECONDS_PER_DOC,
        RAG_MAX_UNPACKED_MB), with per-call ``overrides`` such as ``password=`` or ``on_page=``."""
        base = cls(
            ocr=settings.ocr,
            max_pages=settings.max_pages,
            max_seconds=settings.max_seconds_per_doc,
            max_unpacked_mb=settings.max_unpacked_mb,
        )
        return dataclasses.replace(base, **overrides)


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
PASSWORD_NEEDED = "encrypted PDF; a password is needed"
WRONG_PASSWORD = "wrong password"
NO_TEXT_LAYER_OCR_OFF = "no text layer; OCR is off (RAG_OCR=off)"
NO_TEXT_EVEN_OCR = "no text found, not even by OCR"
NO_PAGES = "PDF has no pages"
# A text layer this short on a page that is mostly one image is a scanner's stamp ("Scanned by ..."), not the page's
# text: such a page is OCR'd too. Any longer text layer is trusted and the page is never OCR'd.
_STAMP_CHARS = 24
_SCAN_IMAGE_SHARE = 0.6
_MAX_ZIP_ENTRIES = 10_000
_MAX_ZIP_RATIO = 200  # DEFLATE tops out near 1,030:1; real DOCX parts are 3-30:1 and a long repetitive table < 100:1
_ZIP_RATIO_MIN_BYTES = 10 * 2**20  # small parts may compress extremely well without being a risk
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


def _open_regular(path: Path) -> IO[bytes]:
    """Open a regular, non-empty file for reading, refusing directories, FIFOs and devices before reading a byte.

    ``stat`` first, so a device is never opened; then ``O_NONBLOCK``, so that a FIFO swapped in after the check
    cannot block the open (reading a FIFO would wait forever for a writer), and ``fstat`` on the descriptor we
    actually hold. Streaming readers (PDF) keep the file object; the others read it whole.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise _unreadable(path, NOT_A_FILE)
        fd = os.open(path, flags)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise _unreadable(path, NOT_A_FILE)
            if info.st_size == 0:
                raise _unreadable(path, EMPTY_FILE)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
    except OSError as exc:
        raise _unreadable(path, _os_error_reason(exc)) from None
    except ValueError:  # e.g. an embedded NUL in the name
        raise _unreadable(path, FILE_NOT_FOUND) from None


def _read_bytes(path: Path) -> bytes:
    """The whole file (text formats and DOCX; their size is bounded by the upload limit)."""
    with _open_regular(path) as file:
        try:
            data = file.read()
        except OSError as exc:
            raise _unreadable(path, _os_error_reason(exc)) from None
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


def _read_plain(path: Path, options: ReadOptions) -> Iterator[PageText]:
    yield from _single_unit(path, _decode_or_raise(path, _read_bytes(path)))


def _read_markdown(path: Path, options: ReadOptions) -> Iterator[PageText]:
    yield from _single_unit(path, strip_markdown_links(_decode_or_raise(path, _read_bytes(path))))


# --------------------------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------------------------

_HTML_DROP = ("script", "style", "noscript", "template", "head", "svg", "iframe", "nav")
# Page furniture that is not the document: navigation, and the "[edit]" links and navigation boxes of MediaWiki pages
# (Wikipedia saved from a browser) and their reference markers, <sup class="reference">[42]</sup>, which would
# otherwise sit inside sentences. Only a <sup>: Sphinx marks every cross-reference link class="reference".
_HTML_DROP_CLASSES = ("mw-editsection", "mw-jump-link", "navbox", "mw-cite-backlink")
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
    for tag in [
        *soup.find_all(_HTML_DROP),
        *soup.find_all(class_=_HTML_DROP_CLASSES),
        *soup.find_all("sup", class_="reference"),
        *soup.find_all(attrs={"role": "navigation"}),
    ]:
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


def _read_html(path: Path, options: ReadOptions) -> Iterator[PageText]:
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


def _check_zip(path: Path, data: bytes, max_unpacked_mb: int) -> None:
    """Refuse a zip (DOCX) whose parts would unpack to too much, judged from its directory alone, before any
    parser inflates a byte. The directory cannot lie its way past this: Python's zipfile never returns more than
    an entry's declared size (a longer stream fails its CRC check instead)."""
    try:
        entries = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise _unreadable(path, INVALID_DOCX) from None
    if len(entries) > _MAX_ZIP_ENTRIES:
        raise _unreadable(path, f"{len(entries):,} parts in one zip is far more than a real DOCX has")
    limit = max_unpacked_mb * 1024 * 1024
    total = 0
    for entry in entries:
        total += entry.file_size
        if total > limit:
            raise _unreadable(path, f"unpacks to more than {max_unpacked_mb:,} MB (RAG_MAX_UNPACKED_MB)")
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size > _ZIP_RATIO_MIN_BYTES and ratio > _MAX_ZIP_RATIO:
            name = _short_reason(entry.filename)
            raise _unreadable(path, f"looks like a zip bomb: {name} expands {ratio:,.0f} times")


def _read_docx(path: Path, options: ReadOptions) -> Iterator[PageText]:
    data = _read_bytes(path)
    _check_zip(path, data, options.max_unpacked_mb)
    try:
        import docx

        text = "\n".join(_docx_blocks(docx.Document(io.BytesIO(data))))
    except Exception:
        raise _unreadable(path, INVALID_DOCX) from None
    yield from _single_unit(path, text)


# --------------------------------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------------------------------


def _decrypt(path: Path, reader: PdfReader, password: str | None) -> str | None:
    """Unlock an encrypted PDF; returns the password PDFium will need for OCR (None when none is needed).

    The password is never put into a message or an exception chain: callers may log both.
    """
    try:
        if reader.decrypt(""):  # only an owner password (print/copy restrictions): opens with an empty one
            return None
    except Exception as exc:  # an encryption scheme pypdf cannot handle
        raise _unreadable(path, f"cannot decrypt this PDF ({_short_reason(exc)})") from None
    if password is None:
        raise PasswordRequired(display_path(path), PASSWORD_NEEDED)
    try:
        unlocked = reader.decrypt(password)
    except Exception:
        unlocked = False
    if not unlocked:
        raise PasswordRequired(display_path(path), WRONG_PASSWORD)
    return password


def _over_page_limit(path: Path, n_pages: int, max_pages: int) -> UnreadableFile:
    return _unreadable(path, f"{n_pages:,} pages is over the {max_pages:,}-page limit (RAG_MAX_PAGES)")


def _claimed_page_count(reader: PdfReader) -> int | None:
    """The page tree's own /Count: read without walking the tree, so a PDF claiming a million pages is refused
    before pypdf builds a million page objects."""
    try:
        count = reader.trailer["/Root"]["/Pages"]["/Count"]
    except Exception:
        return None
    return count if isinstance(count, int) and count >= 0 else None


def _open_pdf(path: Path, file: IO[bytes], options: ReadOptions) -> tuple[PdfReader, int, str | None]:
    """A pypdf reader on the open file, its page count and the password PDFium needs; UnreadableFile for a
    corrupt, locked or too long document."""
    from pypdf import PdfReader

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(file, strict=False)
            pdfium_password = _decrypt(path, reader, options.password) if reader.is_encrypted else None
            claimed = _claimed_page_count(reader)
            if claimed is not None and claimed > options.max_pages:
                raise _over_page_limit(path, claimed, options.max_pages)
            n_pages = len(reader.pages)  # walks the page tree now so a broken one is reported as an invalid PDF
    except UnreadableFile:
        raise
    except Exception as exc:
        raise _unreadable(path, f"not a valid PDF ({_short_reason(exc)})") from None
    if n_pages > options.max_pages:
        raise _over_page_limit(path, n_pages, options.max_pages)
    return reader, n_pages, pdfium_password


def _extract_page(reader: PdfReader, index: int) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reader.pages[index].extract_text() or ""


class _Scans:
    """OCR for the pages of one PDF that need it; PDFium and the OCR engine load only when the first page does."""

    def __init__(self, path: Path, password: str | None) -> None:
        self._path = path
        self._password = password
        self._file: IO[bytes] | None = None
        self._scanned: ScannedPdf | None = None

    def _open(self) -> ScannedPdf:
        if self._scanned is None:
            from ingest.ocr import ScannedPdf

            self._file = _open_regular(self._path)  # PDFium gets its own handle: it seeks independently of pypdf
            self._scanned = ScannedPdf(self._file, self._password)
            self._password = None
        return self._scanned

    def looks_scanned(self, index: int) -> bool:
        return self._open().image_share(index) >= _SCAN_IMAGE_SHARE

    def is_blank(self, index: int) -> bool:
        return self._open().is_blank(index)

    def read(self, index: int) -> str:
        return normalize_text(self._open().read(index))

    def close(self) -> None:
        if self._scanned is not None:
            self._scanned.close()
        if self._file is not None:
            self._file.close()
        self._password = None


class _Budget:
    """Time spent reading one document (not the caller's time between pages), checked between pages."""

    def __init__(self, path: Path, max_seconds: float) -> None:
        self.path = path
        self.max_seconds = max_seconds
        self.spent = 0.0
        self._since = _clock()

    def pause(self) -> None:
        self.spent += _clock() - self._since

    def resume(self) -> None:
        self._since = _clock()

    def check(self, page: int, n_pages: int) -> None:
        """Before page ``page`` (1-based): raise if the pages so far took longer than the budget."""
        if self.spent + (_clock() - self._since) > self.max_seconds:
            raise _unreadable(
                self.path,
                f"reading took longer than {self.max_seconds:g} s (RAG_MAX_SECONDS_PER_DOC); "
                f"stopped before page {page:,} of {n_pages:,}",
            )


_clock = time.monotonic  # tests replace it to simulate slow pages


def _check_cancelled(path: Path, options: ReadOptions, where: str = "") -> None:
    if options.cancelled is not None and options.cancelled():
        raise Cancelled(f"{display_path(path)}: cancelled{where}")


def _pdf_page(reader: PdfReader, index: int, scans: _Scans, ocr: str) -> tuple[str, bool]:
    """The text of one page and whether it came from OCR. The text layer wins whenever it has real text; a page
    with none (or only a scanner's stamp on a page-sized image) is OCR'd unless OCR is off."""
    text = normalize_text(_extract_page(reader, index))
    if ocr == "off":
        return text, False
    if text and (len("".join(text.split())) >= _STAMP_CHARS or not scans.looks_scanned(index)):
        return text, False
    if not text and scans.is_blank(index):  # an empty page (books have them): nothing to recognise
        return "", False
    return scans.read(index) or text, True


def _ocr_unavailable(path: Path, page: int, exc: Exception) -> UnreadableFile:
    return _unreadable(path, f"page {page} needs OCR, but {exc}; install it or set RAG_OCR=off")


def _read_pdf(path: Path, options: ReadOptions) -> Iterator[PageText]:
    """Stream pages one at a time from the open file; one bad page is skipped rather than losing the document."""
    from ingest.ocr import OcrUnavailable

    budget = _Budget(path, options.max_seconds)
    with _open_regular(path) as file:
        reader, n_pages, pdfium_password = _open_pdf(path, file, options)
        scans = _Scans(path, pdfium_password)
        found = ocr_tried = skipped_scans = False
        first_error: Exception | None = None
        try:
            for index in range(n_pages):
                if index:
                    budget.check(index + 1, n_pages)
                _check_cancelled(path, options, f" at page {index + 1:,} of {n_pages:,}")
                text, from_ocr, failed = "", False, False
                try:
                    text, from_ocr = _pdf_page(reader, index, scans, options.ocr)
                except OcrUnavailable as exc:
                    raise _ocr_unavailable(path, index + 1, exc) from None
                except Exception as exc:
                    first_error, failed = first_error or exc, True
                ocr_tried = ocr_tried or from_ocr
                skipped_scans = skipped_scans or (options.ocr == "off" and not text and not failed)
                budget.pause()
                if options.on_page is not None:
                    options.on_page(PageEvent(index + 1, n_pages, from_ocr))
                if text:
                    found = True
                    yield PageText(text, index + 1, from_ocr)
                budget.resume()
        finally:
            scans.close()
    if not found:
        raise _unreadable(path, _no_text_reason(n_pages, first_error, ocr_tried, skipped_scans))


def _no_text_reason(n_pages: int, first_error: Exception | None, ocr_tried: bool, skipped_scans: bool) -> str:
    if n_pages == 0:
        return NO_PAGES
    if first_error is not None and not ocr_tried:
        return f"not a valid PDF ({_short_reason(first_error)})"
    if skipped_scans:
        return NO_TEXT_LAYER_OCR_OFF
    return NO_TEXT_EVEN_OCR


def count_pages(path: Path, options: ReadOptions | None = None) -> int | None:
    """Pages of a PDF (for a progress bar's total), or None for formats without pages. Raises the same
    UnreadableFile (PasswordRequired, over the page limit, invalid) that :func:`iter_pages` would raise first."""
    path = Path(path)
    if path.suffix.lower() != ".pdf":
        return None
    with _open_regular(path) as file:
        return _open_pdf(path, file, options or ReadOptions())[1]


# --------------------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------------------

_READERS: dict[str, Callable[[Path, ReadOptions], Iterator[PageText]]] = {
    **dict.fromkeys(_TEXT_SUFFIXES, _read_plain),
    **dict.fromkeys(_MARKDOWN_SUFFIXES, _read_markdown),
    **dict.fromkeys(_HTML_SUFFIXES, _read_html),
    ".docx": _read_docx,
}


def iter_pages(path: Path, options: ReadOptions | None = None) -> Iterator[PageText]:
    """Yield the text units of one file.

    Raises UnreadableFile(path, reason) for every problem a user can cause, either before the first yield or
    during iteration: PDF pages are streamed one at a time from the file, so a 1,000-page PDF is read in bounded
    memory, and limits (time budget) can fail after some pages were yielded: a caller that stores pages must
    treat a failure at any point as "this document failed" and keep none of it. Subclasses to expect:
    PasswordRequired (ask for the password, then call again with ``options.password``). Cancelled (a RagError,
    not an UnreadableFile) when ``options.cancelled()`` turns true. Never raises anything else for bad input.
    Pages with no text are not yielded, but ``options.on_page`` hears about every page.
    """
    path = Path(path)
    options = options or ReadOptions()
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        yield from _read_pdf(path, options)
        return
    reader = _READERS.get(suffix)
    if reader is None:
        shown = f"'{display_path(suffix)}'" if suffix else "(no extension)"
        raise _unreadable(path, f"unsupported file type {shown}")
    _check_cancelled(path, options)
    units = list(reader(path, options))  # one unit: the whole file
    if options.on_page is not None:
        options.on_page(PageEvent(1, 1, False))
    yield from units
