"""Keyword index at scale: our SQLite postings index (``rag.keyword_index``) next to SQLite FTS5 and tantivy.

Corpus (nothing downloaded): documents of 50 chunks (a 20-page document), 70% English, 30% Chinese. English chunks
are ~100 words drawn with a Zipf-Mandelbrot law from 50,000 made-up words; Chinese chunks are ~105 words (~250
tokens: words plus CJK bigrams) drawn the same way from jieba's dictionary by frequency. The build uses the tokens the
generator knows (English words; Chinese words plus bigrams, a close stand-in for ``keyword_tokens``); the rebuild
after a tokenizer change re-tokenises every chunk text with the real ``rag.tokenize.keyword_tokens``.

One index grows through the sizes (quick: 10k then 100k chunks; full: 100k then 1M). At each size it reports the
build time (batches of 200 documents, as ``sync_index`` applies them), adding a 50-chunk document (median and worst
of several, each one ``apply``) and removing one, keyword query p50/p95 for English and Chinese queries (3-8
distinct words of a random chunk: Zipf-weighted, so common words are in most queries; backends are timed
interleaved, query by query), the RSS of a fresh process that opens the index and runs all queries, the size on
disk, and the rebuild time after a tokenizer change. At the first size it also checks that the top 20 equal those of
bm25s, the library the previous index used (same BM25 variant, same neighbour smoothing).

The alternatives run at the first size only (``--alternatives-all`` for every size): SQLite FTS5 over the same
tokens (its ``bm25()``: k1 1.2, Robertson idf; ``ORDER BY rank`` scores every matching row) and tantivy (a Rust
library, not a dependency of the app; block-max WAND, k1 1.2). Both get neighbour smoothing from their top 100 only.

Usage: .venv/bin/python bench/keyword_bench.py --scale quick|full [--json PATH] [--rebuild-max N]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import PY, ROOT, header, write_results

from rag.keyword_index import NEIGHBOUR_SHARE, IndexedChunk, IndexedDoc, KeywordIndex, split_tokens, sync_index
from rag.tokenize import EN_STOP, TOKENIZER_VERSION, ZH_STOP, keyword_tokens

NAME = "keyword_bench"
SIZES = {"quick": [10_000, 100_000], "full": [100_000, 1_000_000]}
CHUNKS_PER_DOC = 50
ZH_SHARE = 0.3
BUILD_BATCH_DOCS = 200  # what sync_index applies per transaction
N_UPDATES = 8  # documents added (then removed) per size
N_QUERIES = 100  # per language
WARMUP = 10
LIMIT = 20  # what Retriever.search asks for with top_k 5
SEED = 20250101


# --------------------------------------------------------------------------------------------- synthetic corpus
def english_vocabulary(size: int = 50_000) -> list[str]:
    rng = np.random.default_rng(SEED)
    onsets = [*"bcdfghjklmnprtvwz", "ch", "sh", "th", "st", "tr", "pl"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io"]
    words: dict[str, None] = {}
    while len(words) < size:
        n = int(rng.integers(1, 5))
        word = "".join(onsets[rng.integers(len(onsets))] + vowels[rng.integers(len(vowels))] for _ in range(n))
        word += ["", "n", "r", "l", "t", "m"][rng.integers(6)]  # never a final "s": keyword_tokens keeps it as is
        if len(word) >= 3 and word not in EN_STOP:
            words[word] = None
    return list(words)


def chinese_vocabulary(size: int = 50_000) -> list[str]:
    import jieba

    rows = []
    cjk = re.compile(r"^[\u4e00-\u9fff]{1,4}$")
    with open(Path(jieba.__file__).parent / "dict.txt", encoding="utf-8") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 2 and cjk.match(parts[0]):
                rows.append((-int(parts[1]), parts[0]))
    return [w for _, w in sorted(rows)[:size]]


class Corpus:
    """Document ``n`` is always the same text: the rebuild regenerates texts instead of keeping 1M of them."""

    def __init__(self) -> None:
        self.en, self.zh = english_vocabulary(), chinese_vocabulary()
        self.en_cdf = np.cumsum(1.0 / (np.arange(len(self.en)) + 10.0))
        self.zh_cdf = np.cumsum(1.0 / (np.arange(len(self.zh)) + 10.0))

    def is_chinese(self, doc_no: int) -> bool:
        return np.random.default_rng([SEED, doc_no, 0]).random() < ZH_SHARE

    def words(self, doc_no: int) -> Iterator[tuple[bool, list[str], np.random.Generator]]:
        rng = np.random.default_rng([SEED, doc_no, 1])
        chinese = self.is_chinese(doc_no)
        vocab, cdf = (self.zh, self.zh_cdf) if chinese else (self.en, self.en_cdf)
        low, high = (85, 125) if chinese else (80, 125)
        for _ in range(CHUNKS_PER_DOC):
            idx = np.searchsorted(cdf, rng.random(int(rng.integers(low, high))) * cdf[-1])
            yield chinese, [vocab[i] for i in idx], rng

    def chunks(self, doc_no: int) -> list[tuple[str, list[str]]]:
        """(text, stand-in tokens) per chunk."""
        out = []
        for chinese, words, rng in self.words(doc_no):
            if not chinese:
                out.append((" ".join(words), words))
                continue
            breaks = rng.random(len(words)) < 0.06
            runs, run = [], []
            for word, stop in zip(words, breaks, strict=True):
                run.append(word)
                if stop:
                    runs.append("".join(run))
                    run = []
            runs += ["".join(run)] if run else []
            tokens = [w for w in words if w not in ZH_STOP]
            for r in runs:
                tokens.extend(r[i : i + 2] for i in range(len(r) - 1))
            out.append(("。".join(runs) + "。", tokens))
        return out

    def doc(self, doc_no: int, real_tokens: bool = False) -> IndexedDoc:
        doc_id = f"doc{doc_no:07d}"
        return IndexedDoc(
            doc_id,
            f"h{doc_no}",
            [
                IndexedChunk(f"{doc_id}-{i:05d}", i, keyword_tokens(text) if real_tokens else tokens)
                for i, (text, tokens) in enumerate(self.chunks(doc_no))
            ],
        )

    def queries(self, n_docs: int, n: int) -> dict[str, list[list[str]]]:
        rng = np.random.default_rng(SEED + n_docs)
        out: dict[str, list[list[str]]] = {"english": [], "chinese": []}
        while min(len(v) for v in out.values()) < n:
            doc_no = int(rng.integers(n_docs))
            chinese = self.is_chinese(doc_no)
            lang = "chinese" if chinese else "english"
            if len(out[lang]) >= n:
                continue
            text, _ = self.chunks(doc_no)[int(rng.integers(CHUNKS_PER_DOC))]
            words = list(dict.fromkeys(re.findall(r"[^\s。]+", text) if not chinese else _zh_words(text)))
            n_words = int(rng.integers(2, 4) if chinese else rng.integers(3, 9))
            pick = rng.choice(len(words), size=min(len(words), n_words), replace=False)
            query = ("" if chinese else " ").join(words[i] for i in pick)
            out[lang].append(keyword_tokens(query))
        return out


def _zh_words(text: str) -> list[str]:
    import jieba

    return [w for w in jieba.lcut(text.replace("。", "")) if len(w) >= 2]


# --------------------------------------------------------------------------------------------- backends
class PostingsBackend:
    """What the app uses."""

    name = "postings"

    def __init__(self, folder: Path) -> None:
        self.path = folder / "keyword.sqlite3"
        self.index = KeywordIndex.open(self.path)

    def apply(self, add: list[IndexedDoc], remove: Iterable[str] = ()) -> None:
        self.index.apply(add, remove)

    def search(self, tokens: list[str], limit: int) -> list[tuple[str, float]]:
        return self.index.search(tokens, limit)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))

    def close(self) -> None:
        self.index.close()


def _smooth_top(own: dict[int, tuple[str, float]], successors: dict[int, str], limit: int) -> list[tuple[str, float]]:
    """Neighbour smoothing over a top list: row -> (chunk_id, score), plus the ids of the rows after them."""
    out = {cid: score + NEIGHBOUR_SHARE * own.get(row - 1, ("", 0.0))[1] for row, (cid, score) in own.items()}
    for row, cid in successors.items():
        if cid not in out:
            out[cid] = NEIGHBOUR_SHARE * own[row - 1][1]
    return sorted(out.items(), key=lambda kv: -kv[1])[:limit]


class Fts5Backend:
    """SQLite FTS5 with its own bm25(); rows numbered like ours (an empty row before each document)."""

    name = "sqlite-fts5"

    def __init__(self, folder: Path) -> None:
        import sqlite3

        self.path = folder / "fts5.sqlite3"
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS chunks(row INTEGER PRIMARY KEY, chunk_id TEXT UNIQUE, doc_id TEXT)")
        self.db.execute("CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id)")
        # "ascii": every non-ASCII character is a token character, so CJK words and bigrams stay whole
        self.db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(tokens, tokenize='ascii')")

    def apply(self, add: list[IndexedDoc], remove: Iterable[str] = ()) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        for doc_id in [*remove, *(d.doc_id for d in add)]:
            rows = [r for (r,) in db.execute("SELECT row FROM chunks WHERE doc_id = ?", (doc_id,))]
            db.executemany("DELETE FROM fts WHERE rowid = ?", [(r,) for r in rows])
            db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
        for doc in add:
            first = db.execute("SELECT coalesce(max(row), 0) + 2 FROM chunks").fetchone()[0]
            chunks = sorted(doc.chunks, key=lambda c: c.chunk_index)
            db.executemany(
                "INSERT INTO chunks VALUES (?, ?, ?)",
                [(first + i, c.chunk_id, doc.doc_id) for i, c in enumerate(chunks)],
            )
            db.executemany(
                "INSERT INTO fts(rowid, tokens) VALUES (?, ?)",
                [(first + i, " ".join(split_tokens(c.tokens))) for i, c in enumerate(chunks)],
            )
        db.execute("COMMIT")

    def search(self, tokens: list[str], limit: int) -> list[tuple[str, float]]:
        terms = [t for t in dict.fromkeys(split_tokens(tokens)) if '"' not in t]
        if not terms:
            return []
        match = " OR ".join(f'"{t}"' for t in terms)
        sql = "SELECT f.rowid, c.chunk_id, -f.rank FROM fts f JOIN chunks c ON c.row = f.rowid WHERE fts MATCH ? "
        hits = self.db.execute(sql + "ORDER BY f.rank LIMIT ?", (match, max(100, 5 * limit))).fetchall()
        own = {row: (cid, score) for row, cid, score in hits}
        wanted = [row + 1 for row in own if row + 1 not in own]
        marks = ",".join("?" * len(wanted))
        successors = dict(self.db.execute(f"SELECT row, chunk_id FROM chunks WHERE row IN ({marks})", wanted))
        return _smooth_top(own, successors, limit)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))

    def close(self) -> None:
        self.db.close()


class TantivyBackend:
    """The alternative we measured: BM25 with block-max WAND in Rust; one writer per process (a lock file)."""

    name = "tantivy"

    def __init__(self, folder: Path) -> None:
        import tantivy

        self.t = tantivy
        self.folder = folder / "tantivy"
        self.folder.mkdir(parents=True, exist_ok=True)
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("tokens", stored=True, tokenizer_name="whitespace", index_option="freq")
        builder.add_text_field("chunk_id", stored=True, tokenizer_name="raw")
        builder.add_text_field("doc_id", stored=True, tokenizer_name="raw")
        builder.add_unsigned_field("row", stored=True, indexed=True, fast=True)
        self.schema = builder.build()
        self.index = tantivy.Index(self.schema, path=str(self.folder))
        self.next_row = 1

    def apply(self, add: list[IndexedDoc], remove: Iterable[str] = ()) -> None:
        writer = self.index.writer(heap_size=64_000_000, num_threads=1)
        for doc_id in [*remove, *(d.doc_id for d in add)]:
            writer.delete_documents_by_term("doc_id", doc_id)
        for doc in add:
            for chunk in sorted(doc.chunks, key=lambda c: c.chunk_index):
                item = self.t.Document()
                item.add_text("tokens", " ".join(split_tokens(chunk.tokens)))
                item.add_text("chunk_id", chunk.chunk_id)
                item.add_text("doc_id", doc.doc_id)
                item.add_unsigned("row", self.next_row)
                self.next_row += 1
                writer.add_document(item)
            self.next_row += 1  # a gap: the first chunk of the next document has no predecessor
        writer.commit()
        writer.wait_merging_threads()
        self.index.reload()

    def search(self, tokens: list[str], limit: int) -> list[tuple[str, float]]:
        terms = list(dict.fromkeys(split_tokens(tokens)))
        if not terms:
            return []
        should = self.t.Occur.Should
        query = self.t.Query.boolean_query(
            [(should, self.t.Query.term_query(self.schema, "tokens", t, index_option="freq")) for t in terms]
        )
        searcher = self.index.searcher()
        hits = searcher.search(query, max(100, 5 * limit), count=False).hits
        own: dict[int, tuple[str, float]] = {}
        for score, address in hits:
            stored = searcher.doc(address)
            own[stored["row"][0]] = (stored["chunk_id"][0], score)
        wanted = [row + 1 for row in own if row + 1 not in own]
        successors = {}
        if wanted:
            found = searcher.search(self.t.Query.term_set_query(self.schema, "row", wanted), len(wanted))
            for _, address in found.hits:
                stored = searcher.doc(address)
                successors[stored["row"][0]] = stored["chunk_id"][0]
        return _smooth_top(own, successors, limit)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------------- measurements
def build(backend, corpus: Corpus, first: int, last: int) -> float:
    started = time.perf_counter()
    for start in range(first, last, BUILD_BATCH_DOCS):
        backend.apply([corpus.doc(n) for n in range(start, min(last, start + BUILD_BATCH_DOCS))])
    return time.perf_counter() - started


def updates(backend, corpus: Corpus, n_docs: int) -> dict[str, float]:
    """Add N_UPDATES new 50-chunk documents one apply each, then remove them one apply each."""
    new = [corpus.doc(n) for n in range(n_docs + 10_000_000, n_docs + 10_000_000 + N_UPDATES)]
    add, remove = [], []
    for doc in new:
        t = time.perf_counter()
        backend.apply([doc])
        add.append(time.perf_counter() - t)
    for doc in new:
        t = time.perf_counter()
        backend.apply([], [doc.doc_id])
        remove.append(time.perf_counter() - t)
    return {
        "add_median_s": statistics.median(add),
        "add_max_s": max(add),
        "remove_median_s": statistics.median(remove),
        "remove_max_s": max(remove),
    }


def time_queries(backends: list, queries: dict[str, list[list[str]]]) -> dict[str, dict[str, Any]]:
    """Interleaved: each query runs on every backend before the next query, so load spikes hit all alike."""
    out: dict[str, dict[str, Any]] = {b.name: {} for b in backends}
    for lang, items in queries.items():
        for tokens in items[:WARMUP]:
            for b in backends:
                b.search(tokens, LIMIT)
        times: dict[str, list[float]] = {b.name: [] for b in backends}
        for tokens in items:
            for b in backends:
                t = time.perf_counter()
                b.search(tokens, LIMIT)
                times[b.name].append(time.perf_counter() - t)
        for name, values in times.items():
            out[name][lang] = {
                "p50_ms": 1e3 * float(np.percentile(values, 50)),
                "p95_ms": 1e3 * float(np.percentile(values, 95)),
                "mean_tokens": float(np.mean([len(q) for q in items])),
            }
    return out


def bm25s_agreement(corpus: Corpus, n_docs: int, index: KeywordIndex, queries: dict[str, list[list[str]]]) -> dict:
    """Top 20 of bm25s (the previous index's library, same smoothing as its search) against ours."""
    try:
        import bm25s
    except ImportError:
        return {}
    ids, corpus_tokens, previous = [], [], []
    for n in range(n_docs):
        for i, chunk in enumerate(corpus.doc(n).chunks):
            ids.append(chunk.chunk_id)
            corpus_tokens.append(split_tokens(chunk.tokens))
            previous.append(len(ids) - 2 if i > 0 else -1)
    model = bm25s.BM25()  # method "lucene", k1 1.5, b 0.75
    model.index(corpus_tokens, show_progress=False)
    del corpus_tokens
    previous_arr = np.asarray(previous)
    out = {}
    for lang, items in queries.items():
        same, overlap = 0, []
        for tokens in items:
            known = [t for t in tokens if t in model.vocab_dict]
            if not known:
                continue
            own = model.get_scores(known)
            scores = own + NEIGHBOUR_SHARE * np.where(previous_arr >= 0, own[np.maximum(previous_arr, 0)], 0.0)
            top = np.argsort(-scores, kind="stable")[:LIMIT]
            want = [ids[i] for i in top if scores[i] > 0]
            got = [cid for cid, _ in index.search(tokens, LIMIT)]
            same += got == want
            overlap.append(len(set(got) & set(want)) / max(1, len(want)))
        out[lang] = {"identical_top20": same / max(1, len(overlap)), "overlap_top20": float(np.mean(overlap))}
    return out


def child_rss(backend_name: str, folder: Path, queries_file: Path) -> dict[str, float]:
    """A fresh process opens the index and runs every query: its RSS is what a query process pays."""
    command = [PY, __file__, "--child", backend_name, str(folder), str(queries_file)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_child(backend_name: str, folder: Path, queries_file: Path) -> None:
    import psutil

    queries = json.loads(queries_file.read_text())
    backend = make_backend(backend_name, folder)
    times = []
    for tokens in queries["english"] + queries["chinese"]:
        t = time.perf_counter()
        backend.search(tokens, LIMIT)
        times.append(time.perf_counter() - t)
    rss = psutil.Process().memory_info().rss
    # VmHWM, not getrusage: ru_maxrss survives exec and would report the parent's peak
    status = Path("/proc/self/status").read_text() if Path("/proc/self/status").exists() else ""
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    peak = int(found.group(1)) * 1024 if found else rss
    cold_p50_ms = 1e3 * statistics.median(times)
    print(json.dumps({"rss_mb": rss / 2**20, "peak_rss_mb": peak / 2**20, "cold_p50_ms": cold_p50_ms}))


BACKENDS = {b.name: b for b in (PostingsBackend, Fts5Backend, TantivyBackend)}


def make_backend(name: str, folder: Path):
    return BACKENDS[name](folder)


def rebuild(backend, corpus: Corpus, n_docs: int) -> dict[str, float]:
    """A tokenizer change: every chunk text is re-tokenised with keyword_tokens and the index refilled."""
    tokenise = [0.0]

    def fetch(pairs: list[tuple[str, str]]) -> list[IndexedDoc]:
        t = time.perf_counter()
        docs = [corpus.doc(int(doc_id[3:]), real_tokens=True) for doc_id, _ in pairs]
        tokenise[0] += time.perf_counter() - t
        return docs

    ledger = {f"doc{n:07d}": f"h{n}" for n in range(n_docs)}
    started = time.perf_counter()
    if isinstance(backend, PostingsBackend):
        with backend.index._write() as conn:
            conn.execute("UPDATE meta SET value = 'bench-old' WHERE key = 'tokenizer'")
        report = sync_index(backend.index, ledger, fetch)
        assert report.rebuilt and backend.index.tokenizer_version == TOKENIZER_VERSION
    else:
        if isinstance(backend, TantivyBackend):
            writer = backend.index.writer(heap_size=64_000_000, num_threads=1)
            writer.delete_all_documents()
            writer.commit()
            writer.wait_merging_threads()
        else:
            backend.db.execute("DELETE FROM chunks")
            backend.db.execute("DELETE FROM fts")
        for start in range(0, n_docs, BUILD_BATCH_DOCS):
            backend.apply(fetch([(d, "") for d in list(ledger)[start : start + BUILD_BATCH_DOCS]]))
    total = time.perf_counter() - started
    return {"rebuild_s": total, "tokenise_s": tokenise[0], "insert_s": total - tokenise[0], "docs": n_docs}


# --------------------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("quick", "small", "full"), default="quick", help="small = quick")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--rebuild-max", type=int, default=None, help="largest size to rebuild for real (chunks)")
    parser.add_argument("--alternatives-all", action="store_true", help="run FTS5 and tantivy at every size too")
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temporary folder)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return 0
    scale = "quick" if args.scale == "small" else args.scale
    results: dict[str, Any] = header(NAME, args) | {"sizes": {}}
    sizes = SIZES[scale]
    rebuild_max = args.rebuild_max if args.rebuild_max is not None else sizes[-1]
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="keyword-bench-"))
    corpus = Corpus()
    backends = [PostingsBackend(workdir), Fts5Backend(workdir)]
    try:
        backends.append(TantivyBackend(workdir))
    except ImportError:  # tantivy is not a dependency: `pip install tantivy` to include it
        print("# tantivy is not installed: compared with FTS5 only\n")
    built_docs = 0
    try:
        for size in sizes:
            n_docs = size // CHUNKS_PER_DOC
            active = backends if (size == sizes[0] or args.alternatives_all) else backends[:1]
            row: dict[str, Any] = {}
            for b in active:
                row[b.name] = {"build_s": build(b, corpus, built_docs, n_docs), "built_from": built_docs * 50}
            built_docs = n_docs
            for b in active:
                row[b.name] |= updates(b, corpus, n_docs)
            queries = corpus.queries(n_docs, N_QUERIES)
            timing = time_queries(active, queries)
            queries_file = workdir / f"queries-{size}.json"
            queries_file.write_text(json.dumps(queries, ensure_ascii=False))
            for b in active:
                row[b.name] |= {"queries": timing[b.name], "disk_mb": b.size_bytes() / 2**20}
                row[b.name] |= child_rss(b.name, workdir, queries_file)
            if size == sizes[0]:
                row[PostingsBackend.name]["bm25s"] = bm25s_agreement(corpus, n_docs, backends[0].index, queries)
            results["sizes"][size] = row
            print_size(size, row)
            if size <= rebuild_max:
                for b in active:
                    row[b.name]["rebuild"] = rebuild(b, corpus, n_docs)
                    print_rebuild(b.name, row[b.name]["rebuild"])
        print_summary(results, sizes, rebuild_max)
    finally:
        for b in backends:
            b.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    write_results(NAME, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


def print_size(size: int, row: dict[str, Any]) -> None:
    print(f"## {size:,} chunks")
    for name, r in row.items():
        q = r["queries"]
        print(
            f"  {name:12s} build {r['build_s']:7.1f} s ({(size - r['built_from']) / r['build_s']:6.0f} chunks/s)"
            f" | add 50-chunk doc {1e3 * r['add_median_s']:6.0f} ms (worst {1e3 * r['add_max_s']:5.0f})"
            f" | remove {1e3 * r['remove_median_s']:5.0f} ms (worst {1e3 * r['remove_max_s']:5.0f})"
        )
        print(
            f"  {'':12s} query p50/p95 ms: English {q['english']['p50_ms']:6.2f} / {q['english']['p95_ms']:6.2f}"
            f" ({q['english']['mean_tokens']:.1f} tokens), Chinese {q['chinese']['p50_ms']:6.2f} /"
            f" {q['chinese']['p95_ms']:6.2f} ({q['chinese']['mean_tokens']:.1f} tokens)"
        )
        print(
            f"  {'':12s} query process RSS {r['rss_mb']:6.0f} MB (peak {r['peak_rss_mb']:.0f}),"
            f" disk {r['disk_mb']:7.0f} MB"
        )
        if r.get("bm25s"):
            e = r["bm25s"]
            print(
                f"  {'':12s} same top 20 as bm25s (previous index): English {e['english']['identical_top20']:.0%}"
                f" (overlap {e['english']['overlap_top20']:.3f}), Chinese {e['chinese']['identical_top20']:.0%}"
                f" (overlap {e['chinese']['overlap_top20']:.3f})"
            )


def print_rebuild(name: str, r: dict[str, float]) -> None:
    print(
        f"  {name:12s} rebuild after a tokenizer change: {r['rebuild_s']:.1f} s"
        f" (keyword_tokens {r['tokenise_s']:.1f} s + index {r['insert_s']:.1f} s, {r['docs']:,} documents)"
    )


def print_summary(results: dict[str, Any], sizes: list[int], rebuild_max: int) -> None:
    small, large = (results["sizes"][s][PostingsBackend.name] for s in sizes)
    print(f"\n## Summary (postings, the app's index; targets at {sizes[-1]:,} chunks)")
    print(
        f"  add a 50-chunk document: {1e3 * large['add_median_s']:.0f} ms median, {1e3 * large['add_max_s']:.0f} ms"
        f" worst (target <= 1000); {sizes[-1] // sizes[0]}x the chunks -> "
        f"{large['add_median_s'] / small['add_median_s']:.2f}x the time"
    )
    for lang in ("english", "chinese"):
        print(f"  {lang} query p50: {large['queries'][lang]['p50_ms']:.1f} ms (target <= 20)")
    print(f"  query-process RSS: {large['rss_mb']:.0f} MB (target <= 2048)")
    if "rebuild" in large:
        print(f"  rebuild after a tokenizer change at {sizes[-1]:,}: {large['rebuild']['rebuild_s']:.0f} s (measured)")
    elif "rebuild" in small:
        factor = sizes[-1] / sizes[0]
        print(
            f"  rebuild after a tokenizer change at {sizes[-1]:,}: about {small['rebuild']['rebuild_s'] * factor:.0f} s"
            f" (EXTRAPOLATED linearly from {small['rebuild']['rebuild_s']:.0f} s measured at {sizes[0]:,}; "
            f"not measured: --rebuild-max {rebuild_max})"
        )
    first = results["sizes"][sizes[0]]
    ours = first[PostingsBackend.name]
    for other in (Fts5Backend.name, TantivyBackend.name):
        if other not in first:
            continue
        alt = first[other]
        print(f"\n## postings / {other} at {sizes[0]:,} chunks (ratio > 1: postings slower or bigger)")
        for label, key in (("add", "add_median_s"), ("remove", "remove_median_s"), ("build", "build_s")):
            print(f"  {label:8s} {ours[key] / alt[key]:6.2f}x")
        for lang in ("english", "chinese"):
            print(f"  {lang:8s} {ours['queries'][lang]['p50_ms'] / alt['queries'][lang]['p50_ms']:6.2f}x query p50")
        print(f"  rss      {ours['rss_mb'] / alt['rss_mb']:6.2f}x   disk {ours['disk_mb'] / alt['disk_mb']:6.2f}x")
        if "rebuild" in ours and "rebuild" in alt:
            print(f"  rebuild  {ours['rebuild']['rebuild_s'] / alt['rebuild']['rebuild_s']:6.2f}x")


if __name__ == "__main__":
    sys.exit(main())
