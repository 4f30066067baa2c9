"""Build small real documents (PDF, DOCX) inside tests, so no binary fixtures live in the repository."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

_FIXED_DATE = datetime(2024, 1, 1, tzinfo=UTC)  # fpdf2 stamps the date: fix it so the bytes are reproducible


def pdf_bytes(pages: list[str | None]) -> bytes:
    """A PDF with one page per item: the item's text, or nothing at all for ``None``."""
    pdf = FPDF()
    pdf.set_creation_date(_FIXED_DATE)
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text is not None:
            pdf.multi_cell(0, 10, text)
    return bytes(pdf.output())


def image_only_pdf_bytes() -> bytes:
    """A PDF whose only page content is a filled rectangle: what a scan looks like to a text extractor."""
    pdf = FPDF()
    pdf.set_creation_date(_FIXED_DATE)
    pdf.add_page()
    pdf.set_fill_color(40, 40, 40)
    pdf.rect(20, 20, 100, 60, style="F")
    return bytes(pdf.output())


def encrypt_pdf(data: bytes, user_password: str, owner_password: str) -> bytes:
    """``data`` re-saved with AES-256 encryption."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def write_docx(path: Path, paragraphs: list[str], table: list[list[str]] | None = None, after: str = "") -> Path:
    """A DOCX with ``paragraphs``, then an optional table, then an optional closing paragraph ``after``."""
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, values in zip(grid.rows, table, strict=True):
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value
    if after:
        document.add_paragraph(after)
    document.save(str(path))
    return path
