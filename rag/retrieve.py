"""Hybrid retrieval: vectors in Chroma + BM25 over CJK-aware tokens, fused by score, with weights by language.

Each candidate chunk gets score = dense_weight * dense relevance + keyword weight * keyword relevance, where dense
relevance is the question-passage cosine rescaled to 0..1 (rag/centering.py centres vectors per language first, so a
passage in another language competes fairly) and keyword relevance is the BM25 score divided by what a passage
holding every question word would score (so 1 means "all the question's words, the rare ones included"). The keyword
weight is RAG_KEYWORD_WEIGHT for a chunk in the question's language and RAG_KEYWORD_WEIGHT_CROSS for another:
across languages BM25 only matches names and numbers. For a chunk in another language, BM25 on the question's
dictionary translation (rag/dictionary.py) adds RAG_TRANSLATED_WEIGHT times its relevance. The dense weight and the
cross-language weights depend on the question's language (FUSION_BY_QUESTION_LANGUAGE) unless RAG_DENSE_WEIGHT,
RAG_KEYWORD_WEIGHT_CROSS or RAG_TRANSLATED_WEIGHT set them.

Why scores and not rank fusion: in a collection with both languages, an English question whose answer is in a Chinese
article still gets English chunks from BM25 that share a word or two with it; rank fusion gives that weak match the
same credit as a strong one (dev tune half, mean hit@5 over language pairs: 0.63 with reciprocal rank fusion, 0.88
with score fusion). The same two relevances decide grounding (answerer: RAG_MIN_RELEVANCE), less
RAG_UNKNOWN_WORD_PENALTY times the share of the question's words that no chunk holds in either language.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rag import dictionary, names
from rag.centering import LanguageMeans, estimate_means, language_counts, reference_means
from rag.config import Settings
from rag.embedders import Embedder
from rag.errors import EmptyIndex, RagError, StoreError
from rag.keyword_index import KeywordIndex
from rag.keyword_sync import sync_keyword_index
from rag.language import detect_language
from rag.store import Chunk, DocRecord, Store
from rag.tokenize import keyword_tokens

CANDIDATES_PER_RESULT = 4
LEDGER_TTL_S = 2.0
MEANS_DRIFT = 0.05  # language means are sampled again when a language's chunk count moves by more than this share
# Chosen on the tune half of the dev questions (bench/tune_retrieval.py), reported on the other half.
DENSE_WEIGHT = 1.5
KEYWORD_WEIGHT_CROSS = 0.5
TRANSLATED_WEIGHT = 0.0  # for embedders whose weights were not tuned with translation
# Grounding reads a chunk in the other language also against the question's translation: the share of the question's
# words it holds in translation (rag/dictionary.py, Translation.coverage) counts when larger than the plain share.
TRANSLATED_COVERAGE = True
# Chosen again for each question language's questions (bench/tune_retrieval.py, second stage), with the weight of
# BM25 on the question's dictionary translation (rag/dictionary.py) for chunks in the other language. With
# translation both languages lean less on vectors; English questions still ignore their own words' matches in Chinese
# chunks (an English word there is a name at best), Chinese questions count matches in English chunks fully.
# Report half, against the same choice made without translation in the same run: mean hit@5 over sets 0.858 -> 0.926,
# MRR 0.720 -> 0.771; English over Chinese 0.67-1.00 -> 0.80-0.87 per set and store, Chinese over English 0.76-0.81
# -> 0.90-0.95.
FUSION_BY_QUESTION_LANGUAGE: dict[str, dict[str, dict[str, float]]] = {
    "multilingual-e5-small": {
        "en": {"dense_weight": 0.75, "keyword_weight_cross": 0.0, "translated_weight": 1.5},
        "zh": {"dense_weight": 0.5, "keyword_weight_cross": 1.0, "translated_weight": 0.5},
    },
}
# Cosine similarities mapped to a 0..1 relevance: (what means "unrelated", what means "clearly on topic"), for chunks
# in the question's language (plain cosine) and in another (centred cosine). e5's plain similarities crowd into
# 0.75-0.92. Chosen with bench/tune_retrieval.py; other models: raw cosine, unrescaled.
DENSE_RELEVANCE_RANGE = {"multilingual-e5-small": {"same": (0.8, 0.9), "cross": (0.05, 0.25)}}
# The same two similarities as evidence that a chunk answers the question at all (grounding), on their own scale:
# ranking only needs the order of a question's candidates, grounding compares questions with each other.
# Chosen with bench/calibrate_grounding.py on the tune half, together with RAG_MIN_RELEVANCE.
GROUNDING_RANGE = {"multilingual-e5-small": {"same": (0.82, 0.92), "cross": (0.25, 0.45)}}


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
    score: float  # fused score (dense and keyword relevance, weighted)
    dense_similarity: float | None  # (centred) cosine similarity, when the dense side found it
    keyword_score: float | None  # normalised BM25 (0..~1.2), when the keyword side found it
    relevance: float  # 0..1, what grounding compares with RAG_MIN_RELEVANCE
    lang: str = "en"
    coverage: float = 0.0  # rarity-weighted share of the (judged) question's words in the chunk
    similarity: float | None = None  # the (judged) question's similarity to the chunk (centred across languages)
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


@dataclass(frozen=True)
class Fusion:
    """How a question's candidates are scored (see the module docstring). Similarities of chunks in the question's
    language are plain cosines, of chunks in other languages centred ones: each kind has its own range."""

    dense_weight: float
    keyword_weight: float
    keyword_weight_cross: float
    same_range: tuple[float, float] = (0.0, 1.0)
    cross_range: tuple[float, float] = (0.0, 1.0)
    translated_weight: float = 0.0

    def dense_relevance(self, similarity: float | None, same: bool = True, clip: bool = True) -> float:
        if similarity is None:
            return 0.0
        low, high = self.same_range if same else self.cross_range
        value = (similarity - low) / (high - low)
        return float(min(1.0, max(0.0, value))) if clip else float(value)

    def scores(
        self,
        question_language: str,
        dense: Mapping[str, float],
        keyword: Mapping[str, float],
        languages: Mapping[str, str],
        translated: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        """Fused score of every candidate: ``dense`` maps chunk ids to (centred) similarity, ``keyword`` to
        normalised BM25, ``languages`` to each chunk's language, ``translated`` to normalised BM25 of the question's
        dictionary translation (counted for chunks in another language than the question's)."""
        translated = translated or {}
        out = {}
        for cid in dense.keys() | keyword.keys() | translated.keys():
            same = languages.get(cid) == question_language
            weight = self.keyword_weight if same else self.keyword_weight_cross
            dense_part = self.dense_relevance(dense.get(cid), same)
            out[cid] = self.dense_weight * dense_part + weight * keyword.get(cid, 0.0)
            if not same:
                out[cid] += self.translated_weight * translated.get(cid, 0.0)
        return out


@dataclass
class Candidates:
    """What both sides of a search proposed, before fusion."""

    language: str  # of the question
    dense: dict[str, float]  # chunk id -> cosine similarity (centred for chunks in another language)
    keyword: dict[str, float]  # chunk id -> BM25 / the most a chunk can score for these words
    languages: dict[str, str]  # chunk id -> the chunk's language
    rows: dict[str, Chunk]
    translated: dict[str, float] = field(default_factory=dict)  # chunk id -> BM25 of the translated question, 0..~1
    # What grounding needs again (Retriever.evidence): the question's vector, its tokens' idf, its translation.
    vector: np.ndarray | None = None
    idf: dict[str, float] = field(default_factory=dict)
    translation: dictionary.Translation | None = None

    def scores(self, fusion: Fusion) -> dict[str, float]:
        return fusion.scores(self.language, self.dense, self.keyword, self.languages, self.translated)

    def ranked(self, scores: Mapping[str, float]) -> list[str]:
        """Chunk ids, best first. Fused scores tie exactly when similarities clip at the top of their range: the
        unclipped similarity, then BM25, then the id decide, so that every process ranks a question the same way
        (a set's order changes with Python's hash seed)."""
        return sorted(
            scores,
            key=lambda cid: (scores[cid], self.dense.get(cid, float("-inf")), self.keyword.get(cid, 0.0), cid),
            reverse=True,
        )


def term_coverage(query_tokens: list[str], passage_tokens: Iterable[str], idf: dict[str, float] | None = None) -> float:
    """Share of the question's distinct content tokens found in the passage, weighted by rarity when ``idf`` is
    given: a relevance signal for any language."""
    wanted = set(query_tokens)
    if not wanted:
        return 0.0
    weight = (lambda t: idf.get(t, 0.0)) if idf else (lambda _t: 1.0)
    total = sum(weight(t) for t in wanted)
    return sum(weight(t) for t in wanted & set(passage_tokens)) / total if total > 0 else 0.0


def unknown_share(tokens: list[str], held: Mapping[str, float], translation: dictionary.Translation) -> float:
    """Share of the question's distinct words that the collection holds neither as they are (``held``: the keyword
    index's idf of those it holds) nor in translation. Coverage alone lets a question through on its common words
    ("Which countries share a border with Switzerland?" holds 国家 and 分享 in a Chinese chunk): one whose words the
    documents never use needs more evidence. Counted, not weighted: an absent word's rarity is already in coverage."""
    distinct = set(tokens)
    if not distinct:
        return 0.0
    untranslated = set(translation.untranslated)
    unknown = [t for t in distinct if t not in held and (not translation.groups or t in untranslated)]
    return len(unknown) / len(distinct)


class Retriever:
    def __init__(self, settings: Settings, store: Store, embedder: Embedder, keyword_index: KeywordIndex) -> None:
        store.require_embedder(embedder.name)  # querying with another model's vectors would return noise
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.keyword_index = keyword_index
        self._lock = threading.Lock()
        self._records: dict[str, DocRecord] = {}
        self._languages: dict[str, int] = {}  # chunks per language
        self._dictionary_warming = False
        self._means = LanguageMeans()
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
                self.store.follow_active()
                if self.store.embed_model not in (None, self.embedder.name):
                    raise StoreError(
                        f"collection {self.settings.collection!r} was re-embedded with {self.store.embed_model} "
                        "since this process started; start it again"
                    )
                sync_keyword_index(self.store, self.keyword_index, records)
                self._records, self._version = records, version
                self._languages = language_counts(records.values())
                self._warm_dictionary()
                if self.store.try_refresh() or not self._means.collection:
                    self._means = self._estimate_means(records)
                # else: the writer still holds the store; the means of the collection before its commit stay close
            else:
                stale = self.store.stale
                if self.store.try_refresh() and stale:  # the writer that was busy at the last change is done
                    self._means = self._estimate_means(self._records)
            self._checked_at = time.monotonic()

    def _warm_dictionary(self) -> None:
        """Read the translation dictionary in the background once the collection holds Chinese (the first
        cross-language question would otherwise wait a second or more for it); an English-only collection reads it
        when a Chinese question first comes."""
        translating = max(self.fusion(q).translated_weight for q in ("zh", "en")) > 0
        if self._languages.get("zh", 0) > 0 and translating and not self._dictionary_warming:
            self._dictionary_warming = True
            threading.Thread(target=dictionary.warm, name="dictionary", daemon=True).start()

    def _estimate_means(self, records: dict[str, DocRecord]) -> LanguageMeans:
        if not self.embedder.multilingual:
            return LanguageMeans()
        counts = language_counts(records.values())
        if self.store.stale:  # vectors cannot be sampled by language from a stale client: reference means for now
            return LanguageMeans({}, counts, reference_means(self.embedder.name))
        if _means_still_hold(self._means, counts):
            return replace(self._means, counts=counts)
        return estimate_means(self.store, counts, self.embedder.name)

    def _ensure_fresh(self) -> None:
        if self._version is None or time.monotonic() - self._checked_at > LEDGER_TTL_S:
            self.refresh()

    @property
    def documents(self) -> dict[str, DocRecord]:
        self._ensure_fresh()
        return self._records

    # ------------------------------------------------------------------ weights
    def _tuned(self, language: str) -> dict[str, float]:
        return FUSION_BY_QUESTION_LANGUAGE.get(self.embedder.name, {}).get(language, {})

    def dense_weight(self, language: str) -> float:
        if not (self.embedder.multilingual or language == "en"):
            # An English-only embedder's ranking of a Chinese question is noise (measured: hit@3 1.00 -> 0.80).
            return 0.0
        if self.settings.dense_weight is not None:
            return self.settings.dense_weight
        return self._tuned(language).get("dense_weight", DENSE_WEIGHT)

    def fusion(self, language: str) -> Fusion:
        cross = self.settings.keyword_weight_cross
        if cross is None:
            cross = self._tuned(language).get("keyword_weight_cross", KEYWORD_WEIGHT_CROSS)
        translated = self.settings.translated_weight
        if translated is None:
            translated = self._tuned(language).get("translated_weight", TRANSLATED_WEIGHT)
        return Fusion(
            dense_weight=self.dense_weight(language),
            keyword_weight=self.settings.keyword_weight,
            keyword_weight_cross=cross,
            translated_weight=translated,
            **{f"{kind}_range": r for kind, r in DENSE_RELEVANCE_RANGE.get(self.embedder.name, {}).items()},
        )

    def keyword_weight(self, question_language: str, chunk_language: str) -> float:
        fusion = self.fusion(question_language)
        return fusion.keyword_weight if question_language == chunk_language else fusion.keyword_weight_cross

    # ------------------------------------------------------------------ search
    def search(self, query: str, top_k: int | None = None, judge: str | None = None) -> list[Hit]:
        """The best chunks for ``query``. Relevance (grounding) is judged on ``judge`` when given: the user's own
        question, when the query also carries an earlier question's words."""
        top_k = top_k or self.settings.top_k
        found = self.candidates(query, top_k)
        scores = found.scores(self.fusion(found.language))
        ranked = found.ranked(scores)
        chosen = ranked[: len(scores) if self.settings.rerank_model else top_k]
        evidence = self.evidence(judge or query, chosen, found.rows, found if judge in (None, query) else None)
        hits = [
            _hit(found.rows[cid], scores[cid], found.dense.get(cid), found.keyword.get(cid), *evidence[cid])
            for cid in chosen
        ]
        if self.settings.rerank_model and hits:
            hits = self._rerank(query, hits)[:top_k]
        return hits

    def candidates(self, query: str, top_k: int, translate: bool | None = None) -> Candidates:
        """Every chunk either side proposes for ``query``, with the signals fusion needs (bench/tune_retrieval.py
        replays fusion on these). The translated question is searched when its fusion weight is positive (or
        ``translate``) and the collection holds chunks in another language than the question's."""
        self._ensure_fresh()
        if not self._records:
            raise empty_index(self.settings.collection)
        visible = {doc_id: record.rev for doc_id, record in self._records.items()}
        n_candidates = max(top_k * CANDIDATES_PER_RESULT, 20)
        language = detect_language(query)
        tokens = keyword_tokens(query)
        vector = self.embedder.embed_query(query) if self.dense_weight(language) > 0 else None
        dense = self._dense(vector, language, n_candidates, visible) if vector is not None else {}
        keyword = self.keyword_index.search(tokens, n_candidates)
        idf = self.keyword_index.idf(tokens)
        keyword_norm = max(sum(idf.values()), 1e-9)
        if translate is None:
            translate = self.fusion(language).translated_weight > 0
        translation = None
        translated: list[tuple[str, float]] = []
        translated_norm = 1.0
        if translate and any(n > 0 for lang, n in self._languages.items() if lang != language):
            translation = dictionary.translate(query, language, self.keyword_index.idf)
            weights = translation.weights()
            translated = self.keyword_index.search(weights, n_candidates) if weights else []
            translated_norm = max(sum(translation.weighted_idf().values()), 1e-9)
        rows: dict[str, Chunk] = {cid: chunk for cid, (chunk, _) in dense.items()}
        missing = list(dict.fromkeys(cid for cid, _ in keyword + translated if cid not in rows))
        for cid, chunk in self.store.get_chunks(missing).items():
            if visible.get(chunk.doc_id) == chunk.rev:
                rows[cid] = chunk
        return Candidates(
            language=language,
            dense={cid: sim for cid, (_, sim) in dense.items()},
            keyword={cid: score / keyword_norm for cid, score in keyword if cid in rows},
            languages={cid: _lang(chunk) for cid, chunk in rows.items()},
            rows=rows,
            translated={cid: score / translated_norm for cid, score in translated if cid in rows},
            vector=vector,
            idf=idf,
            translation=translation,
        )

    def _dense(
        self, vector: np.ndarray, language: str, n: int, visible: dict[str, str]
    ) -> dict[str, tuple[Chunk, float]]:
        """Nearest chunks to the question's ``vector`` with their similarity, searched per chunk language when the
        collection knows its languages: plain cosine in the question's language, centred cosine in the others
        (rag/centering.py), so that passages in another language than the question's are not all outranked."""
        means = self._means
        if not means.collection:
            return {c.chunk_id: (c, float(c.similarity or 0.0)) for c in self.store.query(vector, n, visible)}
        centred = means.centred_question(vector, language)
        out: dict[str, tuple[Chunk, float]] = {}
        # Chroma filters by metadata slowly (a `where` query took ~200 ms at 100k chunks, an unfiltered one ~5 ms):
        # a collection in one language needs no filter, the results are the same.
        only_one = sum(1 for n in means.counts.values() if n > 0) == 1
        for chunk_language in means.collection:
            where = None if only_one else chunk_language
            if chunk_language == language:
                out.update({c.chunk_id: (c, float(c.similarity or 0.0))
                            for c in self.store.query(vector, n, visible, language=where)})  # fmt: skip
                continue
            chunks = self.store.query(centred, n, visible, language=where, with_vectors=True)
            if chunks:
                similarity = means.centred_similarity(centred, np.vstack([c.vector for c in chunks]), chunk_language)
                out.update({c.chunk_id: (c, float(s)) for c, s in zip(chunks, similarity, strict=True)})
        return out

    def evidence(
        self, question: str, ids: list[str], rows: dict[str, Chunk], searched: Candidates | None = None
    ) -> dict[str, tuple[float, float, float | None]]:
        """(relevance, coverage, similarity) of each chunk for grounding: relevance = max(coverage, similarity
        rescaled by GROUNDING_RANGE). ``searched``: the candidates of this same question (their similarities, vector,
        idf and translation are reused); without them (the question is not what was searched) the vectors are
        compared here. Calibrated with bench/calibrate_grounding.py."""
        language = detect_language(question)
        tokens = keyword_tokens(question)
        # A question word that no chunk holds counts, at the weight of the rarest word: a question about something
        # the documents never mention ("Who painted the Mona Lisa?") must not look covered.
        held_idf = searched.idf if searched is not None else self.keyword_index.idf(tokens)
        similarity = searched.dense if searched is not None else None
        absent = self.keyword_index.max_idf()
        idf = {t: held_idf.get(t, absent) for t in tokens}
        chunk_tokens = self.keyword_index.tokens_of(ids)
        if self.dense_weight(language) <= 0:
            similarity = {}
        elif similarity is None or any(cid not in similarity for cid in ids):
            similarity = dict(similarity or {})
            vector = searched.vector if searched is not None and searched.vector is not None else None
            vector = vector if vector is not None else self.embedder.embed_query(question)
            means = self._means
            centred = means.centred_question(vector, language) if means.collection else vector
            stored = self.store.get_vectors([cid for cid in ids if cid not in similarity])
            for cid, chunk_vector in stored.items():
                chunk_language = _lang(rows[cid])
                if means.collection and chunk_language != language:
                    similarity[cid] = float(means.centred_similarity(centred, chunk_vector[None, :], chunk_language)[0])
                else:
                    similarity[cid] = float(chunk_vector @ vector)
        translation = dictionary.Translation([], [])
        cross = TRANSLATED_COVERAGE and any(_lang(rows[cid]) != language for cid in ids)
        if cross or any(t not in held_idf for t in tokens):
            found = searched.translation if searched is not None else None
            translation = found if found is not None else self.translation(question, language)
        penalty = self.settings.unknown_word_penalty * unknown_share(tokens, held_idf, translation)
        out = {}
        for cid in ids:
            held = chunk_tokens.get(cid) or keyword_tokens(rows[cid].text)
            coverage = term_coverage(tokens, held, idf)
            same = _lang(rows[cid]) == language
            if cross and translation.groups and not same:
                coverage = max(coverage, translation.coverage(set(held), absent))
            sim = similarity.get(cid)
            out[cid] = (max(0.0, max(coverage, self.grounding(sim, same)) - penalty), coverage, sim)
        return out

    def unknown_share(self, question: str) -> float:
        """Share of the question's words that no chunk holds, as they are or in translation (grounding's penalty)."""
        tokens = keyword_tokens(question)
        held = self.keyword_index.idf(tokens)
        translation = dictionary.Translation([], [])
        if any(t not in held for t in tokens):
            translation = self.translation(question, detect_language(question))
        return unknown_share(tokens, held, translation)

    def translation(self, question: str, language: str) -> dictionary.Translation:
        """The question's dictionary translation (rag/dictionary.py) against this collection (empty when translation
        is off for its language)."""
        if self.fusion(language).translated_weight <= 0:
            return dictionary.Translation([], [])
        return dictionary.translate(question, language, self.keyword_index.idf)

    def absent_names(self, question: str) -> list[str]:
        """The names of a question (Latin-script names and titles in a Chinese one, identifiers in an English one)
        that no chunk holds, as written or in translation (rag/names.py): grounding refuses it."""
        absent = names.absent_names(question, self.keyword_index.idf)
        if absent and not names.is_cjk_question(question):  # an English identifier may be held in Chinese
            translation = self.translation(question, detect_language(question))
            if translation.groups:
                translated = set(keyword_tokens(question)) - set(translation.untranslated)
                absent = names.absent_names(question, self.keyword_index.idf, translated)
        return absent

    def sentence_similarity(self, question: str, sentences: list[str], *, clip: bool = True) -> np.ndarray:
        """How close each sentence is to the question, 0..1, on the fusion's scales: plain cosine for a sentence in
        the question's language, centred cosine (this collection's language means) for one in another language.
        ``clip=False`` keeps the values beyond 0..1 (several sentences past the top of the range stay in order)."""
        language = detect_language(question)
        if not sentences or self.dense_weight(language) <= 0:
            return np.zeros(len(sentences))
        vectors = self.embedder.embed_passages(sentences)
        vector = self.embedder.embed_query(question)
        means = self._means
        centred = means.centred_question(vector, language) if means.collection else vector
        fusion = self.fusion(language)
        out = np.zeros(len(sentences))
        for i, (text, row) in enumerate(zip(sentences, vectors, strict=True)):
            sentence_language = detect_language(text)
            if means.collection and sentence_language != language:
                value = float(means.centred_similarity(centred, row[None, :], sentence_language)[0])
                out[i] = fusion.dense_relevance(value, same=False, clip=clip)
            else:
                out[i] = fusion.dense_relevance(float(row @ vector), same=True, clip=clip)
        return out

    def grounding(self, similarity: float | None, same_language: bool) -> float:
        if similarity is None:
            return 0.0
        ranges = GROUNDING_RANGE.get(self.embedder.name, {})
        low, high = ranges.get("same" if same_language else "cross", (0.0, 1.0))
        return float(min(1.0, max(0.0, (similarity - low) / (high - low))))

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


def _means_still_hold(means: LanguageMeans, counts: dict[str, int]) -> bool:
    """Whether the language means sampled before a commit still describe the collection: same languages, none of
    whose chunk counts moved by more than MEANS_DRIFT. Sampling takes ~2 s at 100k chunks (Chroma's metadata
    filter), and a document added to a large collection barely moves a mean."""
    if not means.collection:
        return False
    languages = {language for language, n in counts.items() if n > 0}
    if languages != {language for language, n in means.counts.items() if n > 0} or languages != set(means.collection):
        return False
    return all(abs(counts[lang] - means.counts[lang]) <= MEANS_DRIFT * means.counts[lang] for lang in languages)


def _lang(chunk: Chunk) -> str:
    return str(chunk.meta.get("lang") or detect_language(chunk.text))


def _hit(
    chunk: Chunk,
    score: float,
    dense: float | None,
    keyword_score: float | None,
    relevance: float,
    coverage: float,
    similarity: float | None,
) -> Hit:
    meta = chunk.meta
    return Hit(
        chunk_id=chunk.chunk_id,
        text=chunk.text,
        source=str(meta.get("source", "")),
        file_name=str(meta.get("file_name", "")),
        page=int(meta["page"]) if meta.get("page") is not None else None,
        score=score,
        dense_similarity=dense,
        keyword_score=keyword_score,
        relevance=relevance,
        coverage=coverage,
        similarity=similarity,
        lang=_lang(chunk),
        doc_id=chunk.doc_id,
        chunk_index=int(meta.get("chunk_index", 0)),
        ocr=bool(meta.get("ocr", False)),
    )
