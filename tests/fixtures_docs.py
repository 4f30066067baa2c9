"""Build small real documents (PDF, DOCX) inside tests, so no binary fixtures live in the repository."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF
from PIL import Image
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


# --------------------------------------------------------------------------------------------------------------------
# Scans: image-only PDFs made from pages with a known text layer (the text layer is the OCR reference)
# --------------------------------------------------------------------------------------------------------------------

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data"
GUIDE_ZH = SAMPLE_DIR / "用户指南.pdf"  # its text layer holds Chinese glyphs: the machine has no CJK font
GUIDE_EN = SAMPLE_DIR / "user-guide.pdf"
SCAN_DPI = 200  # a common scanner setting for text


def _pdf_input(source: Path | bytes) -> io.BytesIO:
    return io.BytesIO(source if isinstance(source, bytes) else source.read_bytes())


def text_layers(source: Path | bytes) -> list[str]:
    """The text layer of every page, as pypdf extracts it (not normalised)."""
    return [page.extract_text() or "" for page in PdfReader(_pdf_input(source)).pages]


def render_pages(source: Path | bytes, dpi: int = SCAN_DPI, pages: list[int] | None = None) -> list[Image.Image]:
    """Grayscale images of the given 0-based pages (all by default), as a scanner at ``dpi`` would produce."""
    import pypdfium2

    from ingest.ocr import PDFIUM_LOCK

    with PDFIUM_LOCK:
        document = pypdfium2.PdfDocument(_pdf_input(source))
        try:
            indexes = range(len(document)) if pages is None else pages
            return [document[i].render(scale=dpi / 72, grayscale=True).to_pil().convert("L") for i in indexes]
        finally:
            document.close()


def image_pdf_bytes(images: list[Image.Image], dpi: int = SCAN_DPI) -> bytes:
    """An image-only PDF, one page per image, each page as large as the image at ``dpi`` (A4 stays A4)."""
    out = io.BytesIO()
    images[0].save(out, "PDF", resolution=dpi, save_all=True, append_images=images[1:])
    return out.getvalue()


def scanned_pdf_bytes(source: Path | bytes, pages: list[int] | None = None, dpi: int = SCAN_DPI) -> bytes:
    """``source`` (or some of its 0-based pages) as a scan: every page an image, no text layer at all."""
    return image_pdf_bytes(render_pages(source, dpi, pages), dpi)


def stamped_scan_pdf_bytes(image: Image.Image, stamp: str, dpi: int = SCAN_DPI) -> bytes:
    """A page that is one full-page image plus a few words of real text (as scanner apps stamp "Scanned by ...")."""
    pdf = FPDF(format=(image.width * 25.4 / dpi, image.height * 25.4 / dpi))
    pdf.set_creation_date(_FIXED_DATE)
    pdf.set_font("Helvetica", size=8)
    pdf.add_page()
    pdf.image(image, x=0, y=0, w=pdf.w, h=pdf.h)
    pdf.text(5, pdf.h - 5, stamp)
    return bytes(pdf.output())


def concat_pdfs(parts: list[bytes]) -> bytes:
    """The pages of each PDF in turn, as one PDF."""
    writer = PdfWriter()
    for part in parts:
        writer.append(PdfReader(io.BytesIO(part)))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def embedded_font(source: Path) -> bytes:
    """The first embedded TrueType font program of a PDF: for the Chinese guide, a subset of WenQuanYi Micro Hei
    with every character of that guide, so new Chinese pages can be typeset from those characters."""
    for page in PdfReader(source).pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            for descendant in font.get("/DescendantFonts", [font]):
                descriptor = descendant.get_object().get("/FontDescriptor")
                if descriptor is not None and "/FontFile2" in descriptor.get_object():
                    return descriptor.get_object()["/FontFile2"].get_object().get_data()
    raise ValueError(f"{source} embeds no TrueType font")


def font_characters(font: bytes) -> set[str]:
    """Characters a font program can draw (its cmap)."""
    from fontTools.ttLib import TTFont

    return {chr(code) for code in TTFont(io.BytesIO(font)).getBestCmap()}


def typeset_pdf_bytes(pages: list[str], font: bytes | str = "Helvetica", size: float = 11, columns: int = 1) -> bytes:
    """A4 pages of text in a built-in font name or an embedded TrueType ``font``, at ``size`` points, in one or two
    columns; text that does not fit on its page flows onto the next."""
    import tempfile

    pdf = FPDF(format="A4")
    pdf.set_creation_date(_FIXED_DATE)
    pdf.set_auto_page_break(True, margin=15)
    if isinstance(font, bytes):
        with tempfile.NamedTemporaryFile(suffix=".ttf") as file:
            file.write(font)
            file.flush()
            pdf.add_font("embedded", fname=file.name)
        family = "embedded"
    else:
        family = font
    pdf.set_font(family, size=size)
    for text in pages:
        pdf.add_page()
        if columns == 1:
            pdf.multi_cell(0, size * 0.55, text)
        else:
            with pdf.text_columns(ncols=columns, gutter=8, line_height=1.25) as cols:
                cols.write(text)
    return bytes(pdf.output())
