"""Terminal progress for ingestion: a files bar and a chunks counter with rate and ETA (tqdm)."""

from __future__ import annotations

import sys

from ingest.pipeline import Progress


class TerminalProgress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.files = None
        self.chunks = None

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in (self.chunks, self.files):
            if bar is not None:
                bar.close()

    def __call__(self, event: Progress) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if event.kind == "start":
            self.files = tqdm(total=event.n_files, desc="files", unit="file", file=sys.stderr, position=0)
            self.chunks = tqdm(desc="chunks", unit="chunk", file=sys.stderr, position=1)
        elif event.kind == "file" and self.files is not None:
            self.files.set_postfix_str(event.path.rsplit("/", 1)[-1][-40:], refresh=False)
        elif event.kind == "chunks" and self.chunks is not None:
            self.chunks.update(event.n_chunks)
        elif event.kind == "done" and self.files is not None:
            self.files.update(1)
            if event.result is not None and event.result.status == "failed":
                self.files.write(f"failed: {event.result.path}: {event.result.reason}", file=sys.stderr)
