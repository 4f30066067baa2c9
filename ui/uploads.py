"""Uploads: safe file names inside the upload folder, the size limit, ingest messages, and single PDF pages.

An uploaded name comes from the browser and is untrusted: it may carry folders, ``..``, control or bidi characters,
or a Windows device name. It is reduced to a plain file name that can only land inside the upload folder; Unicode
letters (用户指南.pdf) are kept because they are what the user will look for in the library.
"""

from __future__ import annotations

import filecmp
import io
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal, TypeVar

from ingest.pipeline import FileResult
from ui.text import escape_markdown

UPLOAD_TYPES = ["pdf", "md", "markdown", "txt", "text", "html", "htm", "docx"]
FALLBACK_NAME = "upload"
MAX_NAME_BYTES = 200  # most file systems allow 255 bytes; room is left for a "-N" suffix
MAX_NAME_TRIES = 10_000
MAX_FILES_PER_UPLOAD = 20  # files taken from one upload; the rest are refused with a message, not queued
COPY_BLOCK = 1 << 20
T = TypeVar("T")

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


def upload_candidates(upload_dir: Path, name: str) -> Iterator[Path]:
    """Names an upload may take, in order: ``guide.pdf``, ``guide-2.pdf``, ``guide-3.pdf``... all inside the folder."""
    root = upload_dir.resolve()
    clean = sanitize_filename(name)
    stem, dot, suffix = clean.rpartition(".")
    if not dot:
        stem, suffix = clean, ""
    for n in range(1, MAX_NAME_TRIES + 1):
        candidate_name = clean if n == 1 else f"{stem}-{n}.{suffix}" if suffix else f"{stem}-{n}"
        candidate = root / candidate_name
        if candidate.parent != root or candidate.name in ("", ".", ".."):  # last line of defence; sanitising
            raise ValueError(f"refusing to write outside {root}: {name!r}")  # already makes this impossible
        yield candidate


def safe_upload_path(upload_dir: Path, name: str) -> Path:
    """The first name an upload would try: inside ``upload_dir`` always (the claim itself is :func:`save_upload`)."""
    return next(upload_candidates(upload_dir, name))


def _same_file(existing: Path, new: Path) -> bool:
    """Whether a name is already taken by this very content (a regular file, not a link someone placed there)."""
    try:
        if existing.is_symlink() or not existing.is_file():
            return False
        return existing.stat().st_size == new.stat().st_size and filecmp.cmp(existing, new, shallow=False)
    except OSError:
        return False


def _write_temp(folder: Path, content: bytes | BinaryIO) -> Path:
    """The upload's bytes in a hidden temporary file next to its final name, streamed from the upload."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(content, bytes | bytearray | memoryview):
                handle.write(content)
            else:
                content.seek(0)
                shutil.copyfileobj(content, handle, COPY_BLOCK)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _claim(tmp: Path, target: Path) -> bool:
    """Give ``tmp`` the name ``target`` only if nobody has it: a hard link fails when the name exists, so two
    sessions saving different files under one name at the same moment each keep their own (no check-then-write)."""
    try:
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: exclusive create, then copy
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as out, tmp.open("rb") as src:
            shutil.copyfileobj(src, out, COPY_BLOCK)
        return True


def save_upload(upload_dir: Path, name: str, content: bytes | BinaryIO) -> Path:
    """Store an upload under a safe name in ``upload_dir`` and return its path.

    ``content`` is bytes or a file object (Streamlit's UploadedFile), copied in blocks. The file appears under its
    final name complete or not at all, never replaces another file (nor writes through a link), and a file already
    there with the same content is reused (ingestion then skips it as unchanged); one with other content keeps its
    name and the new upload gets ``-2``, ``-3``... before the extension.
    """
    upload_dir.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(upload_dir.resolve(), content)
    try:
        for candidate in upload_candidates(upload_dir, name):
            if _claim(tmp, candidate) or _same_file(candidate, tmp):
                return candidate
    finally:
        tmp.unlink(missing_ok=True)
    raise ValueError(f"too many files named like {sanitize_filename(name)!r} in {upload_dir}")


def split_upload(files: list[T]) -> tuple[list[T], str | None]:
    """The files of one upload that are taken (at most MAX_FILES_PER_UPLOAD), and a message when some are not."""
    if len(files) <= MAX_FILES_PER_UPLOAD:
        return files, None
    return files[:MAX_FILES_PER_UPLOAD], (
        f"{len(files)} files at once is more than the {MAX_FILES_PER_UPLOAD} one upload takes: the first "
        f"{MAX_FILES_PER_UPLOAD} are being added, upload the other {len(files) - MAX_FILES_PER_UPLOAD} afterwards"
    )


def upload_size_error(name: str, size_bytes: int, max_mb: int) -> str | None:
    """The per-file message for an upload over RAG_MAX_UPLOAD_MB, else None."""
    if size_bytes <= max_mb * 1024 * 1024:
        return None
    return f"{name}: {size_bytes / 1024 / 1024:.1f} MB is over the {max_mb} MB upload limit (RAG_MAX_UPLOAD_MB)"


def chunks(n: int) -> str:
    return f"{n} chunk" if n == 1 else f"{n} chunks"


def result_message(result: FileResult, name: str | None = None, forced: bool = False) -> tuple[Level, str]:
    """How one file's ingest result is shown: a level for st.success/info/warning/error and Markdown-safe text.
    ``forced``: the file was read again on request (the library's Re-ingest), not because it changed."""
    shown = escape_markdown(name or Path(result.path).name)
    reason = escape_markdown(result.reason)
    if result.status == "ingested":
        return "success", f"{shown}: ingested, {chunks(result.chunks)}"
    if result.status == "replaced" and forced:
        return "success", f"{shown}: re-ingested, {chunks(result.chunks)}"
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
    if result.status == "cancelled":
        return "warning", f"{shown}: cancelled, nothing of it was stored"
    if result.needs_password:
        return "warning", f"{shown}: {reason} (type it below to try again)"
    return "error", f"{shown}: {reason or 'failed'}"


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
