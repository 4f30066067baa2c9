"""Answering: time to first token and tokens/s of our path next to a bare llama.cpp call on the same prompt and model.

Setup: ``data/`` (the sample guides) is ingested into a temp store with the packaged models. For each question:
- ours: ``RagService(settings).answerer.stream(question, temperature=0, max_tokens=N)`` and iterate it. Its time to
  first token counts from the ``stream`` call, so it includes retrieval and prompt packing (also shown apart).
- bare: ``llama_cpp.Llama(model_path=<same GGUF>, n_ctx, n_threads, n_gpu_layers as our settings, verbose=False)
  .create_chat_completion(messages=<the messages our answerer built, AnswerStream.messages>, max_tokens=N,
  temperature=0, stream=True)``.
Two separate Llama instances (ours inside the service, the bare one here), and ``llm.reset()`` on each before every
timed run, so neither reuses a cached prompt prefix: every run evaluates the whole prompt. One untimed warm-up run of
each first. Then 3 timed runs alternating ours, bare; medians reported. Generated tokens are counted by tokenizing
the generated text with the model's own tokenizer; tokens/s = (tokens - 1) / (last piece - first piece), the decode
rate; the end-to-end rate (tokens / total time) is in the JSON too.

Usage: .venv/bin/python bench/answer_bench.py --scale small|full [--threads N] [--repeats 3]

llama.cpp's threads spin-wait at every barrier: with n_threads = all cores on a machine where other processes hold
cores, one run can be 10x slower than the next. Read the per-run numbers in the JSON, and measure on a quiet machine.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import ROOT, header, median, parse_scale, ratio, verdict, write_results

NAME = "answer_bench"
QUESTIONS = {
    "small": ["How fast is ingestion on a two-core laptop?"],
    "full": ["How fast is ingestion on a two-core laptop?", "默认的检索数量是多少？"],
}
MAX_TOKENS = 128
REPEATS = 3


def timed_stream(pieces) -> dict[str, Any]:
    """Consume an iterator of text pieces; times are relative to the call that made it (set by the caller)."""
    first = None
    text = ""
    for piece in pieces:
        if first is None:
            first = time.perf_counter()
        text += piece
    return {"first": first, "end": time.perf_counter(), "text": text}


def run_ours(service, question: str) -> dict[str, Any]:
    service.chat_model.llm.reset()  # no prompt-prefix reuse from the previous run
    start = time.perf_counter()
    answer = service.answerer.stream(question, temperature=0.0, max_tokens=MAX_TOKENS)
    retrieved = time.perf_counter()
    got = timed_stream(answer)
    got.update(start=start, retrieval_s=retrieved - start, messages=answer.messages, abstained=answer.abstained)
    return got


def run_bare(llm, messages: list[dict[str, str]]) -> dict[str, Any]:
    llm.reset()
    start = time.perf_counter()
    stream = llm.create_chat_completion(messages=messages, max_tokens=MAX_TOKENS, temperature=0.0, stream=True)
    got = timed_stream(part["choices"][0]["delta"].get("content") or "" for part in stream)
    got["start"] = start
    return got


def summarize(run: dict[str, Any], count_tokens) -> dict[str, float]:
    tokens = count_tokens(run["text"])
    decode = run["end"] - run["first"] if run["first"] else float("nan")
    return {
        "ttft_s": (run["first"] or run["end"]) - run["start"],
        "tokens": tokens,
        "tokens_per_s": (tokens - 1) / decode if tokens > 1 and decode > 0 else float("nan"),
        "end_to_end_tokens_per_s": tokens / (run["end"] - run["start"]),
        "total_s": run["end"] - run["start"],
    }


def main() -> int:
    def extra(parser):
        parser.add_argument("--threads", type=int, help="RAG_N_THREADS for both (default: the app's, all cores)")
        parser.add_argument("--repeats", type=int, default=REPEATS, help=f"timed runs of each (default {REPEATS})")

    args = parse_scale("Answer latency benchmark: ours vs bare llama.cpp", extra=extra)
    results = header(NAME, args)
    for key in [k for k in os.environ if k.startswith("RAG_")]:  # default settings, whatever the shell has
        del os.environ[key]
    from rag.cli_common import quiet_libraries

    quiet_libraries()
    import llama_cpp

    from rag.config import Settings
    from rag.service import RagService

    tmp = Path(tempfile.mkdtemp(prefix="answer-bench-"))
    try:
        settings = Settings(_env_file=None, store_dir=tmp / "store", n_threads=args.threads)
        service = RagService(settings)
        t = time.perf_counter()
        ingested = service.ingestor.ingest_paths([ROOT / "data"])
        print(
            f"ingested data/: {ingested.count('ingested')} files, {ingested.chunks_total} chunks "
            f"({time.perf_counter() - t:.1f} s)"
        )
        chat = service.chat_model
        bare = llama_cpp.Llama(
            model_path=str(chat.path),
            n_ctx=settings.n_ctx,
            n_threads=settings.threads,
            n_gpu_layers=settings.n_gpu_layers,
            verbose=False,
        )

        def count_tokens(text: str) -> int:
            return len(bare.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0

        config = {
            "model": chat.name,
            "n_ctx": settings.n_ctx,
            "n_threads": settings.threads,
            "n_gpu_layers": settings.n_gpu_layers,
            "max_tokens": MAX_TOKENS,
            "temperature": 0.0,
            "repeats": args.repeats,
            "prefix_cache": "two Llama instances, llm.reset() before every run",
        }
        results["config"] = config
        print(
            f"model {chat.name}, n_ctx {settings.n_ctx}, {settings.threads} threads, max_tokens {MAX_TOKENS}, "
            f"temperature 0; {config['prefix_cache']}\n"
        )
        results["questions"] = {}
        for question in QUESTIONS[args.scale]:
            results["questions"][question] = compare(service, bare, question, count_tokens, args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratios = [q["ratio_tokens_per_s"] for q in results["questions"].values() if "ratio_tokens_per_s" in q]
    if ratios:
        results["ratio_tokens_per_s_min"] = min(ratios)
        print(f"\nworst ratio ours/bare tokens/s: {min(ratios):.3f}  ({verdict(min(ratios), '>= 0.95')})")
    write_results(NAME, results)
    return 0


def compare(service, llm, question: str, count_tokens, repeats: int) -> dict[str, Any]:
    warm = run_ours(service, question)  # untimed warm-up of both, and the messages the bare call gets
    if warm["abstained"]:
        print(f"{question!r}: our answerer abstained (no relevant source); skipped")
        return {"abstained": True}
    messages = warm["messages"]
    run_bare(llm, messages)
    prompt_tokens = sum(count_tokens(m["content"]) for m in messages)
    ours_runs, bare_runs = [], []
    for _ in range(repeats):  # alternating, so drifting machine load hits both alike
        ours = run_ours(service, question)
        ours_runs.append(summarize(ours, count_tokens) | {"retrieval_s": ours["retrieval_s"]})
        bare = run_bare(llm, messages)
        bare_runs.append(summarize(bare, count_tokens))
    out: dict[str, Any] = {"prompt_tokens_approx": prompt_tokens, "ours_runs": ours_runs, "bare_runs": bare_runs}
    for label, runs in (("ours", ours_runs), ("bare", bare_runs)):
        out[label] = {key: median([r[key] for r in runs]) for key in runs[0]}
    out["ratio_tokens_per_s"] = ratio(out["ours"]["tokens_per_s"], out["bare"]["tokens_per_s"])
    out["ratio_ttft"] = ratio(out["ours"]["ttft_s"], out["bare"]["ttft_s"])
    out["same_text"] = ours["text"] == bare["text"]
    out["answer"] = ours["text"]
    o, b = out["ours"], out["bare"]
    print(f"Q: {question}   (prompt ~{prompt_tokens} tokens of message content, {len(messages)} messages)")
    print(
        f"  ours: TTFT {o['ttft_s']:.2f} s (retrieval + packing {o['retrieval_s']:.2f} s, so generation "
        f"{o['ttft_s'] - o['retrieval_s']:.2f} s), {o['tokens']:.0f} tokens at {o['tokens_per_s']:.1f} tokens/s"
    )
    print(f"  bare: TTFT {b['ttft_s']:.2f} s, {b['tokens']:.0f} tokens at {b['tokens_per_s']:.1f} tokens/s")
    for label, runs in (("ours", ours_runs), ("bare", bare_runs)):
        per_run = ", ".join(f"{r['ttft_s']:.2f} s / {r['tokens_per_s']:.1f}" for r in runs)
        print(f"    {label} runs (TTFT / tokens/s, in order): {per_run}")
    print(
        f"  ratio ours/bare tokens/s = {out['ratio_tokens_per_s']:.3f}  "
        f"({verdict(out['ratio_tokens_per_s'], '>= 0.95')}); TTFT ours/bare = {out['ratio_ttft']:.2f}; "
        f"same generated text: {out['same_text']}"
    )
    return out


if __name__ == "__main__":
    sys.exit(main())
