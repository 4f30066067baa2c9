"""``python -m tests.crash_helper STEP ARGS...``: run ``python -m ingest ARGS...`` and SIGKILL this process at STEP.

Fault injection for the crash tests without hooks in the product: the step's function is wrapped here, in the
child process only, so the kill lands at an exact point of the write order (rag/store.py).

Steps: ``chunks-written`` (new chunks stored, ledger not switched), ``ledger-switched`` (ledger switched or record
deleted, old chunks not yet deleted), ``keyword-update`` (commit done, keyword index not yet updated).
"""

from __future__ import annotations

import os
import signal
import sys


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    step, args = sys.argv[1], sys.argv[2:]
    import ingest.pipeline as pipeline
    from rag.store import WriteSession

    if step == "chunks-written":
        original = WriteSession._put_chunks

        def put_then_die(self, docs):
            original(self, docs)
            die()

        WriteSession._put_chunks = put_then_die
    elif step == "ledger-switched":
        original_delete = WriteSession._delete_chunks

        def die_before_delete(self, ids):
            if ids:  # recovery at the start of the session deletes nothing in a consistent store
                die()
            original_delete(self, ids)

        WriteSession._delete_chunks = die_before_delete
    elif step == "keyword-update":
        pipeline.after_commit = lambda *_args, **_kw: die()
    else:
        raise SystemExit(f"unknown step {step!r}")
    from ingest.__main__ import main as ingest_main

    return ingest_main(args)


if __name__ == "__main__":
    sys.exit(main())
