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
    service = RagService(load_settings(n_ctx=1024))
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
