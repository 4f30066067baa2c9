"""Tests for ingest.readers: every format, every encoding, and every way a user's file can be broken."""

from __future__ import annotations

import codecs
import io
import os
import random
import tempfile
import threading
import traceback
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ingest.ocr
import ingest.readers
from ingest.readers import (
    SUPPORTED_SUFFIXES,
    PageEvent,
    PageText,
    ReadOptions,
    count_pages,
    decode_text,
    display_path,
    iter_pages,
    normalize_text,
)
from rag.config import Settings
from rag.errors import Cancelled, PasswordRequired, UnreadableFile
from tests.fixtures_docs import (
    concat_pdfs,
    encrypt_pdf,
    image_only_pdf_bytes,
    image_pdf_bytes,
    pdf_bytes,
    render_pages,
    stamped_scan_pdf_bytes,
    write_docx,
)

PAGES = ["Page one talks about apples.", "Page two talks about bananas.", "Page three talks about cherries."]
PASSWORD_NEEDED = "encrypted PDF; a password is needed"
WRONG_PASSWORD = "wrong password"
OCR_OFF = "no text layer; OCR is off (RAG_OCR=off)"
NOTHING_EVEN_BY_OCR = "no text found, not even by OCR"
NO_OCR = ReadOptions(ocr="off")


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read(path: Path, options: ReadOptions | None = None) -> list[tuple[str, int | None]]:
    return [(unit.text, unit.page) for unit in iter_pages(path, options)]


def reason(path: Path, options: ReadOptions | None = None) -> str:
    """The reason iter_pages gives for ``path``, after checking the message format callers rely on."""
    with pytest.raises(UnreadableFile) as info:
        list(iter_pages(path, options))
    exc = info.value
    assert str(exc) == f"{display_path(path)}: {exc.reason}"
    assert "\n" not in str(exc)
    assert len(exc.reason) <= 120
    return exc.reason


class FakeOcr:
    """Stands in for the OCR engine (the real models are tested in test_ocr.py): records each image it was
    given and answers with the next prepared text."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.images: list[object] = []

    def read(self, image: object) -> str:
        self.images.append(image)
        return self.answers.pop(0) if self.answers else ""


@pytest.fixture
def fake_ocr(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FakeOcr]]:
    """``fake_ocr("text of the first OCR'd page", ...)`` replaces the process's OCR engine."""

    def install(*answers: str) -> FakeOcr:
        engine = FakeOcr(*answers)
        monkeypatch.setattr(ingest.ocr, "shared_engine", lambda: engine)
        return engine

    yield install


# --------------------------------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------------------------------


def test_pdf_yields_each_page_with_its_number(tmp_path: Path) -> None:
    path = write(tmp_path, "three.pdf", pdf_bytes(PAGES))
    assert read(path) == [(PAGES[0], 1), (PAGES[1], 2), (PAGES[2], 3)]


def test_pdf_blank_page_is_skipped_without_shifting_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "gap.pdf", pdf_bytes([PAGES[0], None, PAGES[2]]))
    assert read(path) == [(PAGES[0], 1), (PAGES[2], 3)]


def test_pdf_suffix_is_case_insensitive(tmp_path: Path) -> None:
    path = write(tmp_path, "REPORT.PDF", pdf_bytes(PAGES[:1]))
    assert read(path) == [(PAGES[0], 1)]


SECRET = "correct horse 7"


def test_pdf_with_user_password_asks_for_it(tmp_path: Path) -> None:
    path = write(tmp_path, "locked.pdf", encrypt_pdf(pdf_bytes(PAGES), user_password=SECRET, owner_password="o"))
    with pytest.raises(PasswordRequired) as info:
        list(iter_pages(path))
    assert info.value.reason == PASSWORD_NEEDED
    assert str(info.value) == f"{display_path(path)}: {PASSWORD_NEEDED}"
    with pytest.raises(PasswordRequired):
        count_pages(path)


def test_pdf_opens_with_the_right_password(tmp_path: Path) -> None:
    path = write(tmp_path, "locked.pdf", encrypt_pdf(pdf_bytes(PAGES), user_password=SECRET, owner_password="o"))
    options = ReadOptions(password=SECRET)
    assert read(path, options) == [(PAGES[0], 1), (PAGES[1], 2), (PAGES[2], 3)]
    assert count_pages(path, options) == 3


def test_pdf_with_a_wrong_password(tmp_path: Path) -> None:
    path = write(tmp_path, "locked.pdf", encrypt_pdf(pdf_bytes(PAGES), user_password=SECRET, owner_password="o"))
    with pytest.raises(PasswordRequired) as info:
        list(iter_pages(path, ReadOptions(password="wrong " + SECRET)))
    assert info.value.reason == WRONG_PASSWORD


def test_password_never_appears_in_messages_or_reprs(tmp_path: Path, fake_ocr: Callable[..., FakeOcr]) -> None:
    scan = image_pdf_bytes(render_pages(pdf_bytes(["Scanned words"]), dpi=50))
    path = write(tmp_path, "locked.pdf", encrypt_pdf(scan, user_password=SECRET, owner_password="o"))
    fake_ocr("")  # the scan gives nothing: the error is raised after PDFium opened the file with the password
    seen: list[str] = []
    reasons: list[str] = []
    for password in (None, "x" + SECRET, SECRET):
        options = ReadOptions(password=password)
        seen.append(repr(options))
        with pytest.raises(UnreadableFile) as info:
            list(iter_pages(path, options))
        reasons.append(info.value.reason)
        seen += [repr(info.value), repr(info.value.args), *traceback.format_exception(info.value)]
    assert reasons == [PASSWORD_NEEDED, WRONG_PASSWORD, NOTHING_EVEN_BY_OCR]  # the right one got as far as OCR
    assert [text for text in seen if SECRET in text] == []


def test_pdf_with_only_an_owner_password_is_readable(tmp_path: Path) -> None:
    path = write(tmp_path, "owner.pdf", encrypt_pdf(pdf_bytes(PAGES), user_password="", owner_password="owner"))
    assert read(path) == [(PAGES[0], 1), (PAGES[1], 2), (PAGES[2], 3)]


@pytest.mark.parametrize(
    "make_data",
    [
        pytest.param(lambda: pdf_bytes(PAGES)[: len(pdf_bytes(PAGES)) // 2], id="truncated"),
        pytest.param(lambda: random.Random(0).randbytes(4096), id="garbage"),
        pytest.param(lambda: b"%PDF-1.7\n", id="header-only"),
    ],
)
def test_broken_pdf_is_invalid_or_recovered_never_a_crash(tmp_path: Path, make_data: Callable[[], bytes]) -> None:
    path = write(tmp_path, "broken.pdf", make_data())
    try:
        units = read(path, NO_OCR)
    except UnreadableFile as exc:
        assert exc.reason.startswith("not a valid PDF (") or exc.reason in (OCR_OFF, "PDF has no pages"), exc.reason
        assert reason(path, NO_OCR) == exc.reason  # also checks the one-line format
    else:  # pypdf may rebuild a damaged file; then only genuine pages may come out
        assert units
        assert all(page in (1, 2, 3) and text == PAGES[page - 1] for text, page in units), units


def test_truncated_pdf_reason_names_the_problem(tmp_path: Path) -> None:
    data = pdf_bytes(PAGES)
    path = write(tmp_path, "half.pdf", data[: len(data) // 2])
    assert reason(path) == "not a valid PDF (Stream has ended unexpectedly)"


def test_image_only_pdf_with_ocr_off(tmp_path: Path) -> None:
    path = write(tmp_path, "scan.pdf", image_only_pdf_bytes())
    assert reason(path, NO_OCR) == OCR_OFF


def test_ocr_off_from_settings(tmp_path: Path, rag_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_OCR", "off")
    options = ReadOptions.from_settings(Settings(_env_file=None))
    assert options.ocr == "off"
    assert reason(write(tmp_path, "scan.pdf", image_only_pdf_bytes()), options) == OCR_OFF


def test_image_only_pdf_where_ocr_finds_nothing(tmp_path: Path, fake_ocr: Callable[..., FakeOcr]) -> None:
    engine = fake_ocr("")
    assert reason(write(tmp_path, "scan.pdf", image_only_pdf_bytes())) == NOTHING_EVEN_BY_OCR
    assert len(engine.images) == 1


def test_pdf_page_that_fails_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pypdf import PageObject

    original = PageObject.extract_text

    def flaky(self: PageObject, *args: object, **kwargs: object) -> str:
        text = original(self, *args, **kwargs)
        if "bananas" in text:
            raise RecursionError("maximum recursion depth exceeded")
        return text

    monkeypatch.setattr(PageObject, "extract_text", flaky)
    path = write(tmp_path, "flaky.pdf", pdf_bytes(PAGES))
    assert read(path) == [(PAGES[0], 1), (PAGES[2], 3)]


def test_pdf_where_every_page_fails_is_invalid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pypdf import PageObject

    def broken(self: PageObject, *args: object, **kwargs: object) -> str:
        raise KeyError("/Contents")

    monkeypatch.setattr(PageObject, "extract_text", broken)
    path = write(tmp_path, "broken-pages.pdf", pdf_bytes(PAGES))
    assert reason(path) == "not a valid PDF ('/Contents')"


def test_pdf_reader_crash_becomes_short_one_line_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pypdf

    def explode(*args: object, **kwargs: object) -> None:
        raise RecursionError("maximum recursion depth exceeded\nwhile parsing " + "x" * 500)

    monkeypatch.setattr(pypdf, "PdfReader", explode)
    path = write(tmp_path, "evil.pdf", pdf_bytes(PAGES[:1]))
    got = reason(path)
    assert got.startswith("not a valid PDF (maximum recursion depth exceeded while parsing xxx")
    assert got.endswith("...)")


def test_pdf_pages_are_extracted_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Streaming matters for huge PDFs: taking the first page must not extract the others."""
    from pypdf import PageObject

    calls: list[int] = []
    original = PageObject.extract_text

    def counting(self: PageObject, *args: object, **kwargs: object) -> str:
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PageObject, "extract_text", counting)
    pages = iter_pages(write(tmp_path, "lazy.pdf", pdf_bytes(PAGES)))
    assert next(pages) == PageText(PAGES[0], 1)
    assert len(calls) == 1
    assert [unit.page for unit in pages] == [2, 3]
    assert len(calls) == 3


def test_pdf_is_read_from_the_open_file_not_from_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pypdf must get the file itself, so it seeks to the objects a page needs instead of holding the whole file."""
    import pypdf

    given: list[tuple[io.BufferedReader, int]] = []
    original = pypdf.PdfReader

    def recording(stream: io.BufferedReader, *args: object, **kwargs: object) -> object:
        given.append((stream, os.fstat(stream.fileno()).st_ino))  # a BytesIO has no fileno: this would raise
        return original(stream, *args, **kwargs)

    monkeypatch.setattr(pypdf, "PdfReader", recording)
    path = write(tmp_path, "big.pdf", pdf_bytes(PAGES))
    assert read(path) == [(PAGES[0], 1), (PAGES[1], 2), (PAGES[2], 3)]
    [(stream, inode)] = given
    assert inode == path.stat().st_ino
    assert stream.closed  # and closed once the pages are read


# --------------------------------------------------------------------------------------------------------------------
# PDF: OCR decisions (the engine is faked here; test_ocr.py runs the real one)
# --------------------------------------------------------------------------------------------------------------------


def _scan_of(text: str) -> bytes:
    """An image-only page showing ``text`` (low resolution: the fake OCR never looks at it)."""
    return image_pdf_bytes(render_pages(pdf_bytes([text]), dpi=50), dpi=50)


def test_mixed_pdf_ocrs_only_the_page_without_text_layer(tmp_path: Path, fake_ocr: Callable[..., FakeOcr]) -> None:
    engine = fake_ocr("Recognised   bananas\r\n\u2f64 text")
    path = write(tmp_path, "mixed.pdf", concat_pdfs([pdf_bytes([PAGES[0]]), _scan_of(PAGES[1]), pdf_bytes([PAGES[2]])]))
    events: list[PageEvent] = []
    units = list(iter_pages(path, ReadOptions(on_page=events.append)))
    assert units == [
        PageText(PAGES[0], 1, ocr=False),
        PageText("Recognised bananas\n用 text", 2, ocr=True),  # OCR text is normalised like any other
        PageText(PAGES[2], 3, ocr=False),
    ]
    assert events == [PageEvent(1, 3, False), PageEvent(2, 3, True), PageEvent(3, 3, False)]
    assert len(engine.images) == 1


def test_blank_pages_are_not_ocrd(tmp_path: Path, fake_ocr: Callable[..., FakeOcr]) -> None:
    engine = fake_ocr("never used")
    events: list[PageEvent] = []
    path = write(tmp_path, "gap.pdf", pdf_bytes([PAGES[0], None, PAGES[2]]))
    assert read(path, ReadOptions(on_page=events.append)) == [(PAGES[0], 1), (PAGES[2], 3)]
    assert engine.images == []
    assert [event.ocr for event in events] == [False, False, False]


def test_ocr_off_skips_scanned_pages_of_a_mixed_pdf(tmp_path: Path, fake_ocr: Callable[..., FakeOcr]) -> None:
    engine = fake_ocr("never used")
    path = write(tmp_path, "mixed.pdf", concat_pdfs([pdf_bytes([PAGES[0]]), _scan_of(PAGES[1])]))
    assert read(path, NO_OCR) == [(PAGES[0], 1)]
    assert engine.images == []


def test_scanner_stamp_does_not_count_as_a_text_layer(tmp_path: Path, fake_ocr: Callable[..., FakeOcr]) -> None:
    engine = fake_ocr("The whole scanned page.")
    stamped = stamped_scan_pdf_bytes(render_pages(pdf_bytes([PAGES[1]]), dpi=50)[0], "Scanned by App", dpi=50)
    path = write(tmp_path, "stamped.pdf", concat_pdfs([stamped, pdf_bytes(["Short title"])]))
    assert read(path) == [("The whole scanned page.", 1), ("Short title", 2)]  # a short title on a blank page stays
    assert len(engine.images) == 1


def test_ocr_page_that_fails_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def read(self, image: object) -> str:
            raise RuntimeError("onnxruntime exploded")

    monkeypatch.setattr(ingest.ocr, "shared_engine", Broken)
    path = write(tmp_path, "mixed.pdf", concat_pdfs([_scan_of(PAGES[0]), pdf_bytes([PAGES[1]])]))
    assert read(path) == [(PAGES[1], 2)]
    assert reason(write(tmp_path, "scan.pdf", _scan_of(PAGES[0]))) == "not a valid PDF (onnxruntime exploded)"


def test_missing_ocr_packages_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> None:
        raise ingest.ocr.OcrUnavailable("rapidocr-onnxruntime is not installed (rapidocr_onnxruntime)")

    monkeypatch.setattr(ingest.ocr, "shared_engine", unavailable)
    path = write(tmp_path, "scan.pdf", _scan_of(PAGES[0]))
    assert reason(path) == (
        "page 1 needs OCR, but rapidocr-onnxruntime is not installed (rapidocr_onnxruntime); "
        "install it or set RAG_OCR=off"
    )


# --------------------------------------------------------------------------------------------------------------------
# PDF: limits, progress and cancellation
# --------------------------------------------------------------------------------------------------------------------


def test_pdf_over_the_page_limit_is_refused_up_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pypdf import PageObject

    extracted: list[int] = []
    monkeypatch.setattr(PageObject, "extract_text", lambda self, *a, **k: extracted.append(1) or "text")
    path = write(tmp_path, "long.pdf", pdf_bytes(PAGES))
    options = ReadOptions(max_pages=2)
    assert reason(path, options) == "3 pages is over the 2-page limit (RAG_MAX_PAGES)"
    with pytest.raises(UnreadableFile, match="over the 2-page limit"):
        count_pages(path, options)
    assert extracted == []
    assert count_pages(path, ReadOptions(max_pages=3)) == 3


def test_page_limit_uses_the_claimed_count_before_walking_the_tree(tmp_path: Path) -> None:
    data = pdf_bytes(PAGES)
    assert data.count(b"/Count 3") == 1
    path = write(tmp_path, "claims.pdf", data.replace(b"/Count 3", b"/Count 9"))  # same length: offsets stay valid
    assert reason(path, ReadOptions(max_pages=5)) == "9 pages is over the 5-page limit (RAG_MAX_PAGES)"


def test_page_limit_message_uses_thousands_separators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest.readers, "_claimed_page_count", lambda reader: 1203)
    path = write(tmp_path, "long.pdf", pdf_bytes(PAGES))
    assert reason(path, ReadOptions(max_pages=1000)) == "1,203 pages is over the 1,000-page limit (RAG_MAX_PAGES)"


class FakeClock:
    """Monotonic time that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_time_budget_stops_between_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pypdf import PageObject

    clock = FakeClock()
    original = PageObject.extract_text

    def slow(self: PageObject, *args: object, **kwargs: object) -> str:
        clock.now += 10  # each page takes 10 s of reading
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ingest.readers, "_clock", clock)
    monkeypatch.setattr(PageObject, "extract_text", slow)
    path = write(tmp_path, "slow.pdf", pdf_bytes(PAGES))
    units: list[int | None] = []
    with pytest.raises(UnreadableFile) as info:
        for unit in iter_pages(path, ReadOptions(max_seconds=15)):
            units.append(unit.page)
    assert info.value.reason == "reading took longer than 15 s (RAG_MAX_SECONDS_PER_DOC); stopped before page 3 of 3"
    assert units == [1, 2]


def test_time_budget_does_not_count_the_callers_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(ingest.readers, "_clock", clock)
    path = write(tmp_path, "fast.pdf", pdf_bytes(PAGES))
    pages = []
    for unit in iter_pages(path, ReadOptions(max_seconds=15)):
        pages.append(unit.page)
        clock.now += 1000  # the caller (embedding, writing) is slow; the reader is not
    assert pages == [1, 2, 3]


def test_page_events_cover_every_page_even_blank_ones(tmp_path: Path) -> None:
    events: list[PageEvent] = []
    path = write(tmp_path, "gap.pdf", pdf_bytes([PAGES[0], None, PAGES[2]]))
    assert read(path, ReadOptions(ocr="off", on_page=events.append)) == [(PAGES[0], 1), (PAGES[2], 3)]
    assert events == [PageEvent(1, 3, False), PageEvent(2, 3, False), PageEvent(3, 3, False)]


def test_single_unit_formats_report_one_page(tmp_path: Path) -> None:
    events: list[PageEvent] = []
    assert read(write(tmp_path, "a.md", b"# Title"), ReadOptions(on_page=events.append)) == [("# Title", None)]
    assert events == [PageEvent(1, 1, False)]


def test_cancel_between_pages(tmp_path: Path) -> None:
    events: list[PageEvent] = []
    options = ReadOptions(on_page=events.append, cancelled=lambda: len(events) >= 1)
    path = write(tmp_path, "three.pdf", pdf_bytes(PAGES))
    pages: list[int | None] = []
    with pytest.raises(Cancelled) as info:
        for unit in iter_pages(path, options):
            pages.append(unit.page)
    assert str(info.value) == f"{display_path(path)}: cancelled at page 2 of 3"
    assert pages == [1]
    assert events == [PageEvent(1, 3, False)]


def test_cancel_before_a_single_unit_file(tmp_path: Path) -> None:
    with pytest.raises(Cancelled):
        list(iter_pages(write(tmp_path, "a.txt", b"text"), ReadOptions(cancelled=lambda: True)))


def test_count_pages(tmp_path: Path) -> None:
    assert count_pages(write(tmp_path, "three.pdf", pdf_bytes(PAGES))) == 3
    assert count_pages(write(tmp_path, "a.txt", b"text")) is None
    with pytest.raises(UnreadableFile, match="not a valid PDF"):
        count_pages(write(tmp_path, "bad.pdf", b"%PDF-1.7\n garbage"))


def test_options_from_settings(rag_env: None) -> None:
    settings = Settings(_env_file=None, ocr="off", max_pages=7, max_seconds_per_doc=30, max_unpacked_mb=5)
    calls: list[PageEvent] = []
    options = ReadOptions.from_settings(settings, password=SECRET, on_page=calls.append)
    assert (options.ocr, options.max_pages, options.max_seconds, options.max_unpacked_mb) == ("off", 7, 30.0, 5)
    assert options.password == SECRET
    assert options.on_page == calls.append
    assert ReadOptions.from_settings(Settings(_env_file=None)) == ReadOptions()  # the defaults agree


# --------------------------------------------------------------------------------------------------------------------
# Plain text encodings
# --------------------------------------------------------------------------------------------------------------------

MIXED = "Ask your documents: café, naïve, 中文 and ✓ symbols.\nSecond line."
SIMPLIFIED = "我们的知识库支持中文文档检索。用户可以上传文件，然后提出问题，系统会根据文档内容给出答案。"
TRADITIONAL = (
    "我們的知識庫支援中文文件檢索。使用者可以上傳檔案，然後提出問題，"
    "系統會根據文件內容給出答案。這是一個在本機執行的應用程式。"
)
WESTERN = "Café crème brûlée, naïve façade and “smart quotes” – cp1252."

ENCODED = {
    "utf-8": MIXED.encode("utf-8"),
    "utf-8-bom": codecs.BOM_UTF8 + MIXED.encode("utf-8"),
    "utf-16-le-bom": codecs.BOM_UTF16_LE + MIXED.encode("utf-16-le"),
    "utf-16-be-bom": codecs.BOM_UTF16_BE + MIXED.encode("utf-16-be"),
    "utf-16-le": MIXED.encode("utf-16-le"),
    "utf-16-be": MIXED.encode("utf-16-be"),
    "utf-32-le-bom": codecs.BOM_UTF32_LE + MIXED.encode("utf-32-le"),
    "utf-32-be-bom": codecs.BOM_UTF32_BE + MIXED.encode("utf-32-be"),
    "utf-32-le": MIXED.encode("utf-32-le"),
    "utf-32-be": MIXED.encode("utf-32-be"),
}
LEGACY = {
    "gb18030": (SIMPLIFIED, "gb18030"),
    "gbk": (SIMPLIFIED, "gbk"),
    "big5": (TRADITIONAL, "big5"),
    "cp1252": (WESTERN, "cp1252"),
}


@pytest.mark.parametrize("name", list(ENCODED))
def test_unicode_encodings_are_detected(tmp_path: Path, name: str) -> None:
    data = ENCODED[name]
    assert decode_text(data) == MIXED
    assert read(write(tmp_path, f"{name}.txt", data)) == [(MIXED, None)]


@pytest.mark.parametrize("name", list(LEGACY))
def test_legacy_encodings_are_detected(tmp_path: Path, name: str) -> None:
    text, encoding = LEGACY[name]
    data = text.encode(encoding)
    assert decode_text(data) == text
    # NFKC turns full-width punctuation into ASCII: "，" -> ","
    assert read(write(tmp_path, f"{name}.text", data)) == [(text.replace("，", ","), None)]


def test_short_chinese_prefers_gb18030() -> None:
    """Two characters decode validly as both GBK and Big5; mainland Chinese is the likelier author."""
    assert decode_text("用户".encode("gb18030")) == "用户"


def test_binary_content_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"^binary content, not text$"):
        decode_text(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=r"^binary content, not text$"):
        decode_text(b"\x01\x02\x03\x04\x05\x06\x07\x08abc")  # no NUL, but mostly control characters


def test_binary_file_with_text_suffix(tmp_path: Path) -> None:
    assert reason(write(tmp_path, "photo.txt", bytes(range(256)) * 8)) == "binary content, not text"


def test_kangxi_radicals_become_ordinary_characters(tmp_path: Path) -> None:
    kangxi = "\u2f64户\u2f3f册"  # ⽤户⼿册 as extracted from real Chinese PDFs
    assert normalize_text(kangxi) == "用户手册"
    assert read(write(tmp_path, "kangxi.txt", kangxi.encode())) == [("用户手册", None)]


def test_normalize_text_cleans_whitespace_and_controls() -> None:
    raw = "  Ｆｕｌｌ\u00a0width\tand  tabs \r\nline\x00two\x07  \r\rgap\n\n\n\n\nend \x0c next  "
    assert normalize_text(raw) == "Full width and tabs\nlinetwo\n\ngap\n\nend\n next"


def test_markdown_keeps_text_but_drops_urls(tmp_path: Path) -> None:
    markdown = (
        "# Guide\n\n"
        "See ![flow diagram](img/flow.png) and [the docs](https://en.wikipedia.org/wiki/Foo_(bar)).\n"
        "- item one\n"
    )
    assert read(write(tmp_path, "guide.md", markdown.encode())) == [
        ("# Guide\n\nSee flow diagram and the docs.\n- item one", None)
    ]


def test_markdown_long_suffix(tmp_path: Path) -> None:
    assert read(write(tmp_path, "notes.markdown", b"[x](y)")) == [("x", None)]


def test_windows_line_endings_and_form_feeds_are_text(tmp_path: Path) -> None:
    data = b"first line\r\nsecond line\r\n\x0cnext page\r\n"
    assert read(write(tmp_path, "crlf.txt", data)) == [("first line\nsecond line\n\nnext page", None)]


def test_whitespace_only_text_has_no_text(tmp_path: Path) -> None:
    assert reason(write(tmp_path, "blank.txt", b" \r\n\t \n  ")) == "no text"


# --------------------------------------------------------------------------------------------------------------------
# HTML and DOCX
# --------------------------------------------------------------------------------------------------------------------

HTML = """<!DOCTYPE html>
<html><head><title>Hidden title</title><style>p { color: red }</style>
<script>var secret = "script text";</script></head>
<body>
  <noscript>enable js</noscript><template><p>template text</p></template>
  <h1>Main   heading</h1>
  <p>First <b>bold</b>
     paragraph.<!-- a comment --></p>
  <ul><li>one</li><li>two</li></ul>
  <table><tr><td>cell a</td><td>cell b</td></tr></table>
  <svg><text>svg text</text></svg><iframe src="x">frame</iframe>
  line<br>break
</body></html>"""


def test_html_visible_text_only(tmp_path: Path) -> None:
    assert read(write(tmp_path, "page.html", HTML.encode())) == [
        ("Main heading\nFirst bold paragraph.\none\ntwo\ncell a cell b\nline\nbreak", None)
    ]


def test_html_drops_navigation_and_mediawiki_markers(tmp_path: Path) -> None:
    """A Wikipedia page saved from a browser: menus, "[edit]" links and reference markers are not the article."""
    page = """<html><body><nav><a href="/">Main page</a> <a>Random article</a></nav>
    <div role="navigation">Contents</div>
    <h2>History<span class="mw-editsection">[<a>edit</a>]</span></h2>
    <p>Python was conceived in the late 1980s<sup class="reference"><a>[41]</a></sup> by Guido van Rossum.<sup
    id="cite_ref-2" class="reference"><a>[42]</a></sup> Work began in December 1989.</p>
    <table class="navbox"><tr><td>Programming languages</td></tr></table></body></html>"""
    assert read(write(tmp_path, "Python.html", page.encode())) == [
        ("History\nPython was conceived in the late 1980s by Guido van Rossum. Work began in December 1989.", None)
    ]
    # Sphinx (Python's documentation) marks its cross-reference links class="reference": their text is the document
    sphinx = '<p>Use the <a class="reference internal" href="#m"><code>math.fsum()</code></a> function.</p>'
    assert read(write(tmp_path, "floats.html", sphinx.encode())) == [("Use the math.fsum() function.", None)]


def test_html_uses_declared_charset(tmp_path: Path) -> None:
    page = f'<html><head><meta charset="gb2312"></head><body><p>{SIMPLIFIED}</p></body></html>'
    assert read(write(tmp_path, "zh.htm", page.encode("gb18030"))) == [(normalize_text(SIMPLIFIED), None)]


def test_html_without_declared_charset_is_detected(tmp_path: Path) -> None:
    page = f"<p>{MIXED}</p>"  # a newline inside a paragraph is just a space in HTML
    assert read(write(tmp_path, "u16.html", codecs.BOM_UTF16_LE + page.encode("utf-16-le"))) == [
        (MIXED.replace("\n", " "), None)
    ]


def test_html_with_nothing_visible_has_no_text(tmp_path: Path) -> None:
    assert reason(write(tmp_path, "empty.html", b"<html><head><title>t</title></head><body> </body></html>")) == (
        "no text"
    )


def test_docx_paragraphs_and_table_in_document_order(tmp_path: Path) -> None:
    path = write_docx(
        tmp_path / "report.docx",
        ["Quarterly report", "Revenue grew."],
        table=[["Region", "Sales"], ["North", "120"]],
        after="Signed, the board.",
    )
    assert read(path) == [("Quarterly report\nRevenue grew.\nRegion | Sales\nNorth | 120\nSigned, the board.", None)]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"this is not a zip", id="not-zip"),
        pytest.param(b"PK\x03\x04" + b"\x00" * 40, id="broken-zip"),
        pytest.param("zip-without-document", id="other-zip"),
    ],
)
def test_invalid_docx(tmp_path: Path, data: bytes | str) -> None:
    if isinstance(data, str):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("hello.txt", "not a word document")
        data = buffer.getvalue()
    assert reason(write(tmp_path, "bad.docx", data)) == "not a valid DOCX file"


def docx_shaped_zip(document_xml_size: int, compresslevel: int = 9) -> bytes:
    """A zip laid out like a DOCX whose word/document.xml inflates to ``document_xml_size`` bytes of zeros."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        archive.writestr("_rels/.rels", '<?xml version="1.0"?><Relationships/>')
        with archive.open("word/document.xml", "w", force_zip64=True) as part:
            chunk = bytes(1 << 20)
            for start in range(0, document_xml_size, len(chunk)):
                part.write(chunk[: document_xml_size - start])
    return buffer.getvalue()


@pytest.fixture
def docx_parses(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Records every python-docx parse: a refused zip must be refused before one."""
    import docx

    calls: list[object] = []
    original = docx.Document

    def recording(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(docx, "Document", recording)
    return calls


def test_zip_bomb_docx_is_refused_before_parsing(tmp_path: Path, docx_parses: list[object]) -> None:
    data = docx_shaped_zip(201 * 1024 * 1024)
    assert len(data) < 1024 * 1024
    assert reason(write(tmp_path, "bomb.docx", data)) == "unpacks to more than 200 MB (RAG_MAX_UNPACKED_MB)"
    assert docx_parses == []


def test_unpacked_size_limit_follows_the_setting(tmp_path: Path, docx_parses: list[object]) -> None:
    path = write(tmp_path, "big.docx", docx_shaped_zip(3 * 1024 * 1024, compresslevel=1))
    assert reason(path, ReadOptions(max_unpacked_mb=2)) == "unpacks to more than 2 MB (RAG_MAX_UNPACKED_MB)"
    assert docx_parses == []
    assert reason(path, ReadOptions(max_unpacked_mb=4)) == "not a valid DOCX file"  # allowed in, then not a DOCX
    assert len(docx_parses) == 1


def test_zip_with_an_extreme_compression_ratio_is_refused(tmp_path: Path, docx_parses: list[object]) -> None:
    data = docx_shaped_zip(20 * 1024 * 1024)  # well under the 200 MB limit
    part = zipfile.ZipFile(io.BytesIO(data)).getinfo("word/document.xml")
    assert part.file_size / part.compress_size > 1000
    path = write(tmp_path, "dense.docx", data)
    ratio = part.file_size / part.compress_size
    assert reason(path) == f"looks like a zip bomb: word/document.xml expands {ratio:,.0f} times"
    assert docx_parses == []


def test_real_docx_passes_the_zip_checks(tmp_path: Path, docx_parses: list[object]) -> None:
    path = write_docx(tmp_path / "ok.docx", ["Small but real."])
    before = len(docx_parses)  # writing it created a document too
    assert read(path, ReadOptions(max_unpacked_mb=1)) == [("Small but real.", None)]
    assert len(docx_parses) == before + 1


# --------------------------------------------------------------------------------------------------------------------
# Files, names and permissions
# --------------------------------------------------------------------------------------------------------------------


def test_supported_suffixes() -> None:
    assert isinstance(SUPPORTED_SUFFIXES, frozenset)
    assert sorted(SUPPORTED_SUFFIXES) == [".docx", ".htm", ".html", ".markdown", ".md", ".pdf", ".text", ".txt"]


@pytest.mark.parametrize("suffix", sorted(SUPPORTED_SUFFIXES))
def test_zero_byte_file_is_empty(tmp_path: Path, suffix: str) -> None:
    assert reason(write(tmp_path, f"empty{suffix}", b"")) == "empty file"


def test_unsupported_suffix(tmp_path: Path) -> None:
    assert reason(write(tmp_path, "data.XYZ", b"abc")) == "unsupported file type '.xyz'"
    assert reason(write(tmp_path, "Makefile", b"abc")) == "unsupported file type (no extension)"


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert reason(tmp_path / "missing.txt") == "file not found"
    (tmp_path / "folder.pdf").mkdir()
    assert reason(tmp_path / "folder.pdf") == "not a file"


@pytest.mark.parametrize("name", ["secret.pdf", "secret.txt"])
def test_permission_denied_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Simulated, because root (as in CI containers) can read a 0o000 file anyway."""
    path = write(tmp_path, name, pdf_bytes(PAGES[:1]))
    original = os.open

    def refuse(file: object, *args: object, **kwargs: object) -> int:
        if os.fspath(file) == os.fspath(path):  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied", str(file))
        return original(file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refuse)
    assert reason(path) == "permission denied"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
@pytest.mark.parametrize("suffix", [".pdf", ".txt", ".docx"])
def test_fifo_is_refused_without_blocking(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"pipe{suffix}"
    os.mkfifo(path)
    outcome: list[object] = []

    def attempt() -> None:
        try:
            list(iter_pages(path))
        except UnreadableFile as exc:
            outcome.append(exc.reason)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # unblock the reader so the thread ends, then fail
        with open(path, "wb"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert outcome == ["not a file"]
    assert count_pages(path) is None if suffix != ".pdf" else True
    if suffix == ".pdf":
        with pytest.raises(UnreadableFile, match="not a file"):
            count_pages(path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read a 0o000 file")
def test_permission_denied_for_real(tmp_path: Path) -> None:
    path = write(tmp_path, "secret.txt", b"classified")
    path.chmod(0)
    try:
        assert reason(path) == "permission denied"
    finally:
        path.chmod(0o600)


def _undecodable_name(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / os.fsdecode(b"caf\xe9.txt")
    try:
        path.write_bytes(data)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system only accepts UTF-8 file names")
    return path


def test_non_utf8_file_name_is_readable(tmp_path: Path) -> None:
    assert read(_undecodable_name(tmp_path, b"latin-1 name")) == [("latin-1 name", None)]


def test_error_about_non_utf8_file_name_is_printable(tmp_path: Path) -> None:
    path = _undecodable_name(tmp_path, b"")
    with pytest.raises(UnreadableFile) as info:
        list(iter_pages(path))
    message = str(info.value)
    assert message == f"{tmp_path}{os.sep}caf\ufffd.txt: empty file"
    message.encode("utf-8")  # would raise UnicodeEncodeError on a surrogate
    print(message, file=io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))


def test_display_path_replaces_undecodable_bytes() -> None:
    assert display_path(os.fsdecode(b"/docs/caf\xe9.txt")) == "/docs/caf\ufffd.txt"
    assert display_path(Path("/docs/中文.txt")) == "/docs/中文.txt"


# --------------------------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------------------------

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID_PDF = pdf_bytes(PAGES)


def _valid_docx() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return write_docx(Path(folder) / "d.docx", ["Hello"], table=[["a", "b"]]).read_bytes()


VALID_DOCX = _valid_docx()


@st.composite
def damaged(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` truncated and with a few bytes overwritten: deeper into the parsers than random noise."""
    data = bytearray(original[: draw(st.integers(1, len(original)))])
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def _check_file_outcome(suffix: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"doc{suffix}"
        path.write_bytes(data)
        try:
            units = list(iter_pages(path, NO_OCR))  # OCR of damaged PDFs is covered with a fake engine above
        except UnreadableFile as exc:
            assert exc.reason
            assert "\n" not in str(exc)
            return
        assert units
        for unit in units:
            assert isinstance(unit, PageText)
            assert unit.text
            assert unit.text == normalize_text(unit.text)
            assert unit.page is None if suffix != ".pdf" else unit.page >= 1


@FAST
@given(st.binary(max_size=2048))
def test_decode_text_returns_str_or_value_error(data: bytes) -> None:
    try:
        text = decode_text(data)
    except ValueError as exc:
        assert str(exc) == "binary content, not text"
    else:
        assert isinstance(text, str)


@FAST
@given(st.sampled_from([".txt", ".md", ".pdf", ".html", ".docx"]), st.binary(max_size=1024))
def test_iter_pages_on_arbitrary_bytes_never_crashes(suffix: str, data: bytes) -> None:
    _check_file_outcome(suffix, data)


@FAST
@given(st.one_of(damaged(VALID_PDF).map(lambda d: (".pdf", d)), damaged(VALID_DOCX).map(lambda d: (".docx", d))))
def test_iter_pages_on_damaged_documents_never_crashes(case: tuple[str, bytes]) -> None:
    _check_file_outcome(*case)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from("\r\n\t \x00\x0c\u00a0\u2f64\u0301\u3000")))
def test_normalize_text_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert "\r" not in once
    assert "\n\n\n" not in once
    assert once == once.strip()


def test_a_web_page_saved_as_pdf_by_chromium_loses_the_print_header_and_footer(tmp_path: Path) -> None:
    """The real thing: Debian's Chromium prints a MediaWiki-style page with its default header and footer (the way
    "Save as PDF" does), and what ingestion chunks holds the article without the date, title and address lines."""
    import shutil

    from ingest.chunking import repeated_lines, strip_lines

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Debian's chromium is missing (scripts/test.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    page_html = Path(__file__).parent / "fixtures" / "wiki-style.html"
    pdf = tmp_path / "Harrow Point Light - Wikipedia.pdf"
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            tab = browser.new_page()
            tab.goto(page_html.as_uri())
            tab.pdf(path=str(pdf), format="A4", display_header_footer=True, margin={"top": "1cm", "bottom": "1cm"})
        finally:
            browser.close()
    pages = [text for text, _ in read(pdf)]
    raw = "\n".join(pages)
    assert page_html.as_uri() in raw and "Harrow Point Light - Wikipedia" in raw  # printed, and read back
    kept = "\n".join(strip_lines(text, repeated_lines(pages)) for text in pages)
    assert "The light was first shown on 1 November" in kept
    assert page_html.as_uri() not in kept and "Harrow Point Light - Wikipedia" not in kept
