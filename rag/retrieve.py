"""Hybrid retrieval: dense search in Chroma + BM25 over CJK-aware tokens, fused by weighted reciprocal rank.

Why weighted: the packaged MiniLM is English-only. On Chinese questions its ranking is mostly noise and equal-weight
fusion did worse than BM25 alone, so the dense weight depends on the query's script (RAG_DENSE_WEIGHT for
others, RAG_DENSE_WEIGHT_CJK for Chinese); `python -m rag eval` measures the effect on a user's own documents.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from rag.config import Settings
from rag.errors import EmptyIndex
from rag.keyword_index import KeywordIndex, keyword_dir
from rag.models import Embedder
from rag.store import DocRecord, Store
from rag.tokenize import cjk_fraction, keyword_tokens

RRF_K = 60
CANDIDATES_PER_RESULT = 4
LEDGER_TTL_S = 2.0
ENGLISH_ONLY_EMBEDDERS = frozenset({"all-MiniLM-L6-v2", "all-MiniLM-L12-v2", "all-mpnet-base-v2"})


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
    keyword_score: float | None  # raw BM25 score, when the keyword side found it
    relevance: float  # 0..1, what grounding compares with RAG_MIN_RELEVANCE

    def as_json(self) -> dict[str, Any]:
        return {"text": self.text, "source": self.source, "page": self.page, "score": round(self.score, 4)}


def fuse_rankings(rankings: list[tuple[list[str], float]], k: int = RRF_K) -> dict[str, float]:
    """Weighted reciprocal rank fusion; each ranking is (ids best first, weight)."""
    fused: dict[str, float] = {}
    for ids, weight in rankings:
        if weight <= 0:
            continue
        for rank, item in enumerate(ids):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank + 1)
    return fused


def term_coverage(query_tokens: list[str], passage_tokens: list[str]) -> float:
    """Share of the query's distinct content tokens found in the passage: a relevance signal for any language."""
    wanted = set(query_tokens)
    if not wanted:
        return 0.0
    return len(wanted & set(passage_tokens)) / len(wanted)


class Retriever:
    def __init__(self, settings: Settings, store: Store, embedder: Embedder) -> None:
        store.require_embedder(embedder.name)  # querying with another model's vectors would return noise
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self._lock = threading.Lock()
        self._keyword: KeywordIndex | None = None
        self._ledger: dict[str, DocRecord] = {}
        self._ledger_at = 0.0
        self._reranker = None

    def refresh(self) -> None:
        """Pick up what another process (or this one) ingested: cheap when nothing changed."""
        with self._lock:
            self._ledger = self.store.documents()
            self._ledger_at = time.monotonic()
            fingerprint = self.store.fingerprint(self._ledger.values())
            if self._keyword is None or self._keyword.fingerprint != fingerprint:
                self._keyword = KeywordIndex.sync(self.store, keyword_dir(self.settings), self._keyword)

    def _ensure_fresh(self) -> None:
        if self._keyword is None or time.monotonic() - self._ledger_at > LEDGER_TTL_S:
            self.refresh()

    @property
    def documents(self) -> dict[str, DocRecord]:
        self._ensure_fresh()
        return self._ledger

    def dense_weight_for(self, query: str) -> float:
        if cjk_fraction(query) < 0.3:
            return self.settings.dense_weight
        if self.settings.dense_weight_cjk is not None:
            return self.settings.dense_weight_cjk
        # Measured on the Chinese dev set: any weight for MiniLM's ranking lowered hit@3 (1.00 at 0, 0.80 at 0.1).
        return 0.0 if self.embedder.name in ENGLISH_ONLY_EMBEDDERS else 1.0

    def search(self, query: str, top_k: int | None = None) -> list[Hit]:
        top_k = top_k or self.settings.top_k
        self._ensure_fresh()
        if not self._ledger:
            raise empty_index(self.settings.collection)
        n_candidates = max(top_k * CANDIDATES_PER_RESULT, 20)
        query_tokens = keyword_tokens(query)
        dense_weight = self.dense_weight_for(query)

        dense: dict[str, tuple[str, dict, float]] = {}
        if dense_weight > 0:
            vector = self.embedder.embed([query])[0]
            got = self.store.chunks.query(
                query_embeddings=[vector.tolist()],
                n_results=min(n_candidates, max(1, self.store.count_chunks())),
                include=["documents", "metadatas", "distances"],
            )
            for cid, text, meta, dist in zip(
                got["ids"][0], got["documents"][0], got["metadatas"][0], got["distances"][0], strict=True
            ):
                dense[cid] = (text, meta, 1.0 - float(dist))
        keyword = dict(self._keyword.search(query_tokens, n_candidates)) if self._keyword else {}

        fused = fuse_rankings([(list(dense), dense_weight), (list(keyword), 1.0)])
        best_possible = (dense_weight if dense else 0.0) + (1.0 if keyword else 0.0)
        best_possible = (best_possible or 1.0) / (RRF_K + 1)

        ranked = sorted(fused, key=fused.__getitem__, reverse=True)
        missing = [cid for cid in ranked[:n_candidates] if cid not in dense]
        fetched = self._fetch(missing)
        hits: list[Hit] = []
        for cid in ranked:
            text, meta = (dense[cid][0], dense[cid][1]) if cid in dense else fetched.get(cid, (None, None))
            if text is None or not self._committed(meta):
                continue
            similarity = dense[cid][2] if cid in dense else None
            coverage = term_coverage(query_tokens, str(meta.get("tokens", "")).split())
            # The English-only embedder's similarity only counts as evidence where its weight says it is trusted.
            relevance = max(coverage, similarity if similarity is not None and dense_weight >= 0.5 else 0.0)
            hits.append(
                Hit(
                    chunk_id=cid,
                    text=text,
                    source=str(meta.get("source", "")),
                    file_name=str(meta.get("file_name", "")),
                    page=int(meta["page"]) if meta.get("page") is not None else None,
                    score=min(1.0, fused[cid] / best_possible),
                    dense_similarity=similarity,
                    keyword_score=keyword.get(cid),
                    relevance=relevance,
                )
            )
            if len(hits) >= (n_candidates if self.settings.rerank_model else top_k):
                break
        if self.settings.rerank_model and hits:
            hits = self._rerank(query, hits)[:top_k]
        return hits

    def _committed(self, meta: dict[str, Any]) -> bool:
        record = self._ledger.get(str(meta.get("doc_id")))
        return record is not None and record.doc_hash == meta.get("doc_hash")

    def _fetch(self, ids: list[str]) -> dict[str, tuple[str, dict]]:
        if not ids:
            return {}
        got = self.store.chunks.get(ids=ids, include=["documents", "metadatas"])
        return {
            cid: (text, meta) for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        }

    def _rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        if self._reranker is None:
            from sentence_transformers import CrossEncoder

            self._reranker = CrossEncoder(self.settings.rerank_model)
        scores = self._reranker.predict([(query, h.text) for h in hits])
        order = sorted(range(len(hits)), key=lambda i: float(scores[i]), reverse=True)
        return [hits[i] for i in order]
