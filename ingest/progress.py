"""Terminal progress for the command line (tqdm): files, chunks, pages of long or scanned PDFs, and waits."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from ingest.pipeline import Progress

LONG_DOCUMENT = 20  # pages: longer documents (and any OCR) get a bar of their own


class TerminalProgress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.files = None
        self.chunks = None
        self.pages = None
        self.rebuild = None

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in (self.pages, self.chunks, self.files, self.rebuild):
            if bar is not None:
                bar.close()

    def __call__(self, event: Progress) -> None:
        if event.kind == "wait":  # said even without a terminal: a silent wait looks like a hang
            print(f"{event.reason}…", file=sys.stderr, flush=True)
            return
        if not self.enabled:
            return
        from tqdm import tqdm

        if event.kind == "start":
            self.files = tqdm(total=event.n_files, desc="files", unit="file", file=sys.stderr, position=0)
            self.chunks = tqdm(desc="chunks", unit="chunk", file=sys.stderr, position=1)
        elif event.kind == "file" and self.files is not None:
            self.files.set_postfix_str(event.path.rsplit("/", 1)[-1][-40:], refresh=False)
            self._close_pages()
        elif event.kind == "page":
            if self.pages is None and (event.ocr or event.n_pages >= LONG_DOCUMENT):
                name = event.path.rsplit("/", 1)[-1][-30:]
                self.pages = tqdm(total=event.n_pages or None, desc=f"pages of {name}", unit="page", file=sys.stderr,
                                  position=2, leave=False)  # fmt: skip
            if self.pages is not None:
                self.pages.update(event.page - self.pages.n)
                if event.ocr:
                    self.pages.set_postfix_str("OCR", refresh=False)
        elif event.kind == "chunks" and self.chunks is not None:
            self.chunks.update(event.n_chunks)
        elif event.kind == "done" and self.files is not None:
            self.files.update(1)
            if event.result is not None and event.result.status == "failed":
                self.files.write(f"failed: {event.result.path}: {event.result.reason}", file=sys.stderr)

    def _close_pages(self) -> None:
        if self.pages is not None:
            self.pages.close()
            self.pages = None

    def index_rebuild(self, done: int, total: int) -> None:
        """Progress of a keyword-index rebuild (after a tokenizer change), in documents."""
        if not self.enabled or total == 0:
            return
        from tqdm import tqdm

        if self.rebuild is None:
            self.rebuild = tqdm(total=total, desc="keyword index", unit="doc", file=sys.stderr, position=3)
        self.rebuild.update(done - self.rebuild.n)


@contextlib.contextmanager
def count_bar(label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A bar driven by (done, total) calls."""
    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if not enabled:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, desc=label, unit="chunk", file=sys.stderr)
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


@contextlib.contextmanager
def stage_bar(enabled: bool = True) -> Iterator[Callable[[str, int, int], None]]:
    """One bar per stage of a multi-stage job, driven by (stage, done, total) calls."""
    bars: dict[str, object] = {}

    def update(stage: str, done: int, total: int) -> None:
        if not enabled:
            return
        from tqdm import tqdm

        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, file=sys.stderr, leave=False)
        bar.update(done - bar.n)  # type: ignore[attr-defined]

    try:
        yield update
    finally:
        for bar in bars.values():
            bar.close()  # type: ignore[attr-defined]
