"""One object that wires settings to the store, models, keyword index, retriever, answerer and ingestor.

The CLI builds one per process; the UI caches one per collection with ``st.cache_resource``. Models load on first
use, so listing documents or skipping unchanged files never pays for them.
"""

from __future__ import annotations

import functools

from rag.answer import Answerer
from rag.config import AUTO, Settings
from rag.embedders import MINILM_NAME, Embedder, choose_embedder_setting, load_embedder
from rag.keyword_index import KeywordIndex
from rag.keyword_sync import open_keyword_index
from rag.models import ChatModel, load_chat_model
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
        self.embedder_setting = choose_embedder_setting(settings, self.store.embed_model)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = load_embedder(self.settings, self.embedder_setting)
        return self._embedder

    @property
    def chat_model(self) -> ChatModel:
        if self._chat_model is None:
            self._chat_model = load_chat_model(self.settings)
        return self._chat_model

    @property
    def notice(self) -> str | None:
        """What the user should know about this collection before relying on it (shown by the CLI and the UI)."""
        if self.settings.embed_model == AUTO and self.store.embed_model == MINILM_NAME:
            return (
                f"collection {self.settings.collection!r} was built with {MINILM_NAME}, which is English-only; "
                "`python -m ingest --reembed` re-embeds it with multilingual-e5-small from the texts it stores"
            )
        return None

    @functools.cached_property
    def keyword_index(self) -> KeywordIndex:
        return open_keyword_index(self.settings)

    @functools.cached_property
    def retriever(self) -> Retriever:
        return Retriever(self.settings, self.store, self.embedder, self.keyword_index)

    @functools.cached_property
    def answerer(self) -> Answerer:
        # The model loads when an answer is first generated: quote-only answers never pay for it.
        return Answerer(self.settings, self.retriever, lambda: self.chat_model)

    @functools.cached_property
    def ingestor(self):
        from ingest.pipeline import Ingestor

        return Ingestor(self.settings, self.store, self._embedder, self.keyword_index)
