"""The keyword index: BM25 ranking with neighbour smoothing, one-document updates, syncing, processes and crashes.

Scores are compared with a brute-force BM25 written here from the formula (bm25s's "lucene" variant, what the
previous index computed), so a wrong document frequency, length or idf shows up as a wrong number, not only as a
different order. Processes are real (multiprocessing with spawn, SIGKILL).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import pytest

from rag import keyword_index as ki
from rag.errors import StoreError
from rag.keyword_index import (
    NEIGHBOUR_SHARE,
    IndexedChunk,
    IndexedDoc,
    KeywordIndex,
    split_tokens,
    sync_index,
)
from rag.tokenize import TOKENIZER_VERSION, keyword_tokens


# ---------------------------------------------------------------------------------------------------- helpers
def make_doc(doc_id: str, texts: list[str], doc_hash: str = "h1") -> IndexedDoc:
    return IndexedDoc(
        doc_id, doc_hash, [IndexedChunk(f"{doc_id}-{doc_hash}-{i}", i, keyword_tokens(t)) for i, t in enumerate(texts)]
    )


def reference_bm25(docs: list[IndexedDoc], query: list[str]) -> dict[str, float]:
    """Every chunk scored by the formula, plus NEIGHBOUR_SHARE of the previous chunk of the same document."""
    rows = [(d.doc_id, c) for d in docs for c in sorted(d.chunks, key=lambda c: c.chunk_index)]
    bags = [Counter(split_tokens(c.tokens)) for _, c in rows]
    n, avg = len(rows), sum(sum(b.values()) for b in bags) / len(rows)
    weights = Counter(split_tokens(query))
    df = {term: sum(1 for b in bags if term in b) for term in weights}
    own = []
    for bag in bags:
        score, norm = 0.0, 1.5 * (1 - 0.75 + 0.75 * sum(bag.values()) / avg)  # bm25s defaults: k1 1.5, b 0.75
        for term, weight in weights.items():
            if bag[term]:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                score += weight * idf * bag[term] / (bag[term] + norm)
        own.append(score)
    out = {}
    for i, (doc_id, chunk) in enumerate(rows):
        inherited = own[i - 1] if i > 0 and rows[i - 1][0] == doc_id else 0.0
        out[chunk.chunk_id] = own[i] + NEIGHBOUR_SHARE * inherited
    return {cid: s for cid, s in out.items() if s > 0}


def zipf_docs(n_docs: int, chunks: int = 6, seed: int = 3) -> list[IndexedDoc]:
    """Documents over a small Zipf-like vocabulary, so terms range from everywhere to rare."""
    import random

    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(300)]
    weights = [1 / (i + 2) for i in range(len(vocab))]
    return [
        IndexedDoc(
            f"d{d}",
            "h",
            [IndexedChunk(f"d{d}-{c}", c, rng.choices(vocab, weights, k=rng.randint(5, 30))) for c in range(chunks)],
        )
        for d in range(n_docs)
    ]


@pytest.fixture
def index(tmp_path: Path) -> KeywordIndex:
    opened = KeywordIndex.open(tmp_path / "kw" / "index.sqlite3")
    yield opened
    opened.close()


def state(index: KeywordIndex) -> tuple:
    """Everything a caller can observe, for before/after comparisons."""
    ids = [f"d{d}-{c}" for d in range(40) for c in range(6)]
    probes = [["w1", "w5"], ["w40"], ["w7", "w120", "w2"]]
    found = [{c: round(s, 9) for c, s in index.search(q, 1000)} for q in probes]
    return index.documents(), index.n_chunks(), index.tokens_of(ids), found


# ---------------------------------------------------------------------------------------------------- ranking
def test_matching_chunk_outranks_others_and_rare_terms_weigh_more(index: KeywordIndex) -> None:
    common = "The report covers the budget."
    index.apply(
        [
            make_doc("a", ["Zebras graze on the savanna near the river."]),
            make_doc("b", [common, "Budget meetings happen weekly."]),
            make_doc("c", [common + " Quokkas appear once.", "Nothing relevant here at all."]),
            make_doc("d", [common + " The budget report.", "Filler text about weather."]),
        ]
    )
    assert index.search(keyword_tokens("zebra"), 5)[0][0] == "a-h1-0"
    # "budget" is in four chunks, "quokka" in one: the quokka chunk wins although the other has "budget" twice
    ranked = [cid for cid, _ in index.search(keyword_tokens("budget quokkas"), 5)]
    assert ranked[0] == "c-h1-0"
    assert "a-h1-0" not in ranked


@pytest.mark.parametrize("part_bits", [ki.PART_BITS, 2])  # 2: four rows per range, documents span ranges
def test_scores_equal_the_bm25_formula(index: KeywordIndex, monkeypatch, part_bits: int) -> None:
    monkeypatch.setattr(ki, "PART_BITS", part_bits)
    docs = zipf_docs(30)
    index.apply(docs)
    for query in (["w1", "w9", "w60"], ["w3", "w3", "w200"], ["w0"], ["w17", "w18", "w19", "w250"]):
        got = index.search(query, 1000)
        assert dict(got) == pytest.approx(reference_bm25(docs, query), rel=1e-6)  # float32, as bm25s
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
        assert len(index.search(query, 7)) == 7


def test_top_results_are_exact_when_only_the_best_rows_are_smoothed(index: KeywordIndex) -> None:
    """With many scoring rows only the best few and their successors are smoothed (5,600 rows: the threshold from a
    sample of rows is used too): the top must still be exact."""
    docs = zipf_docs(700, chunks=8, seed=11)
    index.apply(docs)
    for query in (["w0", "w1"], ["w2", "w40", "w41"], ["w0"], ["w5", "w5", "w90", "w3"]):
        want = sorted(reference_bm25(docs, query).values(), reverse=True)
        for limit in (1, 3, 10):
            got = index.search(query, limit)
            assert [s for _, s in got] == pytest.approx(want[:limit])


def test_a_chunk_outside_the_best_rows_still_wins_when_its_smoothed_score_does(index: KeywordIndex) -> None:
    """Ten first chunks score a little higher on their own; the two chunks of "t" score a little lower each, but
    the second one inherits from the first and beats them all."""
    docs = [
        IndexedDoc(
            f"a{i}",
            "h",
            [
                IndexedChunk(f"a{i}-0", 0, ["a", *[f"p{i}{j}" for j in range(9)]]),
                IndexedChunk(f"a{i}-1", 1, [f"q{i}{j}" for j in range(10)]),
            ],
        )
        for i in range(10)
    ]
    docs.append(
        IndexedDoc("t", "h", [IndexedChunk(f"t-{c}", c, ["a", *[f"r{c}{j}" for j in range(10)]]) for c in (0, 1)])
    )
    index.apply(docs)
    want = sorted(reference_bm25(docs, ["a"]).items(), key=lambda kv: -kv[1])
    assert want[0][0] == "t-1"
    assert [c for c, _ in index.search(["a"], 1)] == ["t-1"]


@pytest.mark.parametrize("part_bits", [ki.PART_BITS, 2])
def test_idf_follows_document_frequencies(index: KeywordIndex, monkeypatch, part_bits: int) -> None:
    monkeypatch.setattr(ki, "PART_BITS", part_bits)
    docs = zipf_docs(15)
    index.apply(docs)
    n = 15 * 6
    df = Counter(t for d in docs for c in d.chunks for t in set(c.tokens))
    got = index.idf(["w0", "w7", "w7", "nowhere"])
    assert set(got) == {"w0", "w7"}
    assert got["w0"] == pytest.approx(math.log(1 + (n - df["w0"] + 0.5) / (df["w0"] + 0.5)))
    assert got["w7"] == pytest.approx(2 * math.log(1 + (n - df["w7"] + 0.5) / (df["w7"] + 0.5)))
    # a chunk's own score never exceeds the sum; smoothing adds at most NEIGHBOUR_SHARE of a neighbour's
    top = index.search(["w0", "w7", "w7"], 1)[0][1]
    assert top <= (1 + NEIGHBOUR_SHARE) * sum(got.values())


def test_next_chunk_inherits_a_share_of_a_strong_match_but_not_across_documents(index: KeywordIndex) -> None:
    index.apply(
        [
            make_doc("a", ["Intro about gardens.", "The architecture of the compiler has four parts:"]),
            make_doc("b", ["lexer, parser, optimiser and emitter.", "More about emitters later."]),
            make_doc("c", ["The compiler architecture is described below.", "lexer, parser, optimiser, emitter."]),
        ]
    )
    scores = dict(index.search(keyword_tokens("compiler architecture"), 10))
    # c-1 has no query word: its score is exactly the inherited share of c-0's
    assert scores["c-h1-1"] == pytest.approx(NEIGHBOUR_SHARE * scores["c-h1-0"])
    # b-0 follows a-1 in insertion order but is another document: it inherits nothing
    assert "b-h1-0" not in scores
    assert scores["a-h1-1"] > 0


def test_a_strong_last_chunk_does_not_crowd_out_results(index: KeywordIndex) -> None:
    """The empty row after a document inherits a share of its last chunk; it must never take a result's place."""
    docs = [IndexedDoc("a", "h", [IndexedChunk("a-0", 0, ["zeta", "zeta", "zeta"])])]
    docs += [
        IndexedDoc(f"b{i}", "h", [IndexedChunk(f"b{i}-0", 0, ["alpha", "filler", "words", "here"])]) for i in range(6)
    ]
    index.apply(docs)
    want = sorted(reference_bm25(docs, ["zeta", "alpha"]).items(), key=lambda kv: (-kv[1], kv[0]))
    assert NEIGHBOUR_SHARE * want[0][1] > want[1][1]  # the row after a-0 would rank second
    got = index.search(["zeta", "alpha"], 2)
    assert [c for c, _ in got] == ["a-0", "b0-0"]
    assert [s for _, s in got] == pytest.approx([s for _, s in want[:2]])


def test_a_document_listed_twice_in_one_apply_is_indexed_once(index: KeywordIndex) -> None:
    first = IndexedDoc("a", "h1", [IndexedChunk("a-1", 0, ["old", "words"])])
    second = IndexedDoc("a", "h2", [IndexedChunk("a-2", 0, ["new", "words"])])
    index.apply([first, second, make_doc("b", ["Other words."])])
    assert index.documents() == {"a": "h2", "b": "h1"}
    assert index.n_chunks() == 2
    assert index.search(["old"], 5) == []
    assert dict(index.search(["words"], 5)) == pytest.approx(
        reference_bm25([second, make_doc("b", ["Other words."])], ["words"])
    )


def test_chinese_words_bigrams_and_english_tokens_are_searchable(index: KeywordIndex) -> None:
    index.apply(
        [
            make_doc("zh", ["机器学习是人工智能的一个分支。", "深度学习使用多层神经网络。", "今天天气很好。"]),
            make_doc("en", ["Libraries handle the parsing of PDF files.", "Encrypted files need a password."]),
        ]
    )
    assert index.search(keyword_tokens("什么是机器学习？"), 3)[0][0] == "zh-h1-0"
    assert index.search(keyword_tokens("神经网络"), 3)[0][0] == "zh-h1-1"
    assert index.search(keyword_tokens("网络"), 3)[0][0] == "zh-h1-1"  # a bigram inside a jieba word
    assert index.search(keyword_tokens("How are PDF libraries parsed?"), 3)[0][0] == "en-h1-0"  # plural, case
    assert index.tokens_of(["zh-h1-0"])["zh-h1-0"] == keyword_tokens("机器学习是人工智能的一个分支。")


def test_tokens_match_exactly_and_whitespace_separates_them(index: KeywordIndex) -> None:
    index.apply([IndexedDoc("a", "h", [IndexedChunk("a-0", 0, ["c++", "two words"])])])
    assert index.tokens_of(["a-0"]) == {"a-0": ["c++", "two", "words"]}
    assert [c for c, _ in index.search(["c++"], 3)] == ["a-0"]
    assert index.search(["C++"], 3) == []  # case and punctuation are the tokenizer's business, not the index's
    assert [c for c, _ in index.search(["words"], 3)] == ["a-0"]


def test_empty_query_and_empty_index_return_nothing(index: KeywordIndex) -> None:
    assert index.search(keyword_tokens("anything at all"), 5) == []
    index.apply([make_doc("a", ["Some words here."])])
    assert index.search([], 5) == []
    assert index.search(["", " "], 5) == []
    assert index.search(keyword_tokens("unknownword"), 5) == []
    assert index.search(keyword_tokens("words"), 0) == []


# ---------------------------------------------------------------------------------------------------- updates
def test_apply_replaces_and_removes_exactly_one_document(index: KeywordIndex) -> None:
    docs = zipf_docs(12)
    index.apply(docs)
    before = index.tokens_of([c.chunk_id for d in docs for c in d.chunks])
    new_d3 = IndexedDoc("d3", "h2", [IndexedChunk("d3-new-0", 0, ["fresh", "words"])])
    index.apply([new_d3])
    assert index.documents()["d3"] == "h2"
    assert index.n_chunks() == 12 * 6 - 6 + 1
    after = index.tokens_of([c.chunk_id for d in docs for c in d.chunks] + ["d3-new-0"])
    assert after.pop("d3-new-0") == ["fresh", "words"]
    assert after == {cid: toks for cid, toks in before.items() if not cid.startswith("d3-")}
    index.apply([], ["d5"])
    assert set(index.documents()) == {f"d{i}" for i in range(12)} - {"d5"}
    assert index.n_chunks() == 12 * 6 - 6 + 1 - 6
    assert not any(cid.startswith("d5-") for cid in index.tokens_of([f"d5-{c}" for c in range(6)]))


@pytest.mark.parametrize("part_bits", [ki.PART_BITS, 2])
def test_after_many_replaces_the_index_equals_a_fresh_build(tmp_path: Path, monkeypatch, part_bits: int) -> None:
    """Postings, lengths and row numbers are kept right through replace, remove and re-add."""
    monkeypatch.setattr(ki, "PART_BITS", part_bits)
    docs = zipf_docs(20)
    churned = KeywordIndex.open(tmp_path / "churned.sqlite3")
    churned.apply(docs[:15])
    churned.apply([docs[3], docs[15]], ["d7", "d0"])
    churned.apply(docs[16:], ["d9"])
    churned.apply([docs[7], docs[9], docs[0]])
    churned.apply([IndexedDoc("d12", "h", [])], ["missing"])
    churned.apply([docs[12]])
    fresh = KeywordIndex.open(tmp_path / "fresh.sqlite3")
    fresh.apply(docs)
    assert state(churned) == state(fresh)
    assert reference_bm25(docs, ["w1", "w5"]) == pytest.approx(dict(fresh.search(["w1", "w5"], 1000)))


class BlockingChunks(list):
    """Chunks whose iteration waits: apply() is then stuck inside its write transaction until released."""

    def __init__(self, items: list, entered: threading.Event, release: threading.Event) -> None:
        super().__init__(items)
        self.entered, self.release = entered, release

    def __iter__(self):
        self.entered.set()
        assert self.release.wait(30)
        return super().__iter__()


def test_reingesting_reuses_freed_rows_and_keeps_neighbours_right(index: KeywordIndex) -> None:
    """Row numbers size every query's score array: re-ingesting must not push them up forever."""
    docs = zipf_docs(10)
    index.apply(docs)

    def top_row() -> int:
        with index._read() as conn:
            return conn.execute("SELECT max(row) FROM chunks").fetchone()[0]

    start = top_row()
    for version in range(20):
        doc_id, size = ("d3", "d5")[version % 2], 3 + version % 5  # neither at the end; shorter and longer
        chunks = [IndexedChunk(f"{doc_id}-v{version}-{i}", i, [f"w{i}", "w1", f"v{version}"]) for i in range(size)]
        docs[int(doc_id[1:])] = IndexedDoc(doc_id, f"h{version}", chunks)
        index.apply([docs[int(doc_id[1:])]])
    assert top_row() <= start + 8
    index.apply([], ["d4"])
    docs.pop(4)
    query = ["w1", "w2", "v19", "v18"]
    assert dict(index.search(query, 1000)) == pytest.approx(reference_bm25(docs, query))


def test_a_reader_is_not_blocked_by_an_open_write_and_sees_the_last_commit(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    writer, reader = KeywordIndex.open(path), KeywordIndex.open(path)
    writer.apply([make_doc("a", ["Alpha beta."])])
    with sqlite3.connect(path) as conn:  # WAL: readers don't wait even while a writer commits or checkpoints
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    entered, release = threading.Event(), threading.Event()
    doc_b = make_doc("b", ["Alpha gamma."])
    slow = IndexedDoc("b", "h1", BlockingChunks(doc_b.chunks, entered, release))
    thread = threading.Thread(target=writer.apply, args=([slow], ["a"]))
    thread.start()
    assert entered.wait(30)  # the writer holds the write lock and has already deleted "a" in its transaction
    assert [c for c, _ in reader.search(["alpha"], 5)] == ["a-h1-0"]
    assert reader.documents() == {"a": "h1"}
    release.set()
    thread.join(30)
    assert [c for c, _ in reader.search(["alpha"], 5)] == ["b-h1-0"]
    assert reader.documents() == {"b": "h1"}


def test_threads_share_one_index_object(index: KeywordIndex) -> None:
    index.apply(zipf_docs(10))
    want = index.search(["w3", "w30"], 5)
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(index.search(["w3", "w30"], 5))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [want] * 4


def test_another_schema_is_emptied_and_a_corrupt_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    old = KeywordIndex.open(path)
    old.apply(zipf_docs(2))
    with old._write() as conn:
        conn.execute("UPDATE meta SET value = 'old' WHERE key = 'schema'")
    old.close()
    reopened = KeywordIndex.open(path)
    assert reopened.documents() == {} and reopened.n_chunks() == 0 and reopened.tokenizer_version is None
    reopened.close()
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"bad\.sqlite3.*delete that file"):
        KeywordIndex.open(bad)


# ---------------------------------------------------------------------------------------------------- sync
class Fetcher:
    """Plays Chroma: returns the chunks of the asked (doc_id, hash) pairs and records what was asked."""

    def __init__(self, docs: dict[str, IndexedDoc]) -> None:
        self.docs = docs
        self.asked: list[str] = []
        self.calls = 0

    def __call__(self, pairs: list[tuple[str, str]]) -> list[IndexedDoc]:
        self.calls += 1
        self.asked += [doc_id for doc_id, _ in pairs]
        return [self.docs[doc_id] for doc_id, doc_hash in pairs if self.docs[doc_id].doc_hash == doc_hash]


def ledger_of(docs: dict[str, IndexedDoc]) -> dict[str, str]:
    return {doc_id: d.doc_hash for doc_id, d in docs.items()}


def test_sync_touches_only_changed_documents_and_removes_deleted_ones(index: KeywordIndex) -> None:
    docs = {d.doc_id: d for d in zipf_docs(25)}
    first = Fetcher(docs)
    report = sync_index(index, ledger_of(docs), first, batch_docs=10)
    assert (report.added, report.removed, first.calls) == (25, 0, 3)
    assert report.rebuilt  # a new index records the tokenizer first
    assert index.tokenizer_version == TOKENIZER_VERSION

    docs["d4"] = IndexedDoc("d4", "h2", [IndexedChunk("d4-v2", 0, ["changed"])])
    del docs["d8"], docs["d9"]
    docs["new"] = IndexedDoc("new", "h", [IndexedChunk("new-0", 0, ["newest"])])
    second = Fetcher(docs)
    report = sync_index(index, ledger_of(docs), second)
    assert sorted(second.asked) == ["d4", "new"]
    assert (report.added, report.removed, report.rebuilt) == (2, 2, False)
    assert index.documents() == ledger_of(docs)
    assert [c for c, _ in index.search(["changed"], 3)] == ["d4-v2"]

    third = Fetcher(docs)
    assert sync_index(index, ledger_of(docs), third).added == 0
    assert third.calls == 0


def test_a_tokenizer_change_rebuilds_everything_with_progress(index: KeywordIndex, monkeypatch) -> None:
    docs = {d.doc_id: d for d in zipf_docs(7)}
    sync_index(index, ledger_of(docs), Fetcher(docs))
    monkeypatch.setattr(ki, "TOKENIZER_VERSION", "2-test")
    retokenised = {k: IndexedDoc(k, d.doc_hash, [IndexedChunk(f"{k}-0", 0, [f"v2{k}"])]) for k, d in docs.items()}
    fetch, progress = Fetcher(retokenised), []
    report = sync_index(index, ledger_of(docs), fetch, lambda done, total: progress.append((done, total)), 3)
    assert report.rebuilt and report.added == 7
    assert sorted(fetch.asked) == sorted(docs)
    assert progress == [(0, 7), (3, 7), (6, 7), (7, 7)]
    assert index.tokenizer_version == "2-test"
    assert index.n_chunks() == 7
    assert index.search(["w1"], 5) == []  # old tokens are gone
    assert index.search(["v2d3"], 5)[0][0] == "d3-0"
    assert not sync_index(index, ledger_of(docs), Fetcher(retokenised)).rebuilt
    # a second process that also saw the old version must not clear what the first one rebuilt
    assert not index.reset("2-test")
    assert index.n_chunks() == 7


def test_a_sync_that_loses_a_race_skips_the_document_instead_of_inserting_it_twice(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    ours, theirs = KeywordIndex.open(path), KeywordIndex.open(path)
    docs = {d.doc_id: d for d in zipf_docs(4)}
    sync_index(ours, {}, Fetcher({}))

    def racing_fetch(pairs: list[tuple[str, str]]) -> list[IndexedDoc]:
        theirs.apply([docs["d1"]])  # another process indexes d1 between our diff and our write
        return [docs[doc_id] for doc_id, _ in pairs]

    report = sync_index(ours, ledger_of(docs), racing_fetch)
    assert report.added == 3
    assert ours.n_chunks() == 4 * 6
    assert ours.documents() == ledger_of(docs)


# ---------------------------------------------------------------------------------------------------- processes
def _apply_docs_one_by_one(path: str, docs: list[IndexedDoc]) -> None:
    index = KeywordIndex.open(Path(path))
    for doc in docs:
        index.apply([doc])
    index.close()


def _sync_all(path: str, docs: dict[str, IndexedDoc]) -> None:
    index = KeywordIndex.open(Path(path))
    sync_index(index, ledger_of(docs), Fetcher(docs), batch_docs=2)
    index.close()


def _run_processes(target, args_list: list[tuple]) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def test_two_processes_applying_different_documents_both_end_up_indexed(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    KeywordIndex.open(path).close()
    docs = zipf_docs(30)
    _run_processes(_apply_docs_one_by_one, [(str(path), docs[:15]), (str(path), docs[15:])])
    index = KeywordIndex.open(path)
    assert index.documents() == {d.doc_id: "h" for d in docs}
    assert index.n_chunks() == 30 * 6
    assert reference_bm25(docs, ["w2", "w31"]) == pytest.approx(dict(index.search(["w2", "w31"], 1000)))


def test_two_processes_syncing_the_same_ledger_insert_each_document_once(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    docs = {d.doc_id: d for d in zipf_docs(20)}
    _run_processes(_sync_all, [(str(path), docs), (str(path), docs)])
    index = KeywordIndex.open(path)
    assert index.documents() == ledger_of(docs)
    assert index.n_chunks() == 20 * 6
    assert reference_bm25(list(docs.values()), ["w5"]) == pytest.approx(dict(index.search(["w5"], 1000)))


def _apply_then_die(path: str, docs: list[IndexedDoc], die_at: int) -> None:
    """Apply a batch, and SIGKILL ourselves inside the transaction after ``die_at`` documents were written."""
    written = [0]
    original = KeywordIndex._insert_doc

    def insert_then_maybe_die(conn, doc, stats):
        out = original(conn, doc, stats)
        written[0] += 1
        if written[0] == die_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    KeywordIndex._insert_doc = staticmethod(insert_then_maybe_die)
    KeywordIndex.open(Path(path)).apply(docs, ["d0"])


def test_a_process_killed_mid_apply_leaves_the_previous_state_and_sync_repairs(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    docs = zipf_docs(40)
    index = KeywordIndex.open(path)
    sync_index(index, {d.doc_id: "h" for d in docs[:20]}, Fetcher({d.doc_id: d for d in docs}))
    before = state(index)
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_apply_then_die, args=(str(path), docs[20:], 12))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == -signal.SIGKILL
    assert state(index) == before
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ledger = {d.doc_id: "h" for d in docs[1:]}
    sync_index(index, ledger, Fetcher({d.doc_id: d for d in docs}))
    assert index.documents() == ledger
    assert reference_bm25(docs[1:], ["w6", "w60"]) == pytest.approx(dict(index.search(["w6", "w60"], 1000)))
