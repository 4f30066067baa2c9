"""What both command lines share: quiet third-party loggers, and one way to report a user error."""

from __future__ import annotations

import logging
import os
import sys

from rag.errors import ConfigError, RagError


def quiet_libraries() -> None:
    """Keep library chatter (tokenizer forks, HF progress bars, jieba) off a user's terminal and JSON output."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for name in ("chromadb", "jieba", "sentence_transformers", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)


def fail(exc: RagError) -> int:
    """Print ``Error: <one line>`` and return the exit code: 2 for configuration, 1 otherwise."""
    print(f"Error: {exc}", file=sys.stderr)
    return 2 if isinstance(exc, ConfigError) else 1
