"""Per-language centring of multilingual vectors, so that a question finds passages in another language.

e5's similarities carry a strong language component: a Chinese question's nearest passages are Chinese ones on any
topic, and the English passage that answers it ranks below a hundred of them (measured on the dev store: dense-only
hit@5 0.09 for Chinese questions over English articles, 0.23 the other way). Subtracting each language's mean vector
before comparing removes most of that component (0.72 and 0.83 on the same questions). Passages are centred with the
mean of their language in this collection, estimated from a sample of its vectors; a question with its language's
collection mean when the collection has enough text in that language, else with a reference mean shipped in
rag/data (scripts/make_reference_means.py): collection means were better than reference means whenever available
(mean hit@5 0.88 against 0.74 on the tune half).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REFERENCE_FILE = Path(__file__).with_name("data") / "e5_reference_means.json"
MIN_CHUNKS = 20  # fewer chunks of a language than this: its collection mean is mostly one document's topic
# A collection's mean is blended with the reference mean as if the reference were this many chunks: a one-document
# collection's "mean" is that document's topic, and subtracting it would subtract the very thing a question asks about.
PRIOR_CHUNKS = 50
SAMPLE = 512  # vectors per language used to estimate its mean
SAMPLE_RUNS = 8  # taken from this many places spread over the collection, not only its oldest documents


@functools.lru_cache(maxsize=4)
def reference_means(embedder_name: str) -> dict[str, np.ndarray]:
    try:
        data = json.loads(REFERENCE_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if data.get("embedder") != embedder_name:
        return {}
    return {lang: np.asarray(vec, dtype=np.float32) for lang, vec in data["means"].items()}


def unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


@dataclass
class LanguageMeans:
    """Mean vectors by language: of this collection's chunks, and of reference text."""

    collection: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    reference: Mapping[str, np.ndarray] = field(default_factory=dict)

    def for_question(self, language: str) -> np.ndarray | None:
        if self.counts.get(language, 0) >= MIN_CHUNKS and language in self.collection:
            return self.collection[language]
        if language in self.reference:
            return self.reference[language]
        if self.reference:  # a language we have no reference for: the average takes out what languages share
            return np.mean(list(self.reference.values()), axis=0)
        return None

    def for_chunks(self, language: str) -> np.ndarray | None:
        return self.collection.get(language)

    def centred_question(self, vector: np.ndarray, language: str) -> np.ndarray:
        mean = self.for_question(language)
        return unit(vector - mean) if mean is not None else vector

    def centred_similarity(self, question: np.ndarray, vectors: np.ndarray, language: str) -> np.ndarray:
        """Cosine of a centred question with passages of one language, centred with that language's mean."""
        mean = self.for_chunks(language)
        if mean is None or len(vectors) == 0:
            return vectors @ question
        centred = vectors - mean
        norms = np.linalg.norm(centred, axis=1)
        norms[norms == 0] = 1.0
        return (centred @ question) / norms


def language_counts(records) -> dict[str, int]:
    """Chunks per language over the committed documents (each ledger record counts its chunks' languages)."""
    counts: dict[str, int] = {}
    for record in records:
        for part in filter(None, record.langs.split(",")):
            language, _, n = part.partition(":")
            counts[language] = counts.get(language, 0) + int(n or 0)
    return counts


def estimate_means(store, counts: Mapping[str, int], embedder_name: str) -> LanguageMeans:
    """Sample each language's vectors (spread over the collection) and average them."""
    reference = reference_means(embedder_name)
    means: dict[str, np.ndarray] = {}
    languages = [language for language, total in counts.items() if total > 0]
    for language in languages:
        total = counts[language]
        # Metadata filters are slow in Chroma: a collection in one language is sampled without one.
        vectors = store.sample_vectors(language if len(languages) > 1 else None, total, SAMPLE, SAMPLE_RUNS)
        if len(vectors):
            mean = vectors.mean(axis=0)
            if language in reference:
                mean = (total * mean + PRIOR_CHUNKS * reference[language]) / (total + PRIOR_CHUNKS)
            means[language] = mean
    return LanguageMeans(means, dict(counts), reference)
