"""Several browser sessions share one RagService (st.cache_resource): concurrent questions must not mix."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rag.config import load_settings
from rag.service import RagService

DOCS = {
    "badge.txt": "The citation badge colour is teal. It sits under every answer.",
    "archive.txt": "The archive is kept in Lisbon, in a cellar near the river.",
    "uploads.txt": "Uploads are limited to fifty megabytes per file by default.",
    "theme.txt": "The dark theme is switched on from the settings page.",
}
QUESTIONS = {
    "badge.txt": "What colour is the citation badge?",
    "archive.txt": "Where is the archive kept?",
    "uploads.txt": "Uploads are limited to what size per file?",
    "theme.txt": "How is the dark theme switched on?",
}


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RagService:
    monkeypatch.chdir(tmp_path)
    for name in ("RAG_CHROMA_HOST", "RAG_LLM_BASE_URL", "RAG_COLLECTION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAG_EMBED_MODEL", "fake")
    monkeypatch.setenv("RAG_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    for name, text in DOCS.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return RagService(load_settings(llm_model="fake"))


def ask_all(service: RagService, questions: dict[str, str], **options) -> tuple[dict, dict]:
    """Ask every question from its own thread at once; returns answers and (first piece, last piece) times."""
    answers, spans, errors = {}, {}, []
    start = threading.Barrier(len(questions))

    def session(key: str, question: str) -> None:
        try:
            start.wait()
            answer = service.answerer.stream(question, [], **options)
            first = None
            for _ in answer:
                first = first or time.perf_counter()
            spans[key] = (first, time.perf_counter())
            answers[key] = answer
        except Exception as exc:  # reported below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=session, args=item) for item in questions.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    return answers, spans


def test_concurrent_sessions_get_their_own_answers(service: RagService, tmp_path: Path) -> None:
    service.ingestor.ingest_paths(sorted(tmp_path.glob("*.txt")))
    service.retriever.refresh()
    answers, _ = ask_all(service, QUESTIONS, top_k=1)
    assert set(answers) == set(QUESTIONS)
    for key, answer in answers.items():
        assert answer.question == QUESTIONS[key]
        assert [h.file_name for h in answer.sources] == [key]
        assert answer.text == "Based on the documents [1]."


@pytest.mark.slow
def test_concurrent_sessions_with_the_real_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The packaged SmolLM2 through llama.cpp: its lock serialises the two generations instead of corrupting one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAG_EMBED_MODEL", "fake")
    monkeypatch.setenv("RAG_STORE_DIR", str(tmp_path / "store"))
    for name in ("RAG_CHROMA_HOST", "RAG_LLM_BASE_URL", "RAG_LLM_MODEL", "RAG_COLLECTION"):
        monkeypatch.delenv(name, raising=False)
    for name, text in DOCS.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    service = RagService(load_settings(n_ctx=1024, answer_mode="generate"))  # "auto" would quote only
    service.ingestor.ingest_paths(sorted(tmp_path.glob("*.txt")))
    assert service.chat_model.describe()["backend"].startswith("llama.cpp")

    questions = {k: QUESTIONS[k] for k in ("badge.txt", "archive.txt")}
    answers, spans = ask_all(service, questions, top_k=1, max_tokens=24, temperature=0.0)
    for key, answer in answers.items():
        assert [h.file_name for h in answer.sources] == [key]
        assert answer.text.strip()
        assert questions[key] in answer.messages[-1]["content"] and DOCS[key] in answer.messages[-1]["content"]
    (a_first, a_last), (b_first, b_last) = spans.values()
    assert a_last <= b_first or b_last <= a_first  # one generation at a time


# ------------------------------------------------------------------------------------------------ the ingest worker
# Uploads and library changes from every tab go through one background worker per store (ui/jobs.py). These tests
# drive it directly with a real store and the hashing embedder; `on_event` runs on the worker thread and lets a test
# act at an exact point of the pipeline, so nothing depends on timing.
import subprocess  # noqa: E402
import sys  # noqa: E402

from tests.conftest import raw_chunks  # noqa: E402
from tests.fixtures_docs import pdf_bytes  # noqa: E402
from ui.jobs import IngestWorker, QueueFull  # noqa: E402

LONG = " ".join(f"Line {i} of the tide table records the water level at the harbour mouth." for i in range(400))


@pytest.fixture
def worker():
    worker = IngestWorker(poll_seconds=0.05)
    yield worker
    worker.close()


def store_state(service: RagService) -> tuple[list[str], dict, dict]:
    """Everything a write could touch: raw chunk ids (committed or not), the ledger, the keyword index."""
    ids = sorted(cid for cid, _, _ in raw_chunks(service.store))
    return ids, service.store.documents(), service.keyword_index.documents()


def files(job) -> list[tuple[str, str]]:
    return [(t.name, t.result.status if t.result else t.phase) for t in job.files]


def test_worker_ingests_in_the_background_and_answers_see_it_at_once(
    service: RagService, tmp_path: Path, worker: IngestWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rag.retrieve.LEDGER_TTL_S", 1e9)  # only an explicit refresh shows new documents
    (tmp_path / "first.txt").write_text(DOCS["archive.txt"])
    service.ingestor.ingest_paths([tmp_path / "first.txt"])
    assert [h.file_name for h in service.retriever.search(QUESTIONS["badge.txt"], 1)] == ["first.txt"]
    job_id = worker.submit(service, [tmp_path / "badge.txt", tmp_path / "theme.txt"], owner="tab-1")
    assert worker.wait_idle(60)
    job = worker.job(job_id)
    assert files(job) == [("badge.txt", "ingested"), ("theme.txt", "ingested")] and job.changed_store
    assert [h.file_name for h in service.retriever.search(QUESTIONS["badge.txt"], 1)] == ["badge.txt"]
    assert [j.id for j in worker.jobs("tab-1")] == [job_id] and worker.jobs("tab-2") == []


def test_cancel_mid_document_leaves_the_store_as_it_was(
    service: RagService, tmp_path: Path, worker: IngestWorker
) -> None:
    service.ingestor.ingest_paths([tmp_path / "badge.txt"])
    before = store_state(service)
    pdf = tmp_path / "tides.pdf"
    pdf.write_bytes(pdf_bytes([f"Page {i}: the keeper logs the tide at dawn." for i in range(1, 6)]))
    seen: list[int] = []

    def cancel_at_page_two(job, task, event) -> None:
        if event.kind == "page":
            seen.append(event.page)
            if event.page == 2:
                worker.cancel(job.id, task.path)

    worker.on_event = cancel_at_page_two
    job_id = worker.submit(service, [pdf])
    assert worker.wait_idle(60)
    assert files(worker.job(job_id)) == [("tides.pdf", "cancelled")]
    assert seen == [1, 2]  # stopped before page 3
    assert store_state(service) == before


def test_cancel_while_embedding_writes_nothing(service: RagService, tmp_path: Path, worker: IngestWorker) -> None:
    service = RagService(load_settings(llm_model="fake", embed_batch_size=8))  # many batches, each a cancel point
    service.ingestor.ingest_paths([tmp_path / "badge.txt"])
    before = store_state(service)
    long = tmp_path / "long.txt"
    long.write_text(LONG)
    batches: list[int] = []

    def cancel_after_first_batch(job, task, event) -> None:
        if event.kind == "chunks":
            batches.append(event.n_chunks)
            worker.cancel(job.id)

    worker.on_event = cancel_after_first_batch
    job_id = worker.submit(service, [long])
    assert worker.wait_idle(60)
    assert files(worker.job(job_id)) == [("long.txt", "cancelled")]
    assert store_state(service) == before
    assert batches == [8]
    assert service.ingestor.ingest_paths([long]).results[0].chunks > 8  # there was more to embed: it stopped midway


def test_a_queued_file_cancelled_never_starts(service: RagService, tmp_path: Path, worker: IngestWorker) -> None:
    release = threading.Event()
    started: list[str] = []

    def hold_first(job, task, event) -> None:
        started.append(task.name)
        if task.name == "badge.txt":
            assert release.wait(30)

    worker.on_event = hold_first
    job_id = worker.submit(service, [tmp_path / "badge.txt", tmp_path / "theme.txt"])
    while not started:
        time.sleep(0.01)
    worker.cancel(job_id, str(tmp_path / "theme.txt"))
    assert files(worker.job(job_id)) == [("badge.txt", "reading"), ("theme.txt", "cancelled")]  # at once
    release.set()
    assert worker.wait_idle(60)
    assert files(worker.job(job_id)) == [("badge.txt", "ingested"), ("theme.txt", "cancelled")]
    assert "theme.txt" not in started
    assert sorted(r.file_name for r in service.store.documents().values()) == ["badge.txt"]


def test_questions_are_answered_while_a_file_ingests(service: RagService, tmp_path: Path, worker: IngestWorker) -> None:
    """The worker sits inside the pipeline (writer lock held) while four sessions ask: none of them waits for it."""
    service.ingestor.ingest_paths([tmp_path / name for name in DOCS])
    inside, release = threading.Event(), threading.Event()

    def hold(job, task, event) -> None:
        if event.kind == "page":
            inside.set()
            assert release.wait(60)

    worker.on_event = hold
    pdf = tmp_path / "more.pdf"
    pdf.write_bytes(pdf_bytes(["A page about lighthouses."]))
    worker.submit(service, [pdf])
    assert inside.wait(30)
    try:
        answers, _ = ask_all(service, QUESTIONS, top_k=1)
    finally:
        release.set()
    assert {key: [h.file_name for h in a.sources] for key, a in answers.items()} == {k: [k] for k in QUESTIONS}
    assert worker.wait_idle(60)


HOLD_LOCK = """
import sys
from rag.config import load_settings
from rag.store import writer_lock
with writer_lock(load_settings(store_dir=sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_file_waits_for_another_process_and_stays_cancellable(
    service: RagService, tmp_path: Path, worker: IngestWorker
) -> None:
    """A CLI ingest holds the store's writer lock: the upload says who it waits for, a cancel works while it waits,
    and the next file goes in as soon as the other process is done."""
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(service.settings.store_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    try:
        assert other.stdout.readline().strip() == "held"
        first = worker.submit(service, [tmp_path / "badge.txt"])
        task = _wait_for(lambda: next(t for t in worker.job(first).files if t.phase == "waiting"))
        assert f"pid {other.pid}" in task.waiting_for and task.status_line().endswith("to finish writing")
        worker.cancel(first)
        _wait_for(lambda: worker.job(first).finished)
        assert files(worker.job(first)) == [("badge.txt", "cancelled")]
        second = worker.submit(service, [tmp_path / "theme.txt"])
        _wait_for(lambda: worker.job(second).files[0].phase == "waiting")
    finally:
        other.communicate("", timeout=30)
    assert worker.wait_idle(60)
    assert files(worker.job(second)) == [("theme.txt", "ingested")]


def _wait_for(probe, timeout: float = 30.0):
    """Poll ``probe`` until it returns something truthy without raising (state changes on the worker thread)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
            if value:
                return value
        except (StopIteration, AttributeError, IndexError):
            pass
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_reingest_rereads_without_deleting_first_and_remove_deletes_only_the_apps_copy(
    service: RagService, tmp_path: Path, worker: IngestWorker
) -> None:
    uploads = tmp_path / "data" / "uploads"
    uploads.mkdir(parents=True)
    mine = uploads / "mine.txt"
    mine.write_text(DOCS["theme.txt"])
    outside = tmp_path / "badge.txt"
    service.ingestor.ingest_paths([mine, outside])
    seen_during: list[list[str]] = []

    def look(job, task, event) -> None:  # mid re-ingest, the old revision is still what search sees
        if event.kind == "chunks":
            seen_during.append(sorted(r.file_name for r in service.store.documents().values()))

    worker.on_event = look
    reingest = worker.submit(service, [outside], kind="reingest")
    assert worker.wait_idle(60)
    assert files(worker.job(reingest)) == [("badge.txt", "replaced")]
    assert seen_during and seen_during[0] == ["badge.txt", "mine.txt"]

    remove = worker.submit(service, [mine, outside], kind="remove", cleanup_dir=uploads)
    assert worker.wait_idle(60)
    assert files(worker.job(remove)) == [("mine.txt", "removed"), ("badge.txt", "removed")]
    assert not mine.exists() and outside.exists()
    assert service.store.documents() == {}


def test_passwords_are_used_once_and_never_kept(service: RagService, tmp_path: Path, worker: IngestWorker) -> None:
    from tests.fixtures_docs import encrypt_pdf

    secret = "tide-S3cret"
    locked = tmp_path / "locked.pdf"
    locked.write_bytes(encrypt_pdf(pdf_bytes(["The vault code is in the red binder."]), secret, "owner"))
    first = worker.submit(service, [locked])
    assert worker.wait_idle(60)
    result = worker.job(first).files[0].result
    assert result.status == "failed" and result.needs_password
    second = worker.submit(service, [locked], passwords={str(locked): secret})
    assert secret not in repr(worker.jobs())  # snapshots never carry it
    assert worker.wait_idle(60)
    assert files(worker.job(second)) == [("locked.pdf", "ingested")]
    assert all(job.passwords is None for job in worker._jobs.values())  # dropped once the file was read


def test_a_bug_fails_one_job_and_the_next_one_still_runs(
    service: RagService, tmp_path: Path, worker: IngestWorker
) -> None:
    class Broken:
        settings = service.settings

        @property
        def ingestor(self):
            raise ZeroDivisionError("a programming error")

    broken = worker.submit(Broken(), [tmp_path / "badge.txt"])
    fine = worker.submit(service, [tmp_path / "theme.txt"])
    assert worker.wait_idle(60)
    assert files(worker.job(broken)) == [("badge.txt", "failed")]
    assert files(worker.job(fine)) == [("theme.txt", "ingested")]


def test_the_queue_is_bounded(service: RagService, tmp_path: Path) -> None:
    worker = IngestWorker(max_queued_files=2)
    release = threading.Event()
    worker.on_event = lambda job, task, event: release.wait(30)
    try:
        worker.submit(service, [tmp_path / "badge.txt", tmp_path / "theme.txt"])
        with pytest.raises(QueueFull, match="2 files are already waiting"):
            worker.submit(service, [tmp_path / "archive.txt"])
    finally:
        release.set()
        worker.close()


def test_one_worker_per_store(service: RagService, tmp_path: Path) -> None:
    from ui import jobs

    try:
        same = jobs.worker_for(load_settings(collection="other-collection"))
        assert jobs.worker_for(service.settings) is same  # one writer lock per store folder, not per collection
        assert jobs.worker_for(load_settings(store_dir=tmp_path / "elsewhere")) is not same
    finally:
        jobs.close_all()
