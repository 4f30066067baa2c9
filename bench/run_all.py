"""Run the three benchmarks (``make bench``: full scale) and print a Markdown table for the README.

Each benchmark prints its own details and writes ``bench/results/<name>.json``; this script reads those files back.
Nothing here asserts on time: targets are shown next to the numbers.

Usage: .venv/bin/python bench/run_all.py [--scale full|small] [--only ingest,search,answer]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from benchlib import PY, RESULTS, ROOT

BENCHES = {"ingest": "ingest_bench", "search": "search_bench", "answer": "answer_bench"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("small", "full"), default="full")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset of ingest,search,answer")
    args = parser.parse_args()
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    if unknown := set(chosen) - set(BENCHES):
        sys.exit(f"unknown benchmark(s) {sorted(unknown)}; choose from {','.join(BENCHES)}")
    print(f"# command: .venv/bin/python bench/run_all.py --scale {args.scale} --only {','.join(chosen)}\n")
    started = time.time()
    failed = []
    for short in chosen:
        name = BENCHES[short]
        command = [PY, str(ROOT / "bench" / f"{name}.py"), "--scale", args.scale]
        print(
            f"\n$ {' '.join(os.path.relpath(c, ROOT) if c.startswith(str(ROOT)) else c for c in command)}", flush=True
        )
        t = time.perf_counter()
        if subprocess.run(command, cwd=ROOT, env=os.environ | {"PYTHONUNBUFFERED": "1"}).returncode != 0:
            failed.append(name)
        print(f"({name}: {time.perf_counter() - t:.0f} s)", flush=True)

    results = {}
    for short in chosen:
        path = RESULTS / f"{BENCHES[short]}.json"
        if path.exists() and path.stat().st_mtime >= started:  # only what this run wrote
            results[short] = json.loads(path.read_text())
    print("\n" + markdown(results, args.scale))
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def markdown(results: dict[str, Any], scale: str) -> str:
    rows: list[tuple[str, str, str]] = []
    if ingest := results.get("ingest"):
        rows += ingest_rows(ingest)
    if search := results.get("search"):
        rows += search_rows(search)
    if answer := results.get("answer"):
        rows += answer_rows(answer)
    machine = next(iter(results.values()), {}).get("machine", {})
    loads = [r.get("machine", {}).get("load_avg_at_start", [None])[0] for r in results.values()]
    lines = [
        f"Measured with `.venv/bin/python bench/run_all.py --scale {scale}` (`make bench` runs it at full scale) on "
        f"{machine.get('cpu_count', '?')} CPU cores, Python {machine.get('python', '?')}; 1-minute load average at the "
        f"start of each benchmark: {loads}.",
        "",
        "| Measurement | Result | Target |",
        "|---|---|---|",
    ]
    lines += [f"| {m} | {r} | {t} |" for m, r, t in rows]
    return "\n".join(lines)


def ingest_rows(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    corpus, ours = data["corpus"], data["ours"]
    rows = [
        (
            f"Ingest {corpus['files']} files ({corpus['english_docs']} pydoc texts + {corpus['chinese_docs']} Chinese "
            f"articles, {corpus['bytes'] / 1e6:.1f} MB): `python -m ingest`, end to end",
            f"{ours['wall_s']:.1f} s, {ours['chunks']} chunks ({ours['chunks'] / ours['wall_s']:.1f} chunks/s)",
            "",
        )
    ]
    for label, run in data.get("starter", {}).items():
        rows.append(
            (
                f"llama-index starter pipeline ({label}), time / ours",
                f"{run['ratio_vs_ours']:.2f} ({run['wall_s']:.1f} s, {run['chunks']} chunks)",
                ">= 1.0" if label == "default chunking" else "",
            )
        )
    if eff := data.get("efficiency"):
        enc = data["encode"]
        rows.append(
            (
                "Raw MiniLM encode of our chunks (model load excluded) / our ingest wall time",
                f"{eff['encode_over_wall']:.2f} (encode {enc['encode_all_s']:.1f} s; "
                f"{eff['encode_over_inside_minus_model_load']:.2f} against ingest work minus model load)",
                ">= 0.85",
            )
        )
    if rerun := data.get("rerun"):
        rows.append(
            (
                "Re-run over the unchanged corpus / first run",
                f"{rerun['ratio_vs_first']:.3f} ({rerun['wall_s']:.1f} s)",
                "< 0.03",
            )
        )
    if pdf := data.get("pdf"):
        rows.append(
            (
                f"Peak RSS ingesting a {pdf['pages']:,}-page PDF",
                f"{pdf['peak_rss_mb']:.0f} MB ({pdf['wall_s']:.0f} s)",
                "",
            )
        )
    return rows


def search_rows(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    build_total = 0.0
    for size, stage in data["stages"].items():
        s = stage["search"]
        build_total += stage["build"]["stage_build_s"]
        rows.append(
            (
                f"Search p50 / p95, {int(size):,} chunks (200 queries, half Chinese)",
                f"{s['total']['p50_ms']:.0f} / {s['total']['p95_ms']:.0f} ms (English p50 "
                f"{s['english']['p50_ms']:.0f} ms, Chinese p50 {s['chinese']['p50_ms']:.0f} ms)",
                "p50 <= 50 ms (English too)" if int(size) >= 100_000 else "",
            )
        )
    largest = max(data["stages"], key=int)
    rows.append((f"Build the synthetic {int(largest):,}-chunk store (Chroma + BM25)", f"{build_total:.0f} s", ""))
    return rows


def answer_rows(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for question, q in data.get("questions", {}).items():
        if q.get("abstained"):
            continue
        o, b = q["ours"], q["bare"]
        rows.append(
            (
                f'Answer "{question}": time to first token, ours / bare llama.cpp',
                f"{o['ttft_s']:.2f} s / {b['ttft_s']:.2f} s (ours includes {o['retrieval_s'] * 1000:.0f} ms retrieval)",
                "",
            )
        )
        rows.append(
            (
                "  tokens/s while generating, ours / bare",
                f"{o['tokens_per_s']:.1f} / {b['tokens_per_s']:.1f} = {q['ratio_tokens_per_s']:.2f}",
                ">= 0.95",
            )
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())
