"""The sidebar's model switch as plain data: which chat models can be chosen, and what to warn about.

The catalog (rag/model_catalog.py) finds GGUF files a person already has (Ollama, LM Studio, the Hugging Face
cache, ~/models, RAG_MODEL_DIRS); only chat models are offered. The packaged SmolLM2 is always first, and the model
the settings name stays selectable even when the catalog does not list it. Nothing is downloaded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.config import PACKAGED_LLM
from rag.model_catalog import GgufModel

PACKAGED_LABEL = "SmolLM2-135M-Instruct (packaged, default)"


@dataclass(frozen=True)
class ModelChoice:
    setting: str  # what RAG_LLM_MODEL would hold: PACKAGED_LLM, a .gguf path, or another value the settings name
    label: str
    model: GgufModel | None = None  # catalog facts, when known (for the memory check)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def model_choices(models: Sequence[GgufModel], configured: str, packaged_path: Path | None) -> list[ModelChoice]:
    """Packaged default first, then the configured model if it is something else, then every other chat model."""
    choices = [ModelChoice(PACKAGED_LLM, PACKAGED_LABEL, next((m for m in models if m.source == "packaged"), None))]
    chat = [m for m in models if m.is_chat and not (packaged_path and _same_file(m.path, packaged_path))]
    if configured != PACKAGED_LLM and not any(_same_file(m.path, Path(configured).expanduser()) for m in chat):
        choices.append(ModelChoice(configured, f"{configured} (RAG_LLM_MODEL)"))
    for model in chat:
        label = model.label() + (" (RAG_LLM_MODEL)" if _same_file(model.path, Path(configured).expanduser()) else "")
        choices.append(ModelChoice(str(model.path), label, model))
    return choices


def fit_warning(choice: ModelChoice, n_ctx: int, fits: Callable[[GgufModel, int], tuple[bool, str]]) -> str | None:
    """The catalog's one-line memory verdict when the model will not fit, else None."""
    if choice.model is None:
        return None
    ok, message = fits(choice.model, n_ctx)
    return None if ok else message


class ActiveModel:
    """The chat model this process answers with; every session reads it, any session may switch it.

    One choice per process rather than per tab: each llama.cpp model holds its weights in memory, so per-tab choices
    could load several at once on a laptop.
    """

    def __init__(self, configured: str) -> None:
        self._lock = threading.Lock()
        self._setting = configured
        self.configured = configured

    @property
    def setting(self) -> str:
        with self._lock:
            return self._setting

    def switch(self, setting: str) -> bool:
        """Choose a model; returns whether anything changed."""
        with self._lock:
            changed, self._setting = self._setting != setting, setting
            return changed
