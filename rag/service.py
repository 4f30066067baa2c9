"""One object that wires settings to the store, models, retriever, answerer and ingestor.

The CLI builds one per process; the UI caches one per settings with ``st.cache_resource``. Models load on first
use, so listing documents or skipping unchanged files never pays for them.
"""

from __future__ import annotations

import functools

from rag.answer import Answerer
from rag.config import Settings
from rag.models import ChatModel, Embedder, load_chat_model, load_embedder
from rag.retrieve import Retriever
from rag.store import Store


class RagService:
    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        embedder: Embedder | None = None,
        chat_model: ChatModel | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or Store(settings)
        self._embedder = embedder
        self._chat_model = chat_model

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = load_embedder(self.settings)
        return self._embedder

    @property
    def chat_model(self) -> ChatModel:
        if self._chat_model is None:
            self._chat_model = load_chat_model(self.settings)
        return self._chat_model

    @functools.cached_property
    def retriever(self) -> Retriever:
        return Retriever(self.settings, self.store, self.embedder)

    @functools.cached_property
    def answerer(self) -> Answerer:
        return Answerer(self.settings, self.retriever, self.chat_model)

    @functools.cached_property
    def ingestor(self):
        from ingest.pipeline import Ingestor

        return Ingestor(self.settings, self.store, self._embedder)
