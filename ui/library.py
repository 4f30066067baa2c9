"""What the sidebar shows about the library and the machine, as plain data the app only has to display."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rag.store import DocRecord

MAX_COLLECTIONS = 20  # collections the picker may create; each costs two Chroma collections and a cached service


def document_rows(records: Mapping[str, DocRecord]) -> list[dict[str, Any]]:
    """One row per document, by file name: pages ('' for formats without pages), chunks, when it was ingested."""
    rows = []
    for record in sorted(records.values(), key=lambda r: (r.file_name.lower(), r.source)):
        rows.append(
            {
                "document": record.file_name,
                "pages": record.n_pages or None,
                "chunks": record.n_chunks,
                "ingested": time.strftime("%Y-%m-%d %H:%M", time.localtime(record.ingested_at)),
                "path": record.source,
            }
        )
    return rows


def document_label(record: DocRecord, records: Mapping[str, DocRecord]) -> str:
    """The file name, or the path too when two documents share a file name."""
    twins = sum(1 for r in records.values() if r.file_name == record.file_name)
    return record.file_name if twins == 1 else f"{record.file_name} ({record.source})"


def new_collection_error(picked: str, existing: list[str]) -> str | None:
    """Why the picker may not create ``picked`` (too many collections already), else None; existing ones are fine."""
    if picked in existing or len(existing) < MAX_COLLECTIONS:
        return None
    return (
        f"there are already {len(existing)} collections, the most the app creates: create more from a terminal "
        f"(RAG_COLLECTION={picked} python -m ingest PATH), or pick an existing one"
    )


def is_inside(path: str | Path, folder: Path) -> bool:
    """Whether ``path`` lies in ``folder``: only the app's own upload copies are deleted with their document."""
    try:
        Path(path).resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def machine_lines(
    describe: Mapping[str, Any], embedder_name: str, n_chunks: int | None = None, by_language: bool = True
) -> list[str]:
    """The honest state of the machine: which models run where, and whether a GPU does any of the work."""
    lines = [f"Chat model: {describe.get('model', '?')} via {describe.get('backend', '?')}"]
    if describe.get("n_ctx"):
        lines.append(f"Context window: {describe['n_ctx']} tokens")
    if describe.get("n_threads"):
        lines.append(f"CPU threads: {describe['n_threads']}")
    if "gpu_backend" in describe:
        if not describe["gpu_backend"]:
            lines.append("GPU: none (this llama.cpp build runs on the CPU only)")
        elif describe.get("gpu_layers"):
            layers = "all" if describe["gpu_layers"] == -1 else describe["gpu_layers"]
            lines.append(f"GPU: {layers} layers offloaded")
        else:
            lines.append("GPU: available but unused (set RAG_N_GPU_LAYERS to offload layers)")
    lines.append(f"Embedder: {embedder_name}")
    if n_chunks is not None:
        lines.append(f"Chunks in the collection: {n_chunks}")
    if n_chunks and not by_language:
        lines.append(
            "Layout: one Chroma collection, made before language partitions; `python -m ingest --reembed` moves it "
            "(vectors kept) for faster search in a collection of several languages"
        )
    return lines
