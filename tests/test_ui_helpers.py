"""The UI's pure helpers: escaping, highlighting, upload names, progress, export (no Streamlit needed)."""

from __future__ import annotations

import html
import io
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from ingest.pipeline import FileResult, Progress
from rag.store import DocRecord
from tests.fixtures_docs import pdf_bytes
from ui.conversation import (
    assistant_message,
    closing_stream,
    conversation_markdown,
    model_history,
    user_message,
)
from ui.library import document_label, document_rows, is_inside, machine_lines
from ui.text import escape_markdown, highlight_supporting, highlighted_markdown, unwrap_lines, where
from ui.uploads import (
    IngestProgress,
    page_file_name,
    result_message,
    safe_upload_path,
    sanitize_filename,
    save_upload,
    single_page_pdf,
    upload_size_error,
)


def render(markdown: str) -> str:
    """CommonMark plus the GFM parts Streamlit also renders (tables, strikethrough); markdown-it comes with chromadb."""
    markdown_it = pytest.importorskip("markdown_it")
    md = markdown_it.MarkdownIt("commonmark", {"linkify": False}).enable(["table", "strikethrough"])
    return md.render(markdown)


def literal(text: str) -> str:
    """What the renderer gives for ``text`` shown exactly as written: one paragraph of HTML-escaped characters."""
    return f"<p>{html.escape(text).replace('&#x27;', chr(39))}</p>\n"


# ------------------------------------------------------------------------------------------------ escaping
HOSTILE = [
    "<script>alert(1)</script>",
    "**bold** and __also__ and *em* and ~~gone~~",
    "[x](javascript:alert(1))",
    "![img](http://evil.example/x.png)",
    "<img src=x onerror=alert(1)>",
    "# heading",
    "> quote",
    "- item",
    "1. item",
    "`code` and ```fence```",
    "| a | b |",
    "$x^2$ and $$y$$",
    ":red[coloured] :material/home: :orange-background[hi]",
    "&lt;script&gt; &amp;",
    "<https://evil.example>",
    "a\\*b\\",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_escaped_text_renders_literally(text: str) -> None:
    rendered = render(escape_markdown(text))
    assert rendered == literal(text)
    for tag in ("<a", "<img", "<script", "<strong", "<em", "<code", "<h1", "<blockquote", "<li", "<table", "<del"):
        assert tag not in rendered


def test_escaping_keeps_unicode_and_plain_words() -> None:
    assert escape_markdown("用户指南 café") == "用户指南 café"
    assert escape_markdown("a.b") == "a\\.b"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1))
def test_any_line_of_text_renders_exactly(text: str) -> None:
    assert render(escape_markdown(text)) == literal(text)


# ------------------------------------------------------------------------------------------------ highlighting
CHUNK = (
    "Citations\nThe citation badge colour is teal: each answer's sources are shown under it with the file name "
    "and page number. Uploads are limited to 50 MB. The library lists every document."
)


def test_highlight_marks_the_supporting_sentence_only() -> None:
    parts = highlight_supporting(CHUNK, "The citation badge is teal [1].")
    assert "".join(s for s, _ in parts) == CHUNK  # nothing lost
    marked = [s for s, ok in parts if ok]
    assert len(marked) == 1 and "teal" in marked[0]


def test_citation_numbers_and_contractions_do_not_count() -> None:
    parts = highlight_supporting("Version 1 is old. It's 2 days.", "It's in [1] and [2].")
    assert not any(ok for _, ok in parts)


def test_highlight_chinese() -> None:
    chunk = "引用标记的颜色是青色。上传文件不能超过五十兆。"
    parts = highlight_supporting(chunk, "引用标记是青色的[1]。")
    assert [ok for _, ok in parts] == [True, False]


def test_nothing_highlighted_for_empty_answer_or_chunk() -> None:
    assert not any(ok for _, ok in highlight_supporting(CHUNK, ""))
    assert highlight_supporting("", "teal") == []


def test_highlighted_markdown_is_escaped_and_wrapped_per_line() -> None:
    parts = [("Intro <b>x</b>. ", False), ("Badge **teal**\nsecond line. ", True), ("[a](javascript:x)", False)]
    out = highlighted_markdown(parts)
    assert ":orange-background[Badge \\*\\*teal\\*\\*]" in out
    assert ":orange-background[second line\\.]" in out
    assert "\\[a\\]\\(javascript\\:x\\)" in out
    assert "<b>" not in out and "\\<b\\>" in out
    assert "<a" not in render(out)


def test_highlighted_markdown_keeps_paragraphs_and_drops_indentation() -> None:
    out = highlighted_markdown([("one\n        indented code?\n\n\n two", False)])
    assert out == "one  \nindented code?\n\ntwo"
    assert "<code" not in render(out)


WRAPPED = "The citation badge colour is teal: each answer's sources are shown under it with the file name"


def test_unwrap_joins_lines_the_pdf_layout_wrapped() -> None:
    text = f"Citations\n{WRAPPED}\nand page number.\nNext line."
    assert unwrap_lines(text) == f"Citations\n{WRAPPED} and page number.\nNext line."


def test_unwrap_keeps_author_breaks() -> None:
    for text in (
        f"{WRAPPED}.\nNew sentence.",  # ended by punctuation
        f"{WRAPPED}\n- a list item",
        f"{WRAPPED}\n2. numbered",
        f"{WRAPPED}\n\nnew paragraph",
        "short line\nanother short line",
    ):
        assert unwrap_lines(text) == text


def test_unwrap_joins_chinese_without_a_space() -> None:
    line = "引用标记的颜色是青色，每个答案的来源都显示在答案下方，包括文件名和页码"  # 35 wide characters = 70 columns
    assert unwrap_lines(f"{line}\n方便核对。\n下一行") == f"{line}方便核对。\n下一行"


def test_where() -> None:
    assert where("a.pdf", 3) == "a.pdf, page 3"
    assert where("a.md", None) == "a.md"


# ------------------------------------------------------------------------------------------------ upload names
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../x.pdf", "x.pdf"),
        ("/etc/passwd", "passwd"),
        ("C:\\Users\\me\\report.docx", "report.docx"),
        ("..", "upload"),
        ("", "upload"),
        ("   ", "upload"),
        (".hidden.pdf", "hidden.pdf"),
        ("...pdf", "pdf"),
        ("用户指南.pdf", "用户指南.pdf"),
        ("a\x00b\nc\x1b.txt", "abc.txt"),
        ("evil\u202efdp.exe.pdf", "evilfdp.exe.pdf"),  # right-to-left override dropped
        ('a<b>:c"d|e?f*.md', "a_b__c_d_e_f_.md"),
        ("CON.txt", "_CON.txt"),
        ("notes.", "notes"),
        ("ｆｕｌｌ.md", "ｆｕｌｌ.md"),
    ],
)
def test_sanitize_filename(name: str, expected: str) -> None:
    assert sanitize_filename(name) == expected


def test_sanitize_filename_limits_bytes_and_keeps_extension() -> None:
    name = sanitize_filename("长" * 300 + ".pdf")
    assert name.endswith(".pdf") and len(name.encode()) <= 200
    name.encode().decode()  # no split character


@pytest.mark.parametrize(
    "name", ["../../x.pdf", "/tmp/x.pdf", "..", "", "a/../../b.txt", "..\\..\\c.md", "用户指南.pdf"]
)
def test_safe_upload_path_stays_inside(tmp_path: Path, name: str) -> None:
    upload_dir = tmp_path / "uploads"
    upload_dir.mkdir()
    path = safe_upload_path(upload_dir, name)
    assert path.parent == upload_dir.resolve()
    assert not path.name.startswith(".")


def test_safe_upload_path_collisions(tmp_path: Path) -> None:
    first = save_upload(tmp_path, "guide.pdf", b"one")
    assert first == tmp_path.resolve() / "guide.pdf"
    assert save_upload(tmp_path, "guide.pdf", b"one") == first  # same content: reused
    second = save_upload(tmp_path, "guide.pdf", b"two")
    assert second.name == "guide-2.pdf" and second.read_bytes() == b"two"
    assert first.read_bytes() == b"one"
    assert save_upload(tmp_path, "guide.pdf", b"two") == second
    assert save_upload(tmp_path, "guide.pdf", b"three").name == "guide-3.pdf"
    assert save_upload(tmp_path, "README", b"x").name == "README"
    assert save_upload(tmp_path, "README", b"y").name == "README-2"
    assert not list(tmp_path.glob(".part-*"))


def test_safe_upload_path_never_follows_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "a.txt").symlink_to(outside)
    path = save_upload(uploads, "a.txt", b"new")
    assert path.name == "a-2.txt" and outside.read_text() == "secret"


def test_upload_size_error() -> None:
    assert upload_size_error("a.pdf", 50 * 1024 * 1024, 50) is None
    message = upload_size_error("a.pdf", 60 * 1024 * 1024, 50)
    assert message is not None and "a.pdf" in message and "60.0 MB" in message and "RAG_MAX_UPLOAD_MB" in message


# ------------------------------------------------------------------------------------------------ ingest feedback
@pytest.mark.parametrize(
    ("result", "level", "words"),
    [
        (FileResult("/d/a.pdf", "ingested", 12), "success", "a\\.pdf: ingested, 12 chunks"),
        (FileResult("/d/a.pdf", "replaced", 3), "success", "re-ingested"),
        (FileResult("/d/a.pdf", "skipped", 3, "unchanged"), "info", "already ingested, skipped"),
        (
            FileResult("/d/b.pdf", "skipped", 0, "same content as a.pdf, already ingested"),
            "info",
            "already ingested, skipped",
        ),
        (FileResult("/d/a.xyz", "skipped", 0, "unsupported file type '.xyz'"), "warning", "unsupported"),
        (FileResult("/d/a.pdf", "failed", 0, "encrypted PDF"), "error", "a\\.pdf: encrypted PDF"),
        (FileResult("/d/a.pdf", "removed", 4), "success", "removed"),
    ],
)
def test_result_message(result: FileResult, level: str, words: str) -> None:
    got_level, text = result_message(result)
    assert got_level == level and words in text


def test_result_message_escapes_names() -> None:
    _, text = result_message(FileResult("/d/[x](javascript:y).txt", "ingested", 1))
    assert "<a" not in render(text)


def test_ingest_progress() -> None:
    progress = IngestProgress()
    assert progress.fraction == 0.0 and progress.label == "starting…"
    progress.update(Progress("start", n_files=2))
    progress.update(Progress("file", path="/d/a.pdf"))
    progress.update(Progress("chunks", path="/d/a.pdf", n_chunks=16))
    progress.update(Progress("chunks", path="/d/a.pdf", n_chunks=4))
    assert progress.label == "a.pdf: 20 chunks embedded"
    progress.update(Progress("done", path="/d/a.pdf", result=FileResult("a.pdf", "ingested", 20)))
    assert progress.fraction == 0.5 and progress.results[0].chunks == 20


def test_single_page_pdf(tmp_path: Path) -> None:
    source = tmp_path / "three.pdf"
    source.write_bytes(pdf_bytes(["first page", "second page", "third page"]))
    reader = PdfReader(io.BytesIO(single_page_pdf(source, 3)))
    assert len(reader.pages) == 1 and "third page" in reader.pages[0].extract_text()
    assert page_file_name("user-guide.pdf", 3) == "user-guide-page-3.pdf"


# ------------------------------------------------------------------------------------------------ library and machine
def _record(doc_id: str, source: str, n_pages: int = 0) -> DocRecord:
    return DocRecord(doc_id, source, Path(source).name, "h" + doc_id, 5, n_pages, 1_700_000_000.0)


def test_document_rows_and_labels() -> None:
    records = {"1": _record("1", "/a/b.md"), "2": _record("2", "/a/A.pdf", 4), "3": _record("3", "/c/b.md")}
    rows = document_rows(records)
    assert [r["document"] for r in rows] == ["A.pdf", "b.md", "b.md"]
    assert rows[0]["pages"] == 4 and rows[1]["pages"] is None and rows[0]["chunks"] == 5
    assert document_label(records["2"], records) == "A.pdf"
    assert document_label(records["1"], records) == "b.md (/a/b.md)"


def test_is_inside(tmp_path: Path) -> None:
    assert is_inside(tmp_path / "uploads" / "a.pdf", tmp_path / "uploads")
    assert not is_inside(tmp_path / "a.pdf", tmp_path / "uploads")
    assert not is_inside(tmp_path / "uploads" / ".." / "a.pdf", tmp_path / "uploads")


def test_machine_lines_are_honest_about_the_gpu() -> None:
    cpu = {"backend": "llama.cpp (in process)", "model": "m.gguf", "n_ctx": 2048, "gpu_backend": False, "gpu_layers": 0}
    lines = machine_lines(cpu, "all-MiniLM-L6-v2", 12)
    assert any("CPU only" in line for line in lines) and any("all-MiniLM-L6-v2" in line for line in lines)
    assert any("2048" in line for line in lines) and any("12" in line for line in lines)
    assert any("unused" in line for line in machine_lines(cpu | {"gpu_backend": True}, "e"))
    assert any("all layers" in line for line in machine_lines(cpu | {"gpu_backend": True, "gpu_layers": -1}, "e"))
    remote = machine_lines({"backend": "OpenAI-compatible server at http://x", "model": "local", "n_ctx": 8192}, "e")
    assert not any("GPU" in line for line in remote)


# ------------------------------------------------------------------------------------------------ conversation
@dataclass
class _Hit:
    file_name: str
    source: str
    page: int | None
    text: str
    score: float


@dataclass
class _Answer:
    text: str
    abstained: bool
    sources: list[_Hit]


def _history() -> list[dict]:
    text = "The badge is teal.\n<script>x</script> [l](javascript:y)"
    hit = _Hit("user-guide.pdf", "/d/user-guide.pdf", 3, text, 0.9)
    return [
        user_message("What colour is the badge?"),
        assistant_message(_Answer("It is **teal** [1].", False, [hit])),
        user_message("And the moon?"),
        assistant_message(_Answer("The documents do not contain an answer to this question.", True, [])),
    ]


def test_assistant_message_is_plain_data() -> None:
    message = _history()[1]
    assert message["sources"][0] == {
        "file_name": "user-guide.pdf",
        "source": "/d/user-guide.pdf",
        "page": 3,
        "text": "The badge is teal.\n<script>x</script> [l](javascript:y)",
        "score": 0.9,
    }
    assert model_history(_history()) == [{"role": m["role"], "content": m["content"]} for m in _history()]


def test_conversation_markdown() -> None:
    out = conversation_markdown(_history())
    assert out.startswith("# DocChat conversation\n")
    assert "## Question 1\n\nWhat colour is the badge?" in out and "## Question 2" in out
    assert "It is **teal** [1]." in out
    assert "[1] user\\-guide\\.pdf, page 3" in out
    assert "> The badge is teal\\." in out
    assert "relevant enough" in out
    rendered = render(out)
    assert "<script" not in rendered and 'href="javascript' not in rendered
    assert "<strong>teal</strong>" in rendered  # the answer's own Markdown is kept
    assert conversation_markdown([]) == "# DocChat conversation\n"


class _LockedModel:
    """Like LlamaCppChat: the lock is held while the generator is open."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def stream(self):
        with self.lock:
            yield from ["a", "b", "c"]


def test_closing_stream_releases_the_model_lock_when_abandoned() -> None:
    from rag.answer import AnswerStream

    model = _LockedModel()
    answer = AnswerStream("q", "q", [], False, model.stream())
    pieces = closing_stream(answer)
    assert next(pieces) == "a"
    assert model.lock.locked()
    pieces.close()
    assert not model.lock.locked()
    assert answer.text == "a"
