"""DocChat web UI: chat with your documents, add and manage them. Run with ``streamlit run app.py``.

Thin on purpose: widgets, session state and calls into rag/ and ingest/; whatever is worth testing lives in ui/.
Models load once per process (``st.cache_resource``) and are shared by every browser tab; each tab keeps its own
history in ``st.session_state``, and llama.cpp generation is serialised by the model's lock.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import streamlit as st

from rag.cli_common import quiet_libraries
from rag.config import load_settings
from rag.errors import RagError
from rag.service import RagService
from rag.store import DocRecord
from ui.conversation import assistant_message, closing_stream, conversation_markdown, model_history, user_message
from ui.library import document_label, document_rows, is_inside, machine_lines
from ui.text import escape_markdown, highlight_supporting, highlighted_markdown, unwrap_lines, where
from ui.uploads import (
    UPLOAD_TYPES,
    IngestProgress,
    page_file_name,
    result_message,
    save_upload,
    single_page_pdf,
    upload_size_error,
)

quiet_libraries()


@st.cache_resource(show_spinner="Opening the document store…")
def get_service(collection: str) -> RagService:
    """One service (store client, models) per collection and process, shared by all sessions."""
    return RagService(load_settings(collection=collection))


def uploads_dir(service: RagService) -> Path:
    return service.settings.data_dir / "uploads"


def after_change(service: RagService, notices: list[tuple[str, str]]) -> None:
    """Make search see the change, keep the messages for the next run, and redraw."""
    service.retriever.refresh()
    st.session_state.notices = notices
    st.rerun()


# ------------------------------------------------------------------------------------------------ sidebar
def ingest_upload(service: RagService, uploaded: Any) -> tuple[str, str]:
    error = upload_size_error(escape_markdown(uploaded.name), uploaded.size, service.settings.max_upload_mb)
    if error:
        return "error", error
    try:
        path = save_upload(uploads_dir(service), uploaded.name, uploaded.getvalue())
    except (OSError, ValueError) as exc:
        return "error", escape_markdown(f"{uploaded.name}: cannot save to {uploads_dir(service)} (RAG_DATA_DIR): {exc}")
    with st.status(f"Ingesting {escape_markdown(path.name)}", expanded=True) as status:
        progress = IngestProgress()
        bar = st.progress(0.0, text="reading…")

        def on_progress(event: Any) -> None:
            progress.update(event)
            bar.progress(progress.fraction, text=escape_markdown(progress.label))

        try:
            report = service.ingestor.ingest_paths([path], on_progress=on_progress)
            level, text = result_message(report.results[0], name=path.name)
        except RagError as exc:
            level, text = "error", escape_markdown(f"{path.name}: {exc}")
        status.update(label=text, state="error" if level == "error" else "complete", expanded=False)
    return level, text


def upload_section(service: RagService) -> None:
    limit = service.settings.max_upload_mb
    files = st.file_uploader(
        "Add documents",
        type=UPLOAD_TYPES,
        accept_multiple_files=True,
        max_upload_size=limit,
        key=f"uploader-{st.session_state.uploader_round}",
        help=f"PDF, Markdown, text, HTML or Word files, up to {limit} MB each (RAG_MAX_UPLOAD_MB).",
    )
    if files:
        notices = [ingest_upload(service, uploaded) for uploaded in files]
        st.session_state.uploader_round += 1  # a fresh, empty uploader: the same files are not ingested twice
        after_change(service, notices)
    for level, text in st.session_state.notices:
        getattr(st, level)(text)


def remove_document(service: RagService, record: DocRecord) -> tuple[str, str]:
    result = service.ingestor.remove(record.source)
    if result.status == "removed" and is_inside(record.source, uploads_dir(service)):
        Path(record.source).unlink(missing_ok=True)  # the app's own copy; files ingested from elsewhere stay
    return result_message(result, name=record.file_name)


def reingest_document(service: RagService, record: DocRecord) -> tuple[str, str]:
    source = Path(record.source)
    if not source.is_file():
        return "error", escape_markdown(f"{record.file_name}: the file is gone from {source}; remove it instead")
    service.store.delete_document(record.doc_id)
    report = service.ingestor.ingest_paths([source])
    return result_message(report.results[0], name=record.file_name)


def library_section(service: RagService, records: dict[str, DocRecord]) -> None:
    count = f"{len(records)} document" + ("" if len(records) == 1 else "s")
    with st.expander(f"Library: {count}", expanded=False):
        if records:
            st.dataframe(
                [{k: v for k, v in row.items() if k != "path"} for row in document_rows(records)],
                hide_index=True,
                width="stretch",
            )
            doc_ids = [r.doc_id for r in sorted(records.values(), key=lambda r: (r.file_name.lower(), r.source))]
            chosen = st.selectbox("Document", doc_ids, format_func=lambda i: document_label(records[i], records))
            left, right = st.columns(2)
            if left.button("Remove", width="stretch"):
                after_change(service, [remove_document(service, records[chosen])])
            if right.button("Re-ingest", width="stretch"):
                after_change(service, [reingest_document(service, records[chosen])])

        current = service.settings.collection
        names = sorted(set(service.store.list_collections()) | {current})
        if st.session_state.get("collection_picker") != current:
            st.session_state.collection_picker = current  # the widget follows the active collection
        st.selectbox(
            "Collection",
            names,
            key="collection_picker",
            accept_new_options=True,
            on_change=switch_collection,
            help="Pick a collection, or type a new name to create one (3-512 characters from a-z A-Z 0-9 . _ -).",
        )
        if error := st.session_state.pop("collection_error", None):
            st.error(error)


def switch_collection() -> None:
    """Widget callback: runs before the rerun, so the whole next run already uses the chosen collection."""
    state = st.session_state
    picked = (state.collection_picker or "").strip()
    if not picked or picked == state.collection:
        return
    try:
        load_settings(collection=picked)  # a bad name fails here with a message naming RAG_COLLECTION
    except RagError as exc:
        state.collection_error = str(exc)
        return
    state.collection = picked
    state.notices = []


def answer_options(service: RagService) -> dict[str, Any]:
    settings = service.settings
    with st.expander("Answer settings"):
        top_k = st.slider("Sources per answer (top-k)", 1, max(20, settings.top_k), settings.top_k)
        temperature = st.slider("Temperature", 0.0, 2.0, float(settings.temperature), 0.05)
        max_tokens = st.number_input(
            "Max answer tokens", 1, max(settings.n_ctx // 2, settings.max_tokens), settings.max_tokens, step=16
        )
    return {"top_k": int(top_k), "temperature": float(temperature), "max_tokens": int(max_tokens)}


def machine_section(service: RagService) -> None:
    with st.expander("Machine"), st.spinner("Loading models…"):
        lines = machine_lines(service.chat_model.describe(), service.embedder.name, service.store.count_chunks())
        st.caption("  \n".join(escape_markdown(line) for line in lines))


# ------------------------------------------------------------------------------------------------ chat
def render_sources(message: dict[str, Any], index: int, latest: bool) -> None:
    if message.get("abstained"):
        st.caption("No passage was relevant enough to answer from (RAG_MIN_RELEVANCE), so the model was not asked.")
        return
    sources = message.get("sources") or []
    if not sources:
        return
    st.caption(
        "Sources: "
        + " · ".join(
            f"\\[{n}\\] {escape_markdown(where(s['file_name'], s['page']))}" for n, s in enumerate(sources, start=1)
        )
    )
    for n, source in enumerate(sources, start=1):
        label = f"\\[{n}\\] {escape_markdown(where(source['file_name'], source['page']))} · score {source['score']:.2f}"
        with st.expander(label, expanded=latest and n == 1):
            parts = highlight_supporting(unwrap_lines(source["text"]), message["content"])
            st.markdown(highlighted_markdown(parts))
            page, path = source["page"], source["source"]
            if page and path.lower().endswith(".pdf") and Path(path).is_file():
                st.download_button(
                    f"Open page {page} (one-page PDF)",
                    data=functools.partial(single_page_pdf, path, page),
                    file_name=page_file_name(source["file_name"], page),
                    mime="application/pdf",
                    key=f"page-{index}-{n}",
                    on_click="ignore",
                )


def render_message(message: dict[str, Any], index: int, latest: bool) -> None:
    with st.chat_message(message["role"]):
        # Model output is escaped too: it echoes document text, and a Markdown image in it would make the browser
        # fetch a URL, which is a way for data to leave the machine.
        st.markdown(escape_markdown(message["content"]))
        if message["role"] == "assistant":
            render_sources(message, index, latest)


def chat(service: RagService, options: dict[str, Any]) -> None:
    messages: list[dict[str, Any]] = st.session_state.messages
    for i, message in enumerate(messages):
        render_message(message, i, latest=i == len(messages) - 1)
    question = st.chat_input("Ask a question about your documents")
    if not question:
        return
    history = model_history(messages)
    messages.append(user_message(question))
    render_message(messages[-1], len(messages) - 1, latest=True)
    with st.chat_message("assistant"):
        try:
            answer = service.answerer.stream(question, history, **options)
        except RagError as exc:
            messages.pop()
            st.error(str(exc))
            return
        pieces = closing_stream(answer)
        try:
            st.write_stream(escape_markdown(piece) for piece in pieces)
        finally:
            pieces.close()  # a rerun mid-answer must not leave the model locked
        messages.append(assistant_message(answer))
        render_sources(messages[-1], len(messages) - 1, latest=True)


# ------------------------------------------------------------------------------------------------ page
def main() -> None:
    st.set_page_config(page_title="DocChat", page_icon=":material/forum:")
    state = st.session_state
    state.setdefault("messages", [])
    state.setdefault("notices", [])
    state.setdefault("uploader_round", 0)
    try:
        if "collection" not in state:
            state.collection = load_settings().collection
        service = get_service(state.collection)
        records = service.store.documents()
        with st.sidebar:
            st.header("DocChat")
            upload_section(service)
            library_section(service, records)
            options = answer_options(service)
            machine_section(service)
            conversation_slot = st.container()  # filled after the chat, so it includes the answer just given

        st.title("Ask your documents")
        if not records:
            st.info(
                f"The collection **{escape_markdown(service.settings.collection)}** has no documents yet. "
                "Add PDF, Markdown, text, HTML or Word files with the uploader in the sidebar, "
                "or from a terminal: `python -m ingest PATH`."
            )
            st.stop()
        chat(service, options)
        if state.messages:
            with conversation_slot:
                st.download_button(
                    "Export conversation (Markdown)",
                    data=conversation_markdown(state.messages),
                    file_name="docchat-conversation.md",
                    mime="text/markdown",
                    on_click="ignore",
                )
                if st.button("New conversation"):
                    state.messages = []
                    st.rerun()
    except RagError as exc:
        st.error(str(exc))


main()
