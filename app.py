"""DocChat web UI: chat with your documents, add and manage them. Start it with ``make run`` (``python -m ui.serve``).

Thin on purpose: widgets, session state and calls into rag/, ingest/ and ui/; whatever is worth testing lives in ui/.
Models and the store load once per process (``st.cache_resource``) and are shared by every browser tab; each tab
keeps its own history in ``st.session_state``. Uploads, removals and re-ingests run on one background worker per
store (ui/jobs.py), so the chat stays usable while a file ingests; a fragment redraws only their progress.
"""

from __future__ import annotations

import functools
import uuid
from pathlib import Path
from typing import Any

import streamlit as st

from ingest.chunking import unwrap_lines
from rag.cli_common import quiet_libraries
from rag.config import load_settings
from rag.errors import RagError
from rag.model_catalog import GgufModel, find_gguf_models, fits_in_memory
from rag.models import packaged_llm_path
from rag.service import RagService
from rag.store import DocRecord
from ui import jobs
from ui.conversation import (
    ABSTAINED_NOTE,
    assistant_message,
    closing_stream,
    conversation_markdown,
    generated_label,
    model_history,
    quotes_for,
    user_message,
)
from ui.library import MAX_COLLECTIONS, document_label, document_rows, machine_lines, new_collection_error
from ui.models import ActiveModel, ModelChoice, fit_warning, model_choices
from ui.serve import upload_limit_warning
from ui.text import escape_markdown, highlight_supporting, highlighted_markdown, where
from ui.uploads import (
    UPLOAD_TYPES,
    page_file_name,
    result_message,
    save_upload,
    single_page_pdf,
    split_upload,
    upload_size_error,
)

quiet_libraries()

PROGRESS_EVERY_S = 1.0  # how often the upload panel redraws while this tab has files in progress
MAX_SERVICES = 8  # cached (collection, model) services per process


@st.cache_resource
def active_model() -> ActiveModel:
    """The chat model this process answers with (RAG_LLM_MODEL until someone switches it in the sidebar)."""
    return ActiveModel(load_settings().llm_model)


@st.cache_resource(max_entries=MAX_SERVICES, show_spinner="Opening the document store…")
def get_service(collection: str, llm_model: str) -> RagService:
    """One service (store client, models) per collection and chat model, shared by all sessions. A switched model
    shares the store of the collection's default service: one Chroma client per collection."""
    settings = load_settings(collection=collection)
    if llm_model == settings.llm_model:
        return RagService(settings)
    base = get_service(collection, settings.llm_model)
    return RagService(load_settings(collection=collection, llm_model=llm_model), store=base.store)


@st.cache_data(ttl=60, show_spinner=False)
def model_catalog(extra_dirs: tuple[str, ...]) -> tuple[list[GgufModel], list[str]]:
    """GGUF files on this machine (Ollama, LM Studio, HF cache, ~/models, RAG_MODEL_DIRS): read once a minute."""
    return find_gguf_models([Path(d) for d in extra_dirs])


def uploads_dir(service: RagService) -> Path:
    return service.settings.data_dir / "uploads"


def show(level: str, text: str) -> None:
    getattr(st, level)(text)


# ------------------------------------------------------------------------------------------------ uploads and jobs
def queue_uploads(service: RagService, worker: jobs.IngestWorker, files: list[Any], limit_mb: int) -> list[tuple]:
    """Save each accepted file under a name of its own and queue them as one job; returns messages for refusals."""
    files, too_many = split_upload(files)
    notices: list[tuple[str, str]] = [("warning", too_many)] if too_many else []
    paths: list[Path] = []
    for uploaded in files:
        error = upload_size_error(escape_markdown(uploaded.name), uploaded.size, limit_mb)  # before reading it
        if error:
            notices.append(("error", error))
            continue
        try:
            paths.append(save_upload(uploads_dir(service), uploaded.name, uploaded))
        except (OSError, ValueError) as exc:
            text = f"{uploaded.name}: cannot save to {uploads_dir(service)} (RAG_DATA_DIR): {exc}"
            notices.append(("error", escape_markdown(text)))
    if paths:
        try:
            submit(worker, service, paths)
        except RagError as exc:
            notices.append(("error", escape_markdown(str(exc))))
    return notices


def retry_with_password(worker: jobs.IngestWorker, service: RagService, job: jobs.Job, task: jobs.FileTask, key: str):
    """Form callback: read the password, queue the retry, and drop the password from the session at once."""
    state = st.session_state
    password = state.get(key) or ""
    if key in state:
        del state[key]
    if not password:
        return
    kind = "ingest" if job.kind == "remove" else job.kind
    worker.submit(service, [task.path], kind=kind, owner=state.session_id, passwords={task.path: password})
    state.retried.append(f"{job.id}:{task.path}")


def password_form(worker: jobs.IngestWorker, service: RagService, job: jobs.Job, task: jobs.FileTask, n: int) -> None:
    key = f"password-{job.id}-{n}"
    with st.form(f"password-form-{job.id}-{n}", clear_on_submit=True):
        st.text_input(f"Password for {escape_markdown(task.name)}", type="password", key=key)
        st.form_submit_button(
            "Open with this password", on_click=retry_with_password, args=(worker, service, job, task, key)
        )


def finished_jobs(service: RagService, worker: jobs.IngestWorker, finished: list[jobs.Job]) -> None:
    state = st.session_state
    for job in finished:
        for n, task in enumerate(job.files):
            if task.result is None:
                continue
            show(*result_message(task.result, name=task.name, forced=job.kind == "reingest"))
            if task.result.needs_password and f"{job.id}:{task.path}" not in state.retried:
                password_form(worker, service, job, task, n)
    if finished and st.button("Clear messages", key="clear-jobs"):
        state.dismissed += [job.id for job in finished]
        st.rerun()


def active_job(worker: jobs.IngestWorker, job: jobs.Job) -> None:
    running = [t for t in job.files if not t.finished]
    for n, task in enumerate(job.files):
        line = escape_markdown(task.status_line())
        if task.finished and task.result is not None:
            show(*result_message(task.result, name=task.name, forced=job.kind == "reingest"))
            continue
        fraction = task.fraction
        if fraction is None:
            st.caption(line)
        else:
            st.progress(fraction, text=line)
        if st.button("Cancel", key=f"cancel-{job.id}-{n}", help=f"Stop {task.name}: nothing of it is stored"):
            worker.cancel(job.id, task.path)  # shown at the panel's next redraw
    if len(running) > 1 and st.button("Cancel all", key=f"cancel-{job.id}"):
        worker.cancel(job.id)


def submit(worker: jobs.IngestWorker, service: RagService, paths: list, **options: Any) -> None:
    """Queue a job for this tab; the messages of its earlier, finished jobs make way for the new ones."""
    state = st.session_state
    state.dismissed += [j.id for j in worker.jobs(state.session_id) if j.finished]
    worker.submit(service, paths, owner=state.session_id, **options)


def jobs_panel(service: RagService, worker: jobs.IngestWorker) -> None:
    """Finished results (with password prompts) drawn by the page; files in progress by a fragment that redraws
    itself every second, and reruns the whole page once a job ends so the library and the chat see the change."""
    state = st.session_state
    known = {j.id for j in worker.jobs(state.session_id)}
    state.dismissed = [i for i in state.dismissed if i in known]  # the worker forgets old jobs; so do we
    mine = [j for j in worker.jobs(state.session_id) if j.id not in state.dismissed]
    state.acknowledged = [j.id for j in mine if j.finished]
    finished_jobs(service, worker, [j for j in mine if j.finished])
    in_progress = any(not j.finished for j in mine)

    @st.fragment(run_every=PROGRESS_EVERY_S if in_progress else None)
    def progress() -> None:
        drawn_by_page = state.pop("page_is_drawing", False)
        now = [j for j in worker.jobs(state.session_id) if j.id not in state.dismissed]
        if not drawn_by_page and any(j.finished and j.id not in state.acknowledged for j in now):
            st.rerun()  # whole page: results, library, the chat's empty state (never from inside a page run)
        for job in now:
            if not job.finished:
                active_job(worker, job)

    state.page_is_drawing = True  # the fragment runs inline now: a job that ends meanwhile waits for its next tick
    progress()


def upload_section(service: RagService, worker: jobs.IngestWorker) -> None:
    state = st.session_state
    limit = service.settings.max_upload_mb
    server_limit = st.get_option("server.maxUploadSize")
    files = st.file_uploader(
        "Add documents",
        type=UPLOAD_TYPES,
        accept_multiple_files=True,
        max_upload_size=min(limit, server_limit) if isinstance(server_limit, int) else limit,
        key=f"uploader-{state.uploader_round}",
        help=f"PDF, Markdown, text, HTML or Word files, up to {limit} MB each (RAG_MAX_UPLOAD_MB).",
    )
    if files:
        state.notices = queue_uploads(service, worker, files, limit)
        state.uploader_round += 1  # a fresh, empty uploader: the same files are not queued twice
        st.rerun()
    for level, text in state.notices:
        show(level, text)
    jobs_panel(service, worker)


# ------------------------------------------------------------------------------------------------ library
def library_section(service: RagService, worker: jobs.IngestWorker, records: dict[str, DocRecord]) -> None:
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
            source = records[chosen].source
            if left.button("Remove", width="stretch"):
                submit(worker, service, [source], kind="remove", cleanup_dir=uploads_dir(service))
                st.rerun()
            if right.button("Re-ingest", width="stretch", help="Read the file again, even if it has not changed"):
                submit(worker, service, [source], kind="reingest")
                st.rerun()
        collection_picker(service)


def collection_picker(service: RagService) -> None:
    state = st.session_state
    current = service.settings.collection
    names = sorted(set(service.store.list_collections()) | {current})
    if state.get("collection_picker") != current:
        state.collection_picker = current  # the widget follows the active collection
    st.selectbox(
        "Collection",
        names,
        key="collection_picker",
        accept_new_options=len(names) < MAX_COLLECTIONS,
        on_change=switch_collection,
        args=(names,),
        help="Pick a collection, or type a new name to create one (3-512 characters from a-z A-Z 0-9 . _ -)."
        if len(names) < MAX_COLLECTIONS
        else f"Pick a collection ({MAX_COLLECTIONS} exist: create more with `RAG_COLLECTION=NAME python -m ingest`).",
    )
    if error := state.pop("collection_error", None):
        st.error(escape_markdown(error))


def switch_collection(existing: list[str]) -> None:
    """Widget callback: runs before the rerun, so the whole next run already uses the chosen collection."""
    state = st.session_state
    picked = (state.collection_picker or "").strip()
    if not picked or picked == state.collection:
        return
    if error := new_collection_error(picked, existing):
        state.collection_error = error
        return
    try:
        load_settings(collection=picked)  # a bad name fails here with a message naming RAG_COLLECTION
    except RagError as exc:
        state.collection_error = str(exc)
        return
    state.collection = picked
    state.notices = []


# ------------------------------------------------------------------------------------------------ settings, machine
def answer_options(service: RagService) -> dict[str, Any]:
    settings = service.settings
    with st.expander("Answer settings"):
        quotes_only = st.toggle(
            "Quotes only (no model)",
            value=settings.resolved_answer_mode == "quotes",
            help="Show only the sentences quoted from the documents (RAG_ANSWER_MODE=quotes).",
        )
        top_k = st.slider("Sources per answer (top-k)", 1, max(20, settings.top_k), settings.top_k)
        temperature = st.slider("Temperature", 0.0, 2.0, float(settings.temperature), 0.05)
        max_tokens = st.number_input(
            "Max answer tokens", 1, max(settings.n_ctx // 2 - 1, settings.max_tokens), settings.max_tokens, step=16
        )
    return {
        "top_k": int(top_k),
        "temperature": float(temperature),
        "max_tokens": int(max_tokens),
        "mode": "quotes" if quotes_only else "generate",
    }


def packaged_model_path() -> Path | None:
    try:
        return packaged_llm_path()
    except RagError:
        return None


def model_picker(service: RagService, active: ActiveModel) -> None:
    """Switch the chat model of this process among the GGUF files found here; warn when one will not fit."""
    settings = service.settings
    if settings.llm_base_url:
        st.caption(escape_markdown(f"Generation runs on {settings.llm_base_url} (RAG_LLM_BASE_URL)."))
        return
    models, problems = model_catalog(tuple(str(d) for d in settings.model_dirs))
    choices = model_choices(models, active.configured, packaged_model_path())
    by_setting = {c.setting: c for c in choices}
    settings_list = list(by_setting)
    current = settings_list.index(active.setting) if active.setting in by_setting else 0
    picked: ModelChoice = by_setting[
        st.selectbox(
            "Chat model",
            settings_list,
            index=current,
            format_func=lambda setting: by_setting[setting].label,
            help="Chat models found on this machine (Ollama, LM Studio, the Hugging Face cache, ~/models, "
            "RAG_MODEL_DIRS). The choice applies to every tab of this app.",
        )
    ]
    if problems:
        st.caption(f"{len(problems)} model files could not be read (`python -m rag models` lists them).")
    if picked.setting == active.setting:
        return
    warning = fit_warning(picked, settings.n_ctx, fits_in_memory)
    if warning:
        st.warning(escape_markdown(warning))
        if not st.button("Switch anyway"):
            return
    active.switch(picked.setting)
    st.rerun()


def machine_section(service: RagService, active: ActiveModel) -> None:
    with st.expander("Machine"):
        model_picker(service, active)
        warning = upload_limit_warning(st.get_option("server.maxUploadSize"), service.settings.max_upload_mb)
        if warning:
            st.warning(warning)  # our own text, Markdown on purpose
        try:
            with st.spinner("Loading models…"):
                describe = service.chat_model.describe()
        except RagError as exc:  # a model that will not load must not take the page down: pick another one
            st.error(escape_markdown(str(exc)))
            describe = {"model": active.setting, "backend": "not loaded"}
        lines = machine_lines(describe, service.embedder.name, service.store.count_chunks(), service.store.by_language)
        st.caption("  \n".join(escape_markdown(line) for line in lines))


# ------------------------------------------------------------------------------------------------ chat
def render_quotes(quotes: list[dict[str, Any]]) -> None:
    """Quoted sentences first, verbatim, each with its file and page: what the answer rests on. A bordered box with
    body-coloured text (Streamlit greys block quotes out, and the quote is the part to trust)."""
    for quote in quotes:
        with st.container(border=True):
            st.markdown(escape_markdown(" ".join(quote["text"].split())))
            st.caption(escape_markdown(where(quote["file_name"], quote["page"])))


def render_sources(message: dict[str, Any], index: int, latest: bool) -> None:
    sources = message.get("sources") or []
    if message.get("kind") == "abstained" or (message.get("abstained") and not message.get("quotes")):
        st.caption(ABSTAINED_NOTE)
        if message.get("closest"):
            st.caption(escape_markdown(message["closest"]))
        return
    if not sources:
        return
    st.caption(
        "Sources: "
        + " · ".join(
            f"\\[{n}\\] {escape_markdown(where(s['file_name'], s['page']))}" for n, s in enumerate(sources, start=1)
        )
    )
    answer_text = message["content"] if message.get("generated") else ""
    for n, source in enumerate(sources, start=1):
        shown = escape_markdown(where(source["file_name"], source["page"]))
        label = f"\\[{n}\\] {shown} · relevance {source.get('relevance', 0.0):.2f}"
        with st.expander(label, expanded=latest and n == 1):
            parts = highlight_supporting(unwrap_lines(source["text"]), answer_text, quotes_for(message, source))
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


def render_answer_text(message: dict[str, Any]) -> None:
    kind = message.get("kind")
    if kind == "generated":
        st.caption(escape_markdown(generated_label(message)))
        # Model output is escaped too: it echoes document text, and a Markdown image in it would make the browser
        # fetch a URL, which is a way for data to leave the machine.
        st.markdown(escape_markdown(message["content"]))
    elif kind == "quotes" and not message.get("quotes"):
        st.markdown("No single sentence stood out: read the sources below.")
    elif kind != "quotes":
        st.markdown(escape_markdown(message["content"]))


def render_message(message: dict[str, Any], index: int, latest: bool) -> None:
    with st.chat_message(message["role"]):
        if message["role"] == "user":
            st.markdown(escape_markdown(message["content"]))
            return
        render_quotes(message.get("quotes") or [])
        render_answer_text(message)
        render_sources(message, index, latest)


def stream_answer(service: RagService, answer: Any) -> dict[str, Any]:
    """Quotes at once (they are known before any generation), then the model's text as it comes."""
    preview = assistant_message(answer)
    render_quotes(preview["quotes"])
    model = None
    if answer.generated:
        model = service.chat_model.name
        st.caption(escape_markdown(generated_label(assistant_message(answer, model))))
        pieces = closing_stream(answer)
        try:
            st.write_stream(escape_markdown(piece) for piece in pieces)
        finally:
            pieces.close()  # a rerun mid-answer must not leave the model locked
    else:
        for _ in answer:  # the abstention or "no room" text, or nothing in quote-only mode
            pass
        render_answer_text(assistant_message(answer))
    return assistant_message(answer, model)


def chat(service: RagService, options: dict[str, Any]) -> None:
    """History, then the question being answered. A question stays pending until its answer is complete: a rerun
    that cuts a run short (a click elsewhere, a job that ends) answers it again instead of losing it."""
    state = st.session_state
    messages: list[dict[str, Any]] = state.messages
    if typed := st.chat_input("Ask a question about your documents"):  # pinned to the bottom wherever it is called
        state.pending_question = typed
    question = state.pending_question
    for i, message in enumerate(messages):
        render_message(message, i, latest=not question and i == len(messages) - 1)
    if not question:
        return
    asked = user_message(question)
    render_message(asked, len(messages), latest=True)
    with st.chat_message("assistant"):
        try:
            answer = service.answerer.stream(question, model_history(messages), **options)
            message = stream_answer(service, answer)
        except RagError as exc:
            state.pending_question = None
            st.error(escape_markdown(str(exc)))
            return
        except Exception:  # a bug: not retried on every rerun (a rerun's own exception is no Exception)
            state.pending_question = None
            raise
        state.pending_question = None
        messages += [asked, message]
        render_sources(message, len(messages) - 1, latest=True)


# ------------------------------------------------------------------------------------------------ page
def init_state() -> None:
    state = st.session_state
    state.setdefault("messages", [])
    state.setdefault("notices", [])
    state.setdefault("uploader_round", 0)
    state.setdefault("session_id", uuid.uuid4().hex)  # owns this tab's jobs
    state.setdefault("acknowledged", [])  # finished jobs this tab has redrawn the page for
    state.setdefault("dismissed", [])  # finished jobs whose messages were cleared
    state.setdefault("retried", [])  # "job:path" of encrypted files whose password was asked for again
    state.setdefault("pending_question", None)  # asked, not yet answered


def main() -> None:
    st.set_page_config(page_title="DocChat", page_icon=":material/forum:")
    init_state()
    state = st.session_state
    try:
        if "collection" not in state:
            state.collection = load_settings().collection
        active = active_model()
        service = get_service(state.collection, active.setting)
        worker = jobs.worker_for(service.settings)
        records = service.retriever.documents
        with st.sidebar:
            st.header("DocChat")
            if service.notice:
                st.info(escape_markdown(service.notice))
            upload_section(service, worker)
            library_section(service, worker, records)
            options = answer_options(service)
            machine_section(service, active)
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
        st.error(escape_markdown(str(exc)))


main()
