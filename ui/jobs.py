"""Ingestion off the chat's thread: one background worker per process and store, with per-file state and cancel.

Streamlit runs each browser tab's script on its own thread; an upload ingested there freezes that tab's chat for as
long as the file takes (minutes for a scanned PDF). Here an upload, a library "Remove" or "Re-ingest" becomes a job
on a queue, and one thread per store runs the jobs in order, one file per pipeline run, so that:

- a cancel reaches exactly one file (the pipeline polls ``cancelled()`` between pages and embedding batches, and a
  cancelled document leaves nothing written);
- this process never contends with itself for the store's writer lock. When another process (a CLI ingest) holds it,
  the file shows "waiting for ..." and stays cancellable: the worker polls the lock instead of blocking on it;
- answers see each document as soon as it is committed (``retriever.refresh()`` after every change).

State is read by the UI through :meth:`IngestWorker.jobs` as copies taken under the worker's lock, so a rerun never
sees a half-updated file. Nothing here imports Streamlit: the module is tested on its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ingest.pipeline import FileResult, Progress
from rag.errors import Cancelled, RagError, WriterBusy
from rag.store import describe_holder, lock_path
from ui.library import is_inside

log = logging.getLogger(__name__)

Phase = Literal["queued", "waiting", "reading", "embedding", "done", "failed", "cancelled"]
JobKind = Literal["ingest", "reingest", "remove"]
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})
CHANGED = frozenset({"ingested", "replaced", "removed"})  # results after which search must look again

POLL_SECONDS = 0.5  # how often a file waiting for another writer checks the lock (and its cancel button)
KEEP_FINISHED = 50  # finished jobs kept for display, per worker; the oldest are forgotten first
MAX_QUEUED_FILES = 200  # files waiting in one worker: beyond that an upload is refused, not queued without bound


class QueueFull(RagError):
    """Too many files are already waiting for this store."""


@dataclass
class FileTask:
    """One file of a job, as the UI shows it."""

    path: str
    name: str
    phase: Phase = "queued"
    page: int = 0
    n_pages: int = 0
    ocr: bool = False
    chunks: int = 0
    waiting_for: str = ""
    result: FileResult | None = None
    cancel_requested: bool = False

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    @property
    def fraction(self) -> float | None:
        """Share of the pages read, for a progress bar; None while there is nothing to measure."""
        if self.phase == "reading" and self.n_pages:
            return min(1.0, self.page / self.n_pages)
        if self.phase == "embedding":
            return 1.0
        return None

    def status_line(self) -> str:
        """What the file is doing, in words (plain text: the UI escapes it)."""
        if self.phase == "queued":
            return f"{self.name}: queued"
        if self.phase == "waiting":
            return f"{self.name}: waiting for {self.waiting_for or 'another writer'} to finish writing"
        if self.phase == "reading":
            if not self.n_pages:
                return f"{self.name}: reading…"
            ocr = " (OCR)" if self.ocr else ""
            return f"{self.name}: reading page {self.page:,} of {self.n_pages:,}{ocr}"
        if self.phase == "embedding":
            return f"{self.name}: embedding, {self.chunks:,} chunks so far"
        reason = self.result.reason if self.result else ""
        return f"{self.name}: {self.phase}" + (f" ({reason})" if reason else "")


@dataclass
class Job:
    """Files submitted together by one session; ``service`` is the RagService whose store and models they use."""

    id: str
    kind: JobKind
    owner: str
    files: list[FileTask]
    service: Any = field(repr=False, compare=False)
    passwords: dict[str, str] | None = field(default=None, repr=False)  # dropped once the files were read
    cleanup_dir: Path | None = None  # "remove": the app's own upload copies in here go with their documents
    cancel_requested: bool = False
    created: float = field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def changed_store(self) -> bool:
        return any(t.result is not None and t.result.status in CHANGED for t in self.files)


def _copy(job: Job) -> Job:
    """A snapshot for the UI: its own FileTask objects, and never the password."""
    return dataclasses.replace(job, files=[dataclasses.replace(t) for t in job.files], passwords=None)


class IngestWorker:
    """A queue of jobs and the one thread that runs them; safe to call from any number of sessions."""

    def __init__(
        self,
        *,
        poll_seconds: float = POLL_SECONDS,
        keep_finished: int = KEEP_FINISHED,
        max_queued_files: int = MAX_QUEUED_FILES,
        on_event: Callable[[Job, FileTask, Progress], None] | None = None,
    ) -> None:
        self.poll_seconds = poll_seconds
        self.keep_finished = keep_finished
        self.max_queued_files = max_queued_files
        self.on_event = on_event  # called on the worker thread after each pipeline event (tests hook in here)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------------ what sessions call
    def submit(
        self,
        service: Any,
        paths: Iterable[str | Path],
        *,
        kind: JobKind = "ingest",
        owner: str = "",
        passwords: Mapping[str, str] | None = None,
        cleanup_dir: Path | None = None,
    ) -> str:
        """Queue files for ingestion ("reingest": read again even when unchanged) or removal; returns the job id."""
        files = [FileTask(str(p), Path(p).name) for p in paths]
        if not files:
            raise ValueError("a job needs at least one file")
        with self._lock:
            if self._closed:
                raise RuntimeError("the ingest worker is closed")
            waiting = sum(1 for j in self._jobs.values() for t in j.files if not t.finished)
            if waiting + len(files) > self.max_queued_files:
                raise QueueFull(
                    f"{waiting} files are already waiting to be ingested; add these when they are done "
                    f"(at most {self.max_queued_files} at a time)"
                )
            job = Job(f"job-{next(self._ids)}", kind, owner, files, service, dict(passwords or {}) or None,
                      cleanup_dir)  # fmt: skip
            self._jobs[job.id] = job
            self._start_locked()
            self._changed.notify_all()
        return job.id

    def cancel(self, job_id: str, path: str | None = None) -> None:
        """Cancel one file of a job (or the whole job). A queued file ends at once; a running one at the pipeline's
        next page or batch, with nothing of it written."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.finished:
                return
            if path is None:
                job.cancel_requested = True
            for task in job.files:
                if path is None or task.path == path:
                    task.cancel_requested = True
                    if task.phase == "queued":
                        self._finish_locked(task, FileResult(task.path, "cancelled", reason="cancelled"))
            self._changed.notify_all()

    def jobs(self, owner: str | None = None) -> list[Job]:
        """Snapshots of the jobs (of one owner), oldest first."""
        with self._lock:
            return [_copy(j) for j in self._jobs.values() if owner is None or j.owner == owner]

    def job(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return _copy(job) if job else None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every job has finished; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while any(not j.finished for j in self._jobs.values()):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Cancel everything and stop the thread (tests, and a process that shuts down cleanly)."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                job.cancel_requested = True
                for task in job.files:
                    task.cancel_requested = True
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # ------------------------------------------------------------------ the worker thread
    def _start_locked(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="docchat-ingest", daemon=True)
            self._thread.start()

    def _next_job(self) -> Job | None:
        with self._lock:
            while True:
                job = next((j for j in self._jobs.values() if not j.finished), None)
                if job is not None:
                    return job
                if self._closed:
                    return None
                self._changed.wait()

    def _loop(self) -> None:
        while (job := self._next_job()) is not None:
            try:
                self._run(job)
            except Exception:  # a bug must not kill the queue: the job ends failed, the next one runs
                log.exception("ingest job %s failed", job.id)
                with self._lock:
                    for task in job.files:
                        if not task.finished:
                            self._finish_locked(task, FileResult(task.path, "failed", reason="internal error"))
            finally:
                with self._lock:
                    job.passwords = None
                    job.finished_at = time.time()
                    self._forget_old_locked()
                    self._changed.notify_all()

    def _run(self, job: Job) -> None:
        for task in job.files:
            with self._lock:
                if task.finished:  # cancelled while queued
                    continue
                task.phase = "reading"  # started: from now on a cancel goes through the pipeline
                self._changed.notify_all()
            result = self._run_file(job, task)
            with self._lock:
                self._finish_locked(task, result)
            if result.status in CHANGED:
                if result.status == "removed" and job.cleanup_dir is not None and is_inside(task.path, job.cleanup_dir):
                    with contextlib.suppress(OSError):
                        os.unlink(task.path)  # the app's own copy; files ingested from elsewhere stay
                self._refresh(job)

    def _run_file(self, job: Job, task: FileTask) -> FileResult:
        """One pipeline run for one file, retried while another process holds the writer lock."""
        busy_since: float | None = None
        while True:
            if job.cancel_requested or task.cancel_requested:
                return FileResult(task.path, "cancelled", reason="cancelled")
            try:
                return self._attempt(job, task)
            except WriterBusy:
                now = time.monotonic()
                busy_since = busy_since or now
                if now - busy_since >= self.poll_seconds:  # a moment's overlap (a reader reopening) is not news
                    holder = describe_holder(lock_path(job.service.settings))
                    with self._lock:
                        task.phase, task.waiting_for = "waiting", holder
                        self._changed.notify_all()
                with self._lock:
                    self._changed.wait_for(lambda: job.cancel_requested or task.cancel_requested, self.poll_seconds)
            except Cancelled:
                return FileResult(task.path, "cancelled", reason="cancelled")
            except RagError as exc:
                return FileResult(task.path, "failed", reason=str(exc))

    def _attempt(self, job: Job, task: FileTask) -> FileResult:
        ingestor = job.service.ingestor
        if job.kind == "remove":
            results = ingestor.remove([task.path], wait=False)
            return results[0] if results else FileResult(task.path, "failed", reason="not in the store")
        if job.kind == "reingest" and not Path(task.path).is_file():
            return FileResult(task.path, "failed", reason=f"the file is gone from {task.path}; remove it instead")

        def cancelled() -> bool:
            return job.cancel_requested or task.cancel_requested

        report = ingestor.ingest_paths(
            [Path(task.path)],
            force=job.kind == "reingest",
            on_progress=lambda event: self._progress(job, task, event),
            cancelled=cancelled,
            passwords=job.passwords,
            wait=False,
        )
        if not report.results:
            return FileResult(task.path, "failed", reason="nothing to ingest")
        return report.results[-1]

    def _progress(self, job: Job, task: FileTask, event: Progress) -> None:
        with self._lock:
            if event.kind == "file":
                task.phase = "reading"
            elif event.kind == "page":
                task.phase, task.page, task.n_pages = "reading", event.page, event.n_pages
                task.ocr = task.ocr or event.ocr
            elif event.kind == "chunks":
                task.phase = "embedding"
                task.chunks += event.n_chunks
            elif event.kind == "wait":  # only with wait=True; this worker polls the lock itself
                holder = event.reason.removeprefix("waiting for ").removesuffix(" to finish writing")
                task.phase, task.waiting_for = "waiting", holder
            self._changed.notify_all()
        if self.on_event is not None:
            self.on_event(job, task, event)

    def _refresh(self, job: Job) -> None:
        """Make answers see the change now rather than at the retriever's next periodic check."""
        try:
            job.service.retriever.refresh()
        except RagError as exc:  # the commit stands; search catches up at its next check
            log.warning("search could not pick up the change yet: %s", exc)

    # ------------------------------------------------------------------ bookkeeping (lock held)
    def _finish_locked(self, task: FileTask, result: FileResult) -> None:
        task.result = result
        task.phase = {"cancelled": "cancelled", "failed": "failed"}.get(result.status, "done")  # type: ignore[assignment]
        self._changed.notify_all()

    def _forget_old_locked(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.finished]
        for job_id in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._jobs[job_id]


# ---------------------------------------------------------------------------------------------- one per store
_WORKERS: dict[str, IngestWorker] = {}
_WORKERS_LOCK = threading.Lock()


def store_key(settings: Any) -> str:
    """What identifies a store: the writer lock is per folder (embedded) or per server, not per collection."""
    if settings.chroma_host:
        return f"chroma://{settings.chroma_host}:{settings.chroma_port}"
    return str(Path(settings.store_dir).resolve())


def worker_for(settings: Any) -> IngestWorker:
    """The process's worker for this store, created on first use."""
    key = store_key(settings)
    with _WORKERS_LOCK:
        worker = _WORKERS.get(key)
        if worker is None:
            worker = _WORKERS[key] = IngestWorker()
        return worker


def all_workers() -> list[IngestWorker]:
    with _WORKERS_LOCK:
        return list(_WORKERS.values())


def wait_all_idle(timeout: float | None = None) -> bool:
    return all(worker.wait_idle(timeout) for worker in all_workers())


def close_all(timeout: float = 30.0) -> None:
    """Stop and forget every worker (between tests: each test has its own store)."""
    with _WORKERS_LOCK:
        workers = list(_WORKERS.values())
        _WORKERS.clear()
    for worker in workers:
        worker.close(timeout)
