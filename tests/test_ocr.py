"""Tests for ingest.ocr: reading order (no models), page rendering, and real OCR of scans made from the sample guides.

The scans are image-only PDFs rendered from ``data/用户指南.pdf`` and ``data/user-guide.pdf`` (the machine has no CJK
font, but the Chinese guide embeds one), so the original text layer says what each page must contain.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import ingest.ocr
from ingest.ocr import Fragment, OcrConfig, ScannedPdf, layout_text, ocr_threads, shared_engine
from ingest.readers import PageEvent, ReadOptions, iter_pages, normalize_text
from tests.fixtures_docs import (
    GUIDE_EN,
    GUIDE_ZH,
    concat_pdfs,
    image_only_pdf_bytes,
    pdf_bytes,
    scanned_pdf_bytes,
    text_layers,
)


def box(text: str, x0: float, y0: float, x1: float, height: float = 20) -> Fragment:
    return Fragment(text, x0, y0, x1, y0 + height)


# --------------------------------------------------------------------------------------------------------------------
# Reading order (pure functions: no models)
# --------------------------------------------------------------------------------------------------------------------


def test_lines_top_to_bottom_whatever_order_the_boxes_come_in() -> None:
    fragments = [box("third line", 50, 100, 500), box("first line", 50, 50, 500), box("second line", 50, 75, 500)]
    assert layout_text(fragments) == "first line\nsecond line\nthird line"


def test_boxes_of_one_line_left_to_right_with_the_right_separator() -> None:
    fragments = [
        box("world", 300, 53, 400),
        box("Hello", 50, 50, 200),  # slightly higher: still the same line
        box("文档", 300, 76, 360),
        box("中文", 50, 75, 110),
        box("答案", 200, 100, 260),
        box("page 5", 50, 100, 150),
    ]
    assert layout_text(fragments) == "Hello world\n中文文档\npage 5 答案"


def test_paragraph_gap_becomes_a_blank_line() -> None:
    fragments = [box("one", 50, 50, 500), box("two", 50, 75, 500), box("after a gap", 50, 160, 500)]
    assert layout_text(fragments) == "one\ntwo\n\nafter a gap"


def _two_column_page() -> list[Fragment]:
    title = box("A title across both columns", 60, 20, 900, height=30)
    left = [box(f"left {i}", 50, 80 + 25 * i, 460) for i in range(6)]
    right = [box(f"right {i}", 520, 80 + 25 * i, 940) for i in range(6)]
    footer = box("A footer across the page", 60, 400, 900)
    return [footer, *reversed(right), title, *left]


def test_two_columns_are_read_one_after_the_other() -> None:
    lines = [line for line in layout_text(_two_column_page()).split("\n") if line]
    assert lines == [
        "A title across both columns",
        *[f"left {i}" for i in range(6)],
        *[f"right {i}" for i in range(6)],
        "A footer across the page",
    ]


def test_a_table_of_short_cells_is_read_row_by_row() -> None:
    rows = [(f"key {i}", f"value {i}") for i in range(6)]
    fragments = [box(k, 50, 50 + 25 * i, 150) for i, (k, _) in enumerate(rows)]
    fragments += [box(v, 600, 50 + 25 * i, 700) for i, (_, v) in enumerate(rows)]
    assert layout_text(fragments) == "\n".join(f"{k} {v}" for k, v in rows)


def test_empty_and_blank_fragments() -> None:
    assert layout_text([]) == ""
    assert layout_text([box("  ", 0, 0, 10), box("text", 0, 40, 100)]) == "text"


# --------------------------------------------------------------------------------------------------------------------
# Engine settings and rendering (PDFium only)
# --------------------------------------------------------------------------------------------------------------------


def test_ocr_uses_the_cores_this_process_may_run_on() -> None:
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert ocr_threads() == allowed
    kwargs = OcrConfig().engine_kwargs()
    assert kwargs["intra_op_num_threads"] == allowed
    assert kwargs["inter_op_num_threads"] == 1


def test_render_keeps_a4_at_the_configured_scale_and_caps_huge_pages() -> None:
    a4 = ScannedPdf(io.BytesIO(pdf_bytes(["x"])), config=OcrConfig(render_scale=2.0))
    poster = ScannedPdf(io.BytesIO(_poster_pdf()), config=OcrConfig(render_scale=2.0, max_render_side=2000))
    try:
        height, width = a4.render(0).shape
        assert abs(width - 2 * 595) <= 2 and abs(height - 2 * 842) <= 2  # A4 is 595 x 842 points
        assert max(poster.render(0).shape) <= 2000
    finally:
        a4.close()
        poster.close()


def _poster_pdf() -> bytes:
    from fpdf import FPDF

    pdf = FPDF(format=(2000, 3000))  # millimetres: a 2 m x 3 m page would be 11,000 x 17,000 pixels at scale 2
    pdf.add_page()
    return bytes(pdf.output())


# --------------------------------------------------------------------------------------------------------------------
# Real OCR (the packaged PP-OCRv4 models)
# --------------------------------------------------------------------------------------------------------------------


def _squeeze(text: str) -> str:
    return "".join(normalize_text(text).split())


def _similarity(reference: str, text: str) -> float:
    from difflib import SequenceMatcher

    return SequenceMatcher(None, _squeeze(reference), _squeeze(text), autojunk=False).ratio()


@pytest.fixture(scope="module")
def scanned_guides(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str]]]:
    """Chinese page 2, English page 3, Chinese page 3 of the guides, as one image-only PDF, with their text layers."""
    path = tmp_path_factory.mktemp("scans") / "scanned guides.pdf"
    path.write_bytes(
        concat_pdfs(
            [scanned_pdf_bytes(GUIDE_ZH, [1]), scanned_pdf_bytes(GUIDE_EN, [2]), scanned_pdf_bytes(GUIDE_ZH, [2])]
        )
    )
    zh, en = text_layers(GUIDE_ZH), text_layers(GUIDE_EN)
    yield path, [zh[1], en[2], zh[2]]


@pytest.mark.slow
def test_scanned_chinese_and_english_pages_are_read_on_their_page(scanned_guides: tuple[Path, list[str]]) -> None:
    path, references = scanned_guides
    assert all(text == "" for text in text_layers(path.read_bytes()))  # really no text layer
    events: list[PageEvent] = []
    units = list(iter_pages(path, ReadOptions(on_page=events.append)))
    assert [(unit.page, unit.ocr) for unit in units] == [(1, True), (2, True), (3, True)]
    assert events == [PageEvent(1, 3, True), PageEvent(2, 3, True), PageEvent(3, 3, True)]
    assert "默认的检索数量(top-k)是5个片段" in _squeeze(units[0].text)  # NFKC: full-width brackets fold
    assert "The citation badge colour is teal" in units[1].text
    assert "文档按400个词元切分" in _squeeze(units[2].text)
    for unit, reference in zip(units, references, strict=True):
        assert _similarity(reference, unit.text) >= 0.95, (unit.page, unit.text)
        assert unit.text == normalize_text(unit.text)


@pytest.mark.slow
def test_chinese_lines_have_no_spaces_between_characters(scanned_guides: tuple[Path, list[str]]) -> None:
    path, _ = scanned_guides
    first = next(iter_pages(path))
    assert "检索与回答" in first.text.split("\n")[0]
    assert " 的" not in first.text and "的 " not in first.text


@pytest.mark.slow
def test_mixed_pdf_ocrs_only_the_scanned_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = shared_engine()
    calls: list[int] = []
    original = engine.read

    def counting(image: object) -> str:
        calls.append(1)
        return original(image)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "read", counting)
    text_page = "Page one has a real text layer about apples."
    path = tmp_path / "mixed.pdf"
    path.write_bytes(concat_pdfs([pdf_bytes([text_page]), scanned_pdf_bytes(GUIDE_EN, [2])]))
    events: list[PageEvent] = []
    units = list(iter_pages(path, ReadOptions(on_page=events.append)))
    assert [(unit.page, unit.ocr) for unit in units] == [(1, False), (2, True)]
    assert units[0].text == text_page
    assert "badge colour is teal" in units[1].text
    assert [event.ocr for event in events] == [False, True]
    assert len(calls) == 1


@pytest.mark.slow
def test_ocr_finding_nothing_says_so(tmp_path: Path) -> None:
    path = tmp_path / "drawing.pdf"
    path.write_bytes(image_only_pdf_bytes())  # a filled rectangle: no text layer, no text in the picture either
    with pytest.raises(ingest.readers.UnreadableFile) as info:
        list(iter_pages(path))
    assert info.value.reason == "no text found, not even by OCR"


@pytest.mark.slow
def test_one_engine_shared_by_threads(scanned_guides: tuple[Path, list[str]]) -> None:
    path, _ = scanned_guides
    engines: list[object] = []
    texts: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            engines.append(shared_engine())
            texts.append(next(iter_pages(path)).text)
        except BaseException as exc:  # reported below: an exception in a thread would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({id(engine) for engine in engines}) == 1
    assert len(set(texts)) == 1 and "检索" in texts[0]


@pytest.mark.slow
def test_engine_sessions_use_our_threads_and_do_not_spin() -> None:
    engine = ingest.ocr.OcrEngine(OcrConfig(threads=1))
    rapid = engine._engine
    for wrapper in (rapid.text_det.infer, rapid.text_cls.infer, rapid.text_rec.session):
        options = wrapper.session.get_session_options()
        assert options.intra_op_num_threads == 1
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert rapid.text_rec.rec_image_shape == [3, OcrConfig().rec_height, 320]
    assert rapid.use_cls is False
