"""Run every benchmark (``make bench``) in order; each prints its own Markdown tables and writes bench/results/*.json.

Nothing here asserts on time: targets are shown next to the numbers by each script. The tuning scripts come first
(they choose constants on the tune half and report on the report half), then cost and latency, then reliability.

Usage: .venv/bin/python bench/run_all.py [--scale full|small] [--only NAME,NAME]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from benchlib import PY, ROOT

BENCHES = {
    "retrieval": ["bench/tune_retrieval.py"],  # hit@k by language pair (tune/report halves)
    "grounding": ["bench/calibrate_grounding.py"],  # answered / refused, by question language
    "quotes": ["bench/tune_quotes.py"],  # quote hit by language pair
    "markers": ["bench/quote_markers.py"],  # quote hit on Wikipedia-style text (reference markers after sentences)
    "answers": ["bench/answer_eval.py"],  # end to end: context recall, quote / answer / shown hit, both modes
    "encode": ["bench/encode_bench.py"],  # e5 vs MiniLM passages/s, side by side
    "ingest": ["bench/ingest_bench.py"],  # ingest efficiency on many small files and a few large ones, vs the starter
    "search": ["bench/search_bench.py"],  # query latency by question language up to 100k chunks
    "keyword": ["bench/keyword_bench.py"],  # keyword index at 100k and 1M chunks: updates, queries, RSS, rebuild
    "ocr": ["bench/ocr_bench.py"],  # seconds per page and character accuracy of OCR
    "soak": ["bench/soak_bench.py"],  # questions during an ingest; kill -9 faults and --check
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("small", "full"), default="full")
    parser.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}")
    args = parser.parse_args()
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    if unknown := set(chosen) - set(BENCHES):
        sys.exit(f"unknown benchmark(s) {sorted(unknown)}; choose from {','.join(BENCHES)}")
    print(f"# command: .venv/bin/python bench/run_all.py --scale {args.scale} --only {','.join(chosen)}\n")
    failed, took = [], {}
    for name in chosen:
        command = [PY, str(ROOT / BENCHES[name][0]), "--scale", args.scale]
        shown = " ".join([os.path.relpath(command[0], ROOT), *command[1:]]).replace(str(ROOT) + "/", "")
        print(f"\n$ {shown}", flush=True)
        started = time.perf_counter()
        if subprocess.run(command, cwd=ROOT, env=os.environ | {"PYTHONUNBUFFERED": "1"}).returncode != 0:
            failed.append(name)
        took[name] = time.perf_counter() - started
        print(f"({name}: {took[name]:.0f} s)", flush=True)
    print("\n" + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in took.items()))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
