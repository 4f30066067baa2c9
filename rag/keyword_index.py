"""BM25 keyword index: postings in an SQLite file beside the store, updated one document at a time.

The index is a per-machine cache derived from Chroma (Chroma's local mode refuses sparse indexes), so it can always
be rebuilt from the store: ``sync_index`` compares the committed ledger with ``KeywordIndex.documents()`` and
touches only documents that were added, changed or removed.

Layout: every chunk gets a row number; a document's chunks get consecutive rows in chunk order, with one unused row
before each document, so "the previous chunk of the same document" is always ``row - 1`` (or an empty row).
Postings are (row offset, term frequency, chunk length) records of 6 bytes, one blob per range of 65,536 rows and
term, keyed range first. New rows are always above the old ones, so adding documents appends only to the newest range,
whose pages stay together and in cache; removing a document rewrites only the ranges that hold its rows. The work per
document does not depend on the collection's size, and nothing per chunk is kept in memory between queries.

A query reads the postings of its terms and scores them with numpy: exact BM25 (bm25s's "lucene" variant, what the
previous index computed: k1 1.5, b 0.75, idf ln(1 + (N - df + 0.5) / (df + 0.5))), plus NEIGHBOUR_SHARE of the
previous chunk's score. We measured SQLite FTS5 first: its ``bm25()`` ranks every matching row at ~2 us a row, and
pruning to the rarest terms to stay under 20 ms at 1M chunks kept only 20-60% of the true top 20
(``bench/keyword_bench.py``).

Concurrency: several processes open the same file. SQLite's WAL lets searches read a consistent snapshot while one
writer commits; writers take the write lock up front (``BEGIN IMMEDIATE``) and wait for each other (busy timeout).
Every change is one transaction, so a kill -9 leaves the previous state.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import numpy as np

from rag.errors import StoreError
from rag.tokenize import TOKENIZER_VERSION

# Share of the previous chunk's score a chunk inherits. A list or table often follows the sentence that names its
# topic ("the architecture has four parts:"); when a chunk boundary falls between them, the answer chunk alone
# shares no words with the question. Measured on the Chinese dev set: hit@3 0.87 -> 1.00 at 0.2, lower above 0.5.
NEIGHBOUR_SHARE = 0.2
K1 = 1.5
B = 0.75
SCHEMA_VERSION = "1"
BUSY_TIMEOUT_S = 120.0  # a writer waits this long for another writer's transaction (a sync batch takes seconds)
# Postings are stored per range of 65,536 rows and term. Larger ranges mean fewer lookups per query term (16 at 1M
# chunks; most are misses for rare words) but larger blobs rewritten when a document is added (at most 384 KB per
# term). At most 16: a posting stores its row as a 16-bit offset in its range.
PART_BITS = 16
# A posting: the row's offset in its range (the range's first row is part << PART_BITS), term frequency, chunk length.
POSTING = np.dtype([("offset", "<u2"), ("tf", "<u2"), ("dl", "<u2")])
MAX_IDLE_CONNECTIONS = 4
SQL_BATCH = 400  # parameters per IN (...) list (two lists stay under the old limit of 999)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats(id INTEGER PRIMARY KEY CHECK (id = 0), n_chunks INTEGER NOT NULL,
    n_tokens INTEGER NOT NULL);
INSERT OR IGNORE INTO stats VALUES (0, 0, 0);
CREATE TABLE IF NOT EXISTS docs(doc_no INTEGER PRIMARY KEY, doc_id TEXT NOT NULL UNIQUE, doc_hash TEXT NOT NULL,
    first_row INTEGER NOT NULL, n_rows INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(row INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE, tokens TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS free(first_row INTEGER PRIMARY KEY, n_rows INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS free_by_size ON free(n_rows);
CREATE TABLE IF NOT EXISTS postings(part INTEGER NOT NULL, term TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (part, term)) WITHOUT ROWID;
"""
_TABLES = ("meta", "stats", "docs", "chunks", "free", "postings")


@dataclass(frozen=True)
class IndexedChunk:
    chunk_id: str
    chunk_index: int
    tokens: list[str]


@dataclass(frozen=True)
class IndexedDoc:
    doc_id: str
    doc_hash: str
    chunks: list[IndexedChunk]


@dataclass
class SyncReport:
    added: int
    removed: int
    rebuilt: bool
    seconds: float


def split_tokens(tokens: Iterable[str]) -> list[str]:
    """Tokens as stored: a token never holds whitespace (rows are stored as space-joined text)."""
    return " ".join(tokens).split()


def _query_weights(tokens: list[str] | Mapping[str, float]) -> Mapping[str, float]:
    if isinstance(tokens, Mapping):
        return {t: float(w) for t, w in tokens.items() if w > 0 and t and not t.isspace() and " " not in t}
    return Counter(split_tokens(tokens))


def _chunks_of(items: list, size: int = SQL_BATCH) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _in_parts_and_terms(n_parts: int, n_terms: int) -> str:
    """A condition SQLite answers with one primary-key lookup per (part, term) pair."""
    return f"part IN ({_marks(n_parts)}) AND term IN ({_marks(n_terms)})"


class KeywordIndex:
    """One SQLite file; each thread of a process gets its own connection (SQLite connections are not shared)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: Path) -> KeywordIndex:
        """Open (creating the file and its folders if missing); an index of another schema is emptied."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the keyword index folder {path.parent}: {exc.strerror}") from exc
        index = cls(path)
        index._create_schema()
        return index

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A pooled connection: threads come and go (Streamlit runs each rerun in a new one), connections stay few."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        conn = conn or self._connect()
        try:
            yield conn
        finally:
            with self._lock:
                keep = not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
            conn.execute("PRAGMA synchronous=NORMAL")  # a crash can lose the last commit, never consistency
            conn.execute("PRAGMA cache_size=-64000")  # 64 MB: the blobs of common words stay in memory
            # Some builds (Debian's) zero every freed page: that doubles the writes of a blob rewrite. FAST zeroes
            # deleted content only where it costs no extra I/O.
            conn.execute("PRAGMA secure_delete=FAST")
            conn.execute("PRAGMA journal_size_limit=67108864")  # a rebuild batch must not leave a 100 MB WAL
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from exc
        return conn

    def _unusable(self, exc: Exception) -> StoreError:
        return StoreError(
            f"keyword index {self.path} cannot be used ({exc}): delete that file, it is rebuilt from the store"
        )

    def _create_schema(self) -> None:
        with self._read() as conn:  # the usual case needs no write lock (a long sync batch may hold it)
            if self._schema_ok(conn):
                return
        with self._write() as conn:
            if self._schema_ok(conn):
                return
            for table in _TABLES:  # a cache of another layout: start empty, sync refills it
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in _SCHEMA.split(";\n"):  # not executescript: it would commit our transaction
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))

    @staticmethod
    def _schema_ok(conn: sqlite3.Connection) -> bool:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
            return False
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        return row is not None and row[0] == SCHEMA_VERSION

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the lock is taken at BEGIN so that what we read inside cannot change."""
        with self._connection() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError(
                    f"keyword index {self.path} stayed locked by another writer for {BUSY_TIMEOUT_S:.0f} s ({exc}); "
                    "try again when the other ingest has finished"
                ) from exc
            except sqlite3.DatabaseError as exc:
                raise self._unusable(exc) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # disk full, I/O error: nothing was written
                conn.execute("ROLLBACK")
                raise StoreError(f"cannot write the keyword index {self.path}: {exc}") from exc
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed snapshot."""
        with self._connection() as conn:
            try:
                conn.execute("BEGIN")
            except sqlite3.DatabaseError as exc:
                raise self._unusable(exc) from exc
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def close(self) -> None:
        """Close idle connections now and the others when their operation ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # ------------------------------------------------------------------ state
    @property
    def tokenizer_version(self) -> str | None:
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'tokenizer'").fetchone()
        return row[0] if row else None

    def documents(self) -> dict[str, str]:
        """doc_id -> doc_hash of every indexed document."""
        with self._read() as conn:
            return dict(conn.execute("SELECT doc_id, doc_hash FROM docs"))

    def n_chunks(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT n_chunks FROM stats").fetchone()[0])

    def tokens_of(self, chunk_ids: list[str]) -> dict[str, list[str]]:
        """Stored tokens of these chunks (ids not indexed are left out)."""
        out: dict[str, list[str]] = {}
        with self._read() as conn:
            for part in _chunks_of(list(dict.fromkeys(chunk_ids))):
                sql = f"SELECT chunk_id, tokens FROM chunks WHERE chunk_id IN ({_marks(len(part))})"
                out.update((cid, text.split()) for cid, text in conn.execute(sql, part))
        return out

    # ------------------------------------------------------------------ changes
    def apply(self, add: list[IndexedDoc], remove: Iterable[str] = ()) -> None:
        """In one transaction: each doc in ``add`` replaces whatever rows its doc_id had; ``remove`` disappear."""
        self._apply(add, remove, expect=None)

    def reset(self, tokenizer_version: str | None) -> bool:
        """Empty the index and record the tokenizer its next rows are made with; False if another process already
        did (the version was already stored), so two processes that both see an old version clear it only once."""
        with self._write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'tokenizer'").fetchone()
            if row is not None and row[0] == tokenizer_version:
                return False
            for table in ("chunks", "docs", "free", "postings"):
                conn.execute(f"DELETE FROM {table}")
            conn.execute("UPDATE stats SET n_chunks = 0, n_tokens = 0")
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('tokenizer', ?)", (tokenizer_version,))
        return True

    def _apply(
        self, add: list[IndexedDoc], remove: Iterable[str], expect: Mapping[str, str | None] | None
    ) -> tuple[int, int]:
        """Apply; with ``expect`` (doc_id -> hash the caller saw indexed, None if absent), skip every doc whose
        indexed hash has changed since: another process got there first (the same diff, or a newer one)."""
        added = removed = 0
        new_rows: list[tuple[int, list[str]]] = []  # postings are written once for the whole batch, at the end
        with self._write() as conn:
            stats = [0, 0]  # chunks, tokens
            for doc_id in remove:
                if expect is not None and self._hash_of(conn, doc_id) != expect.get(doc_id):
                    continue
                removed += self._delete_doc(conn, doc_id, stats)
            for doc in {d.doc_id: d for d in add}.values():  # a doc listed twice: the last one wins
                if expect is not None and self._hash_of(conn, doc.doc_id) != expect.get(doc.doc_id):
                    continue
                self._delete_doc(conn, doc.doc_id, stats)
                new_rows += self._insert_doc(conn, doc, stats)
                added += 1
            conn.executemany(  # || joins as text; the cast keeps the bytes and the BLOB type
                "INSERT INTO postings VALUES (?, ?, ?) "
                "ON CONFLICT(part, term) DO UPDATE SET data = CAST(data || excluded.data AS BLOB)",
                _posting_blobs(new_rows),
            )
            conn.execute("UPDATE stats SET n_chunks = n_chunks + ?, n_tokens = n_tokens + ?", stats)
        return added, removed

    @staticmethod
    def _hash_of(conn: sqlite3.Connection, doc_id: str) -> str | None:
        row = conn.execute("SELECT doc_hash FROM docs WHERE doc_id = ?", (doc_id,)).fetchone()
        return row[0] if row else None

    @staticmethod
    def _delete_doc(conn: sqlite3.Connection, doc_id: str, stats: list[int]) -> int:
        found = conn.execute("SELECT doc_no, first_row, n_rows FROM docs WHERE doc_id = ?", (doc_id,)).fetchone()
        if found is None:
            return 0
        doc_no, first, n_rows = found
        last = first + n_rows - 1
        terms: set[str] = set()
        for (text,) in conn.execute("SELECT tokens FROM chunks WHERE row BETWEEN ? AND ?", (first, last)):
            words = text.split()
            terms.update(words)
            stats[0] -= 1
            stats[1] -= len(words)
        updates, deletes = [], []
        parts = list(range(first >> PART_BITS, (last >> PART_BITS) + 1))
        for batch in _chunks_of(sorted(terms), max(1, SQL_BATCH - len(parts))):
            sql = "SELECT term, part, data FROM postings WHERE " + _in_parts_and_terms(len(parts), len(batch))
            for term, part_no, data in conn.execute(sql, [*parts, *batch]):
                postings = np.frombuffer(data, dtype=POSTING)
                rows = postings["offset"].astype(np.int64) + (part_no << PART_BITS)
                kept = postings[(rows < first) | (rows > last)]
                if len(kept) == len(postings):
                    continue
                if len(kept):
                    updates.append((kept.tobytes(), term, part_no))
                else:
                    deletes.append((term, part_no))
        conn.executemany("UPDATE postings SET data = ? WHERE term = ? AND part = ?", updates)
        conn.executemany("DELETE FROM postings WHERE term = ? AND part = ?", deletes)
        conn.execute("DELETE FROM chunks WHERE row BETWEEN ? AND ?", (first, last))
        conn.execute("DELETE FROM docs WHERE doc_no = ?", (doc_no,))
        KeywordIndex._release(conn, first - 1, n_rows + 1)  # with the empty row before it
        return 1

    @staticmethod
    def _release(conn: sqlite3.Connection, start: int, length: int) -> None:
        """Record rows as free, merged with free neighbours, so that re-ingesting keeps row numbers compact."""
        before = conn.execute(
            "SELECT first_row, n_rows FROM free WHERE first_row < ? ORDER BY first_row DESC LIMIT 1", (start,)
        ).fetchone()
        if before is not None and before[0] + before[1] == start:
            conn.execute("DELETE FROM free WHERE first_row = ?", (before[0],))
            start, length = before[0], before[1] + length
        after = conn.execute("SELECT n_rows FROM free WHERE first_row = ?", (start + length,)).fetchone()
        if after is not None:
            conn.execute("DELETE FROM free WHERE first_row = ?", (start + length,))
            length += after[0]
        conn.execute("INSERT INTO free VALUES (?, ?)", (start, length))

    @staticmethod
    def _allocate(conn: sqlite3.Connection, length: int) -> int:
        """First of ``length`` consecutive unused rows: the smallest free range that fits, else above every row."""
        top = conn.execute("SELECT coalesce(max(row), 0) + 1 FROM chunks").fetchone()[0]
        conn.execute("DELETE FROM free WHERE first_row >= ?", (top,))  # freed at the end: the top covers them
        found = conn.execute(
            "SELECT first_row, n_rows FROM free WHERE n_rows >= ? ORDER BY n_rows, first_row LIMIT 1", (length,)
        ).fetchone()
        if found is None:
            return top
        conn.execute("DELETE FROM free WHERE first_row = ?", (found[0],))
        if found[1] > length:
            conn.execute("INSERT INTO free VALUES (?, ?)", (found[0] + length, found[1] - length))
        return found[0]

    @staticmethod
    def _insert_doc(conn: sqlite3.Connection, doc: IndexedDoc, stats: list[int]) -> list[tuple[int, list[str]]]:
        """Write the doc's record and chunks; return (row, tokens) per chunk for its postings."""
        chunks = sorted(doc.chunks, key=lambda c: c.chunk_index)
        # Consecutive rows after one empty row: the row before a chunk is its document's previous chunk or empty.
        first = KeywordIndex._allocate(conn, len(chunks) + 1) + 1
        conn.execute(
            "INSERT INTO docs(doc_id, doc_hash, first_row, n_rows) VALUES (?, ?, ?, ?)",
            (doc.doc_id, doc.doc_hash, first, len(chunks)),
        )
        out = [(row, split_tokens(chunk.tokens)) for row, chunk in enumerate(chunks, start=first)]
        conn.executemany(
            "INSERT INTO chunks VALUES (?, ?, ?)",
            [(row, chunk.chunk_id, " ".join(words)) for (row, words), chunk in zip(out, chunks, strict=True)],
        )
        stats[0] += len(out)
        stats[1] += sum(len(words) for _, words in out)
        return out

    # ------------------------------------------------------------------ search
    def idf(self, tokens: list[str] | Mapping[str, float]) -> dict[str, float]:
        """BM25's idf of each distinct token that some chunk holds, repeated tokens counted again (as in
        ``search``). The sum bounds a chunk's own BM25 score (the inherited share can add NEIGHBOUR_SHARE of a
        neighbour's), so search scores divided by it read as 0..1 keyword relevance. Tokens no chunk holds are left
        out: they cannot tell chunks apart, and a question's own wording ("say", "describe") would otherwise weigh
        most. Costs index lookups only, no postings are read. ``tokens`` may map tokens to weights (a translated
        question's: rag/dictionary.py)."""
        weights = _query_weights(tokens)
        if not weights:
            return {}
        with self._read() as conn:
            n_chunks = int(conn.execute("SELECT n_chunks FROM stats").fetchone()[0])
            top_row = conn.execute("SELECT max(row) FROM chunks").fetchone()[0]
            df = self._document_frequencies(conn, list(weights), int(top_row) >> PART_BITS) if top_row else {}
        return {
            term: count * float(np.log(1 + (n_chunks - df[term] + 0.5) / (df[term] + 0.5)))
            for term, count in weights.items()
            if df.get(term)
        }

    def max_idf(self) -> float:
        """The idf a token no chunk holds would have."""
        n_chunks = self.n_chunks()
        return float(np.log(1 + (n_chunks + 0.5) / 0.5))

    def search(self, tokens: list[str] | Mapping[str, float], limit: int) -> list[tuple[str, float]]:
        """(chunk_id, score) best first, score > 0: BM25 plus NEIGHBOUR_SHARE of the previous chunk's BM25.
        ``tokens`` may map tokens to query weights instead of listing them (a repeated token counts again)."""
        weights = _query_weights(tokens)
        if not weights or limit <= 0:
            return []
        with self._read() as conn:
            n_chunks, n_tokens = conn.execute("SELECT n_chunks, n_tokens FROM stats").fetchone()
            if n_chunks <= 0:
                return []
            top_row = int(conn.execute("SELECT max(row) FROM chunks").fetchone()[0])
            postings = self._postings(conn, list(weights), top_row >> PART_BITS)
            if not postings:
                return []
            rows, scores = _top_smoothed(_bm25(postings, weights, n_chunks, n_tokens / n_chunks, top_row + 2), limit)
            names = self._chunk_ids(conn, rows.tolist())
        found = [(names[r], s) for r, s in zip(rows.tolist(), scores.tolist(), strict=True) if r in names]
        return found[:limit]

    @staticmethod
    def _postings(conn: sqlite3.Connection, terms: list[str], last_part: int) -> dict[str, _Postings]:
        """Every posting of these terms: one primary-key lookup per (range, term)."""
        blobs: defaultdict[str, list[tuple[int, bytes]]] = defaultdict(list)
        for parts in _chunks_of(list(range(last_part + 1))):
            for batch in _chunks_of(terms):
                sql = "SELECT term, part, data FROM postings WHERE " + _in_parts_and_terms(len(parts), len(batch))
                for term, part, data in conn.execute(sql, [*parts, *batch]):
                    blobs[term].append((part, data))
        return {term: _Postings.join(found) for term, found in blobs.items()}

    @staticmethod
    def _document_frequencies(conn: sqlite3.Connection, terms: list[str], last_part: int) -> dict[str, int]:
        """Chunks holding each term, from the blobs' sizes: SQLite reads length() without the blob's pages."""
        out: Counter[str] = Counter()
        for parts in _chunks_of(list(range(last_part + 1))):
            for batch in _chunks_of(terms):
                sql = "SELECT term, length(data) FROM postings WHERE " + _in_parts_and_terms(len(parts), len(batch))
                for term, size in conn.execute(sql, [*parts, *batch]):
                    out[term] += size // POSTING.itemsize
        return dict(out)

    @staticmethod
    def _chunk_ids(conn: sqlite3.Connection, rows: list[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        for part in _chunks_of(rows):
            out.update(conn.execute(f"SELECT row, chunk_id FROM chunks WHERE row IN ({_marks(len(part))})", part))
        return out


@dataclass
class _Postings:
    """One term's postings, decoded: rows (absolute), term frequencies, chunk lengths."""

    rows: np.ndarray
    tf: np.ndarray
    dl: np.ndarray

    @classmethod
    def join(cls, blobs: list[tuple[int, bytes]]) -> _Postings:
        """From (range, blob) pairs."""
        postings = np.frombuffer(b"".join(data for _, data in blobs), dtype=POSTING)
        sizes = [len(data) // POSTING.itemsize for _, data in blobs]
        starts = np.repeat(np.array([part << PART_BITS for part, _ in blobs], dtype=np.int64), sizes)
        return cls(postings["offset"] + starts, postings["tf"], postings["dl"])


def _posting_blobs(new_rows: list[tuple[int, list[str]]]) -> list[tuple[int, str, bytes]]:
    """(range, term, postings) for these rows, in key order, built with numpy: a rebuild writes 10^8 postings."""
    if not new_rows:
        return []
    tokens = list(chain.from_iterable(words for _, words in new_rows))
    terms = list(dict.fromkeys(tokens))
    index = {term: i for i, term in enumerate(terms)}
    term_ids = np.fromiter(map(index.__getitem__, tokens), dtype=np.int64, count=len(tokens))
    lengths = np.fromiter((len(words) for _, words in new_rows), dtype=np.int64, count=len(new_rows))
    rows = np.fromiter((row for row, _ in new_rows), dtype=np.int64, count=len(new_rows))
    base, stride = rows.min(), rows.max() - rows.min() + 1
    # one key per (term, row): its count is the term frequency
    pairs = term_ids * stride + np.repeat(rows - base, lengths)
    keys, first, tf = np.unique(pairs, return_index=True, return_counts=True)
    term_of, row_of = keys // stride, keys % stride + base
    rank = np.empty(len(terms), dtype=np.int64)
    rank[sorted(range(len(terms)), key=terms.__getitem__)] = np.arange(len(terms))
    part_of = row_of >> PART_BITS
    order = np.lexsort((row_of, rank[term_of], part_of))
    postings = np.empty(len(order), dtype=POSTING)
    postings["offset"] = row_of[order] & ((1 << PART_BITS) - 1)
    postings["tf"] = np.minimum(tf[order], 65535)
    postings["dl"] = np.minimum(np.repeat(lengths, lengths)[first[order]], 65535)
    part_of, term_of = part_of[order], term_of[order]
    starts = np.flatnonzero(np.r_[True, (np.diff(part_of) != 0) | (np.diff(term_of) != 0)])
    ends = np.r_[starts[1:], len(order)]
    data, size = postings.tobytes(), POSTING.itemsize
    return [
        (part, terms[term], data[i * size : j * size])
        for part, term, i, j in zip(
            part_of[starts].tolist(), term_of[starts].tolist(), starts.tolist(), ends.tolist(), strict=True
        )
    ]


def _bm25(
    postings: dict[str, _Postings], weights: Mapping[str, float], n_chunks: int, avg_tokens: float, size: int
) -> np.ndarray:
    """Scores of every row (dense, indexed by row): bm25s's "lucene" BM25, a repeated query term counting again.

    float32 like bm25s, in place, added term by term (a term's postings hold each row once): at 1M chunks a query
    of common words holds ~10^6 postings."""
    own = np.zeros(size, dtype=np.float32)
    k_length = np.float32(K1 * B / max(avg_tokens, 1e-9))
    k_base = np.float32(K1 * (1 - B))
    for term, found in postings.items():
        df = len(found.rows)
        weight = np.float32(weights[term] * np.log(1 + (n_chunks - df + 0.5) / (df + 0.5)))
        tf = found.tf.astype(np.float32)
        norm = found.dl.astype(np.float32)
        norm *= k_length
        norm += k_base
        norm += tf
        np.divide(tf, norm, out=tf)
        tf *= weight
        own[found.rows] += tf
    return own


def _top_positive(own: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` best positive scores (any order; fewer if fewer score). A threshold taken from every 32nd
    row usually leaves a few hundred rows to rank, instead of every row that scores (most of them, for a common
    word); if it leaves fewer than ``k``, all scoring rows are ranked."""
    step, m = 32, 2 * k // 32  # the m-th best of the sample: about 2k rows are above it
    if m >= 1 and len(own) >= 64 * k:
        sample = own[::step]
        threshold = np.partition(sample, len(sample) - m)[len(sample) - m]
        if threshold > 0:
            above = np.flatnonzero(own >= threshold)
            if len(above) >= k:
                return above[np.argpartition(own[above], len(above) - k)[len(above) - k :]]
    scoring = np.flatnonzero(own > 0)
    if len(scoring) <= k:
        return scoring
    return scoring[np.argpartition(own[scoring], len(scoring) - k)[len(scoring) - k :]]


def _top_smoothed(own: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and scores (own + NEIGHBOUR_SHARE * previous row's own), best first, at least the best ``limit`` chunks.

    Only the best ``k`` rows by their own score and the rows after them are smoothed: any other row scores at most
    (1 + share) times the k-th own score, so once the results beat that bound they are exact; otherwise k grows.
    The empty row after a document's last chunk inherits a share too, but always less than that chunk scores, so
    returning ``2 * limit`` rows leaves at least ``limit`` chunks once the caller drops empty rows.
    """
    want = 2 * limit
    k = 4 * want
    while True:
        top = _top_positive(own, k)
        bound = (1 + NEIGHBOUR_SHARE) * own[top].min() if len(top) == k else 0.0
        rows = np.union1d(top, top + 1)
        scores = own[rows] + NEIGHBOUR_SHARE * own[rows - 1]
        order = np.lexsort((rows, -scores))[:want]
        if bound == 0.0 or (len(order) == want and scores[order[-1]] > bound):
            return rows[order], scores[order]
        k *= 4


# ---------------------------------------------------------------------------------------------------- syncing
def sync_index(
    index: KeywordIndex,
    ledger: Mapping[str, str],
    fetch: Callable[[list[tuple[str, str]]], Iterable[IndexedDoc]],
    on_progress: Callable[[int, int], None] | None = None,
    batch_docs: int = 200,
) -> SyncReport:
    """Bring the index to the committed ledger (doc_id -> doc_hash), touching only documents that differ.

    ``fetch`` returns the chunks, with tokens made by today's tokenizer, of the (doc_id, doc_hash) pairs asked for.
    If the stored tokens were made by another tokenizer version, the index is emptied and the new version recorded
    first, in one transaction, so an interrupted rebuild resumes as an ordinary sync instead of starting over. Each
    batch is one transaction that re-reads the indexed hashes, so two processes syncing at once never insert a
    document twice.
    """
    started = time.perf_counter()
    rebuilt = False
    if index.tokenizer_version != TOKENIZER_VERSION:
        rebuilt = index.reset(TOKENIZER_VERSION)
    indexed = index.documents()
    gone = sorted(doc_id for doc_id in indexed if doc_id not in ledger)
    todo = sorted((doc_id, doc_hash) for doc_id, doc_hash in ledger.items() if indexed.get(doc_id) != doc_hash)
    removed = index._apply([], gone, expect=indexed)[1] if gone else 0
    added = done = 0
    if on_progress and todo:
        on_progress(0, len(todo))
    pending = iter(todo)
    while batch := list(islice(pending, max(1, batch_docs))):
        docs = list(fetch(batch))
        added += index._apply(docs, (), expect={doc_id: indexed.get(doc_id) for doc_id, _ in batch})[0]
        done += len(batch)
        if on_progress:
            on_progress(done, len(todo))
    return SyncReport(added=added, removed=removed, rebuilt=rebuilt, seconds=time.perf_counter() - started)
