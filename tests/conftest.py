"""Shared fixtures: settings on a temporary store with the fast hashing embedder, and writers for small documents."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rag.config import Settings

ROOT = Path(__file__).resolve().parent.parent  # the repository root: `python -m ingest` runs from here
PYTHON = sys.executable


@pytest.fixture
def rag_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RAG_* variable of the developer's shell (a Chroma host, a real model) leaks into a test."""
    for name in list(os.environ):
        if name.startswith("RAG_"):
            monkeypatch.delenv(name)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def settings(rag_env: None, store_dir: Path) -> Settings:
    """A fresh embedded store, the hashing embedder (no torch) and small chunks, so a few sentences make several."""
    return Settings(_env_file=None, store_dir=store_dir, embed_model="fake", chunk_size=64, chunk_overlap=8)


WriteDoc = Callable[..., Path]


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    # resolve(): stored sources are canonical paths, so tests compare against the real folder.
    folder = (tmp_path / "docs").resolve()
    folder.mkdir()
    return folder


@pytest.fixture
def write_doc(docs_dir: Path) -> WriteDoc:
    """``write_doc("a.md", text)`` writes UTF-8 text under docs_dir (or under ``folder=``) and returns the path."""

    def write(name: str, text: str, folder: Path | None = None) -> Path:
        path = (folder or docs_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


def sentences(topic: str, n: int, extra: str = "") -> str:
    """``n`` distinct English sentences about ``topic``: enough text for several 64-token chunks when n >= 10.

    Every sentence names the topic word, so a keyword search for it finds exactly this document's chunks.
    """
    lines = [
        f"Sentence {i} explains how the {topic} handles case number {i} in the {topic} manual{extra}." for i in range(n)
    ]
    return " ".join(lines)


def cli_env(store_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a `python -m ingest` subprocess: the caller's minus RAG_*, a temporary store, the hashing
    embedder and the same small chunks as the ``settings`` fixture."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_STORE_DIR=str(store_dir), RAG_EMBED_MODEL="fake", RAG_CHUNK_SIZE="64", RAG_CHUNK_OVERLAP="8")
    env.update(extra)
    return env


def raw_chunks(store, where: dict | None = None, ids: list[str] | None = None) -> list[tuple[str, dict, str]]:
    """(id, metadata, text) of stored chunks, committed or not, straight from Chroma: for inspecting the store."""
    rows = []
    for member in store._all_members():  # the chunk collection and its language partitions
        got = member.get(where=where, ids=ids, include=["metadatas", "documents"])
        rows += zip(got["ids"], got["metadatas"], got["documents"], strict=True)
    return rows
