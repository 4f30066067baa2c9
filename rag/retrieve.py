"""Hybrid retrieval: dense search in Chroma + BM25 over CJK-aware tokens, fused by weighted reciprocal rank.

The weights depend on languages. BM25 is strong within one language and nearly blind across two (only names and
numbers match), so a keyword hit in a chunk whose language differs from the question's counts for less
(RAG_KEYWORD_WEIGHT_CROSS); the multilingual embedder carries cross-language search. An English-only embedder's
ranking is noise for a question in another script, so it gets no weight there. `python -m rag eval` measures the
effect on a user's own documents.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.config import Settings
from rag.embedders import Embedder
from rag.errors import EmptyIndex, RagError
from rag.keyword_index import KeywordIndex
from rag.keyword_sync import sync_keyword_index
from rag.language import detect_language
from rag.store import Chunk, DocRecord, Store
from rag.tokenize import keyword_tokens

RRF_K = 60
CANDIDATES_PER_RESULT = 4
LEDGER_TTL_S = 2.0
# Keyword weight for a chunk in another language than the question, chosen on the tune half of the dev questions
# (bench/tune_retrieval.py) and reported on the other half.
KEYWORD_WEIGHT_CROSS = 0.3
# Cosine similarities of an embedder mapped to a 0..1 relevance: (similarity that means "unrelated", "clearly on
# topic"). e5's similarities crowd into 0.7-0.9, so its raw cosine says little until rescaled; MiniLM spreads 0..1.
# Chosen with bench/calibrate_grounding.py on the tune half.
DENSE_RELEVANCE_RANGE = {"multilingual-e5-small": (0.80, 0.90)}


def empty_index(collection: str) -> EmptyIndex:
    return EmptyIndex(
        f"the collection {collection!r} has no documents yet; add some with `python -m ingest PATH` or the app's upload"
    )


@dataclass
class Hit:
    chunk_id: str
    text: str
    source: str
    file_name: str
    page: int | None
    score: float  # fused score scaled to 0..1 (1 = first in every ranking)
    dense_similarity: float | None  # cosine similarity, when the dense side found it
    keyword_score: float | None  # BM25 score (with neighbour smoothing), when the keyword side found it
    relevance: float  # 0..1, what grounding compares with RAG_MIN_RELEVANCE
    lang: str = "en"
    doc_id: str = ""
    chunk_index: int = 0
    ocr: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "source": self.source,
            "file_name": self.file_name,
            "page": self.page,
            "score": round(self.score, 4),
            "relevance": round(self.relevance, 4),
        }


def fuse_rankings(rankings: Iterable[tuple[list[str], float | dict[str, float]]], k: int = RRF_K) -> dict[str, float]:
    """Weighted reciprocal rank fusion; each ranking is (ids best first, weight), the weight either one number or a
    weight per id."""
    fused: dict[str, float] = {}
    for ids, weight in rankings:
        for rank, item in enumerate(ids):
            w = weight.get(item, 0.0) if isinstance(weight, dict) else weight
            if w > 0:
                fused[item] = fused.get(item, 0.0) + w / (k + rank + 1)
    return fused


def term_coverage(query_tokens: list[str], passage_tokens: Iterable[str]) -> float:
    """Share of the query's distinct content tokens found in the passage: a relevance signal for any language."""
    wanted = set(query_tokens)
    if not wanted:
        return 0.0
    return len(wanted & set(passage_tokens)) / len(wanted)


class Retriever:
    def __init__(self, settings: Settings, store: Store, embedder: Embedder, keyword_index: KeywordIndex) -> None:
        store.require_embedder(embedder.name)  # querying with another model's vectors would return noise
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.keyword_index = keyword_index
        self._lock = threading.Lock()
        self._records: dict[str, DocRecord] = {}
        self._version: str | None = None
        self._checked_at = 0.0
        self._reranker = None
        self._reranker_lock = threading.Lock()

    # ------------------------------------------------------------------ freshness
    def refresh(self, force: bool = False) -> None:
        """Pick up what another process (or this one) committed: one ledger record read when nothing changed."""
        with self._lock:
            version = self.store.version()
            if force or version != self._version:
                records = self.store.documents()
                self.store.note_version(version)
                sync_keyword_index(self.store, self.keyword_index, records)
                self._records, self._version = records, version
            self.store.try_refresh()
            self._checked_at = time.monotonic()

    def _ensure_fresh(self) -> None:
        if self._version is None or time.monotonic() - self._checked_at > LEDGER_TTL_S:
            self.refresh()

    @property
    def documents(self) -> dict[str, DocRecord]:
        self._ensure_fresh()
        return self._records

    # ------------------------------------------------------------------ weights
    def dense_weight(self, language: str) -> float:
        if self.embedder.multilingual or language == "en":
            return self.settings.dense_weight
        return 0.0  # an English-only embedder's ranking of a Chinese question is noise (measured: hit@3 1.00 -> 0.80)

    def keyword_weight(self, question_language: str, chunk_language: str) -> float:
        if question_language == chunk_language:
            return self.settings.keyword_weight
        cross = self.settings.keyword_weight_cross
        return KEYWORD_WEIGHT_CROSS if cross is None else cross

    def dense_relevance(self, similarity: float | None, language: str) -> float:
        if similarity is None or self.dense_weight(language) <= 0:
            return 0.0
        low, high = DENSE_RELEVANCE_RANGE.get(self.embedder.name, (0.0, 1.0))
        return float(min(1.0, max(0.0, (similarity - low) / (high - low))))

    # ------------------------------------------------------------------ search
    def search(self, query: str, top_k: int | None = None, judge: str | None = None) -> list[Hit]:
        """The best chunks for ``query``. Relevance (grounding) is judged on ``judge`` when given: the user's own
        question, when the query also carries an earlier question's words."""
        top_k = top_k or self.settings.top_k
        self._ensure_fresh()
        if not self._records:
            raise empty_index(self.settings.collection)
        visible = {doc_id: record.rev for doc_id, record in self._records.items()}
        n_candidates = max(top_k * CANDIDATES_PER_RESULT, 20)
        language = detect_language(query)

        dense_weight = self.dense_weight(language)
        query_vector = self.embedder.embed_query(query) if dense_weight > 0 else None
        dense = self.store.query(query_vector, n_candidates, visible) if query_vector is not None else []
        keyword = self.keyword_index.search(keyword_tokens(query), n_candidates)

        rows: dict[str, Chunk] = {c.chunk_id: c for c in dense}
        missing = [cid for cid, _ in keyword if cid not in rows]
        for cid, chunk in self.store.get_chunks(missing).items():
            if visible.get(chunk.doc_id) == chunk.rev:
                rows[cid] = chunk
        keyword = [(cid, score) for cid, score in keyword if cid in rows]

        keyword_weights = {cid: self.keyword_weight(language, _lang(rows[cid])) for cid, _ in keyword}
        fused = fuse_rankings(
            [([c.chunk_id for c in dense], dense_weight), ([cid for cid, _ in keyword], keyword_weights)]
        )
        best_possible = ((dense_weight if dense else 0.0) + max(keyword_weights.values(), default=0.0)) / (RRF_K + 1)
        ranked = sorted(fused, key=fused.__getitem__, reverse=True)
        limit = n_candidates if self.settings.rerank_model else top_k
        chosen = ranked[:limit]

        judge_language = detect_language(judge) if judge else language
        relevance = self._relevance(judge or query, judge_language, chosen, rows, query_vector if not judge else None)
        similarity = {c.chunk_id: c.similarity for c in dense}
        keyword_scores = dict(keyword)
        hits = [
            _hit(rows[cid], min(1.0, fused[cid] / (best_possible or 1.0)), similarity.get(cid), keyword_scores.get(cid),
                 relevance[cid])
            for cid in chosen
        ]  # fmt: skip
        if self.settings.rerank_model and hits:
            hits = self._rerank(query, hits)[:top_k]
        return hits

    def _relevance(
        self, question: str, language: str, ids: list[str], rows: dict[str, Chunk], vector: np.ndarray | None
    ) -> dict[str, float]:
        """max(share of the question's words in the chunk, the embedder's rescaled similarity where trusted)."""
        tokens = keyword_tokens(question)
        chunk_tokens = self.keyword_index.tokens_of(ids)
        similarities: dict[str, float | None] = {cid: rows[cid].similarity for cid in ids}
        if self.dense_weight(language) > 0 and (vector is None or any(s is None for s in similarities.values())):
            # The judge differs from the query, or BM25 alone found the chunk: compare vectors directly.
            vector = self.embedder.embed_query(question) if vector is None else vector
            stored = self.store.get_vectors(ids)
            similarities = {cid: float(stored[cid] @ vector) if cid in stored else None for cid in ids}
        return {
            cid: max(
                term_coverage(tokens, chunk_tokens.get(cid) or keyword_tokens(rows[cid].text)),
                self.dense_relevance(similarities[cid], language),
            )
            for cid in ids
        }

    def _rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        with self._reranker_lock:
            if self._reranker is None:
                try:
                    from sentence_transformers import CrossEncoder

                    self._reranker = CrossEncoder(self.settings.rerank_model)
                except Exception as exc:
                    raise RagError(
                        f"RAG_RERANK_MODEL={self.settings.rerank_model!r} could not be loaded: {exc}".splitlines()[0]
                    ) from None
        scores = self._reranker.predict([(query, h.text) for h in hits])
        order = sorted(range(len(hits)), key=lambda i: float(scores[i]), reverse=True)
        return [hits[i] for i in order]


def _lang(chunk: Chunk) -> str:
    return str(chunk.meta.get("lang") or detect_language(chunk.text))


def _hit(chunk: Chunk, score: float, similarity: float | None, keyword_score: float | None, relevance: float) -> Hit:
    meta = chunk.meta
    return Hit(
        chunk_id=chunk.chunk_id,
        text=chunk.text,
        source=str(meta.get("source", "")),
        file_name=str(meta.get("file_name", "")),
        page=int(meta["page"]) if meta.get("page") is not None else None,
        score=score,
        dense_similarity=similarity,
        keyword_score=keyword_score,
        relevance=relevance,
        lang=_lang(chunk),
        doc_id=chunk.doc_id,
        chunk_index=int(meta.get("chunk_index", 0)),
        ocr=bool(meta.get("ocr", False)),
    )
