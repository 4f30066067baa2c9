"""Uploads: safe file names inside the upload folder, the size limit, ingest messages, and single PDF pages.

An uploaded name comes from the browser and is untrusted: it may carry folders, ``..``, control or bidi characters,
or a Windows device name. It is reduced to a plain file name that can only land inside the upload folder; Unicode
letters (用户指南.pdf) are kept because they are what the user will look for in the library.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ingest.pipeline import FileResult, Progress
from ui.text import escape_markdown

UPLOAD_TYPES = ["pdf", "md", "markdown", "txt", "text", "html", "htm", "docx"]
FALLBACK_NAME = "upload"
MAX_NAME_BYTES = 200  # most file systems allow 255 bytes; room is left for a "-N" suffix

_UNSAFE_CHARS = re.compile(r'[<>:"|?*\x00-\x1f\x7f]')
_WINDOWS_DEVICES = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)$", re.IGNORECASE)

Level = Literal["success", "info", "warning", "error"]


def sanitize_filename(name: str) -> str:
    """A plain, non-hidden file name from whatever the browser sent; never empty, never a path."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[\\/]", name)[-1]  # both separators: a Windows path may arrive on Linux
    # Drop control, format (bidi overrides, zero-width), surrogate, private-use and unassigned characters.
    name = "".join(ch for ch in name if not unicodedata.category(ch).startswith("C"))
    name = _UNSAFE_CHARS.sub("_", name)
    name = " ".join(name.split()).strip(". ")  # leading dots hide files; trailing dots and spaces vanish on Windows
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    stem = stem.strip(". ")
    if _WINDOWS_DEVICES.match(stem):
        stem = "_" + stem
    if not stem:
        stem = FALLBACK_NAME
    suffix = suffix[:16]
    budget = MAX_NAME_BYTES - len(suffix.encode()) - 1
    stem = stem.encode()[:budget].decode(errors="ignore").rstrip(". ") or FALLBACK_NAME
    return f"{stem}.{suffix}" if suffix else stem


def _same_content(path: Path, content: bytes) -> bool:
    try:
        return path.stat().st_size == len(content) and path.read_bytes() == content
    except OSError:
        return False


def safe_upload_path(upload_dir: Path, name: str, content: bytes | None = None) -> Path:
    """Where to store an upload: inside ``upload_dir`` always, and never over a different file.

    A file already there with the same content is reused (ingestion then skips it as unchanged); one with other
    content keeps its name and the new upload gets ``-2``, ``-3``... before the extension.
    """
    root = upload_dir.resolve()
    clean = sanitize_filename(name)
    stem, dot, suffix = clean.rpartition(".")
    if not dot:
        stem, suffix = clean, ""
    for n in range(1, 10_000):
        candidate_name = clean if n == 1 else f"{stem}-{n}.{suffix}" if suffix else f"{stem}-{n}"
        candidate = root / candidate_name
        if candidate.parent != root or candidate.name in ("", ".", ".."):  # last line of defence; sanitising
            raise ValueError(f"refusing to write outside {root}: {name!r}")  # already makes this impossible
        if candidate.is_symlink():  # someone else's link: writing through it could land anywhere
            continue
        if not candidate.exists() or content is None or _same_content(candidate, content):
            return candidate
    raise ValueError(f"too many files named like {clean!r} in {root}")


def save_upload(upload_dir: Path, name: str, content: bytes) -> Path:
    """Write an upload under a safe name; atomic, so a crash never leaves half a file for the next ingest."""
    upload_dir.mkdir(parents=True, exist_ok=True)
    target = safe_upload_path(upload_dir, name, content)
    if target.exists():
        return target  # same content: nothing to write
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def upload_size_error(name: str, size_bytes: int, max_mb: int) -> str | None:
    """The per-file message for an upload over RAG_MAX_UPLOAD_MB, else None."""
    if size_bytes <= max_mb * 1024 * 1024:
        return None
    return f"{name}: {size_bytes / 1024 / 1024:.1f} MB is over the {max_mb} MB upload limit (RAG_MAX_UPLOAD_MB)"


def chunks(n: int) -> str:
    return f"{n} chunk" if n == 1 else f"{n} chunks"


def result_message(result: FileResult, name: str | None = None) -> tuple[Level, str]:
    """How one file's ingest result is shown: a level for st.success/info/warning/error and Markdown-safe text."""
    shown = escape_markdown(name or Path(result.path).name)
    reason = escape_markdown(result.reason)
    if result.status == "ingested":
        return "success", f"{shown}: ingested, {chunks(result.chunks)}"
    if result.status == "replaced":
        return "success", f"{shown}: changed since last time, re-ingested, {chunks(result.chunks)}"
    if result.status == "removed":
        return "success", f"{shown}: removed ({chunks(result.chunks)})"
    if result.status == "skipped":
        if result.reason == "unchanged":
            return "info", f"{shown}: already ingested, skipped"
        if "already ingested" in result.reason:
            return "info", f"{shown}: already ingested, skipped ({reason})"
        return "warning", f"{shown}: skipped, {reason}"
    return "error", f"{shown}: {reason or 'failed'}"


@dataclass
class IngestProgress:
    """Folds the pipeline's Progress events into what a progress bar shows."""

    n_files: int = 0
    files_done: int = 0
    chunks: int = 0
    current: str = ""
    results: list[FileResult] = field(default_factory=list)

    def update(self, event: Progress) -> None:
        if event.kind == "start":
            self.n_files = event.n_files
        elif event.kind == "file":
            self.current = Path(event.path).name
        elif event.kind == "chunks":
            self.chunks += event.n_chunks
        elif event.kind == "done":
            self.files_done += 1
            if event.result is not None:
                self.results.append(event.result)

    @property
    def fraction(self) -> float:
        return min(1.0, self.files_done / self.n_files) if self.n_files else 0.0

    @property
    def label(self) -> str:
        if not self.current:
            return "starting…"
        return f"{self.current}: {self.chunks} chunks embedded"


def single_page_pdf(path: str | Path, page: int) -> bytes:
    """Page ``page`` (1-based) of a PDF as a one-page PDF: pypdf cannot render, but any PDF viewer can show this."""
    from pypdf import PdfReader, PdfWriter

    reader = PdfReader(str(path))
    writer = PdfWriter()
    writer.add_page(reader.pages[page - 1])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def page_file_name(file_name: str, page: int) -> str:
    return f"{Path(file_name).stem}-page-{page}.pdf"
