"""Ingestion cost (issue 9 item 4): our `python -m ingest` next to the raw encode of its own chunks and next to the
llama-index starter pipeline, on two generated corpora: many small files and a few large ones.

Corpora (bench/ingest_corpora.py; made in a temp folder at run time, nothing downloaded):
- "many small files": 800 distinct short articles of about 1.4 KB (60 at small scale), four in five Chinese (cut
  from ``../shared/corpus/zh-llm-articles``), one in five English (Python docs prose and pydoc text);
- "a few large files": 10 files of 100-150 KB (2 of 40-60 KB at small scale), half pydoc pages concatenated, half
  the Chinese articles repeated in rotated order.

Per corpus, one after another in this process's children (packaged models, default RAG_* settings):
1. ours: ``python -m ingest CORPUS --json`` on a fresh store; wall time from spawn to exit (interpreter start,
   imports and model load included), CPU time and peak RSS of that process.
2. raw encode: our committed chunks read back from that store, in ingestion order, then ``embed_passages`` of the
   default embedder in batches of RAG_EMBED_BATCH_SIZE (the pipeline's own batches), in a fresh process; the model
   load and a warm-up call are excluded and reported. **efficiency = raw encode / ours wall** (target >= 0.85);
   also by CPU time, which a busy machine disturbs less. On a subset, the same texts in one call (sorted by
   length across the whole set) against batches, to show what batch boundaries cost.
3. the llama-index starter (SimpleDirectoryReader -> VectorStoreIndex over Chroma) with (a) our E5Embedder wrapped
   as a llama-index ``BaseEmbedding`` and (b) the packaged MiniLM through ``HuggingFaceEmbedding``; each at
   llama-index's default chunking (SentenceSplitter, 1,024 tiktoken tokens: e5 truncates such chunks at 512 of its
   tokens, MiniLM at 256) and with SentenceSplitter 400/50. Our 400/50 is counted in e5 tokens, which the
   starter's splitter cannot count in, so its 400/50 is in tiktoken (cl100k) tokens: the chunk counts differ.
   The wrappers keep llama-index's default embed batch size (10).
4. re-run of ours over the unchanged corpus / first run (target < 0.03).
5. profile (when efficiency < 0.85, or with --profile): ours run in-process with timing probes on every stage
   (imports, store open, reading, chunking and its e5 tokenising, embedding, jieba keyword tokens, Chroma upserts,
   ledger commit, keyword index), then the same with the trial fixes of bench/ingest_children.py patched in; the
   fixed run's efficiency is computed against the same raw encode.
Optional part ``pdf``: peak RSS of ``python -m ingest BIG.pdf`` (1,000 pages at full scale).

The machine is shared: compare numbers of one run with each other, not across runs. ``--rounds N`` repeats ours
and the raw encode alternately and reports medians.

Usage: .venv/bin/python bench/ingest_bench.py --scale small|full [--parts encode,starter,rerun,profile,pdf]
       [--corpora small,large] [--rounds N] [--profile] [--fixes NAME,...] [--keep]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import PY, ChildRun, clean_env, header, median, parse_scale, ratio, run_child, verdict, write_results
from ingest_children import EMBED_LABEL
from ingest_corpora import CorpusInfo, make_large_files, make_pdf, make_small_files

NAME = "ingest_bench"
CHILD = str(Path(__file__).resolve().parent / "ingest_children.py")
TARGET_EFFICIENCY = ">= 0.85"
TARGET_RERUN = "< 0.03"
SCALES: dict[str, dict[str, Any]] = {
    "small": {"small_files": 30, "large_files": 2, "large_bytes": (20_000, 30_000), "pdf_pages": 50, "subset": 0},
    "full": {"small_files": 800, "large_files": 10, "large_bytes": (100_000, 150_000), "pdf_pages": 1000,
             "subset": 256},
}  # fmt: skip
PARTS = ("encode", "starter", "rerun", "profile", "pdf")
DEFAULT_PARTS = "encode,starter,rerun,profile"
DEFAULT_FIXES = ""  # the trial fixes this profile found are in the product now (bench/ingest_children.py)
CORPORA = {"small": "many small files", "large": "a few large files"}
# (label, embedder, chunk size, overlap): llama-index's default chunking, and 400/50 in its own tokens.
STARTERS = (
    ("starter + e5, default chunking (1024 tiktoken)", "e5", None, None),
    ("starter + e5, SentenceSplitter 400/50 tiktoken", "e5", 400, 50),
    ("starter + MiniLM, default chunking (1024 tiktoken)", "minilm", None, None),
    ("starter + MiniLM, SentenceSplitter 400/50 tiktoken", "minilm", 400, 50),
)


# --------------------------------------------------------------------------------------------- child processes
def run_ours(corpus: Path, store: Path) -> ChildRun:
    return run_child([PY, "-m", "ingest", str(corpus), "--json"], env=clean_env(RAG_STORE_DIR=str(store))).check()


def run_helper(mode: str, spec: dict[str, Any]) -> tuple[ChildRun, dict[str, Any]]:
    """bench/ingest_children.py in one mode; the child's last JSON line is its result."""
    env = clean_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    run = run_child([PY, CHILD, mode, json.dumps(spec)], env=env).check()
    return run, run.last_json()


# --------------------------------------------------------------------------------------------- one corpus
class CorpusBench:
    """All measurements of one corpus; ``result`` is its part of the JSON file."""

    def __init__(self, key: str, folder: Path, info: CorpusInfo, tmp: Path, scale: dict[str, Any]) -> None:
        self.key, self.folder, self.info, self.tmp, self.scale = key, folder, info, tmp, scale
        self.result: dict[str, Any] = {"corpus": info.as_dict(), "rounds": []}
        self.first: ChildRun | None = None
        self.first_store: Path | None = None

    def _store(self, label: str) -> Path:
        return self.tmp / f"store-{self.key}-{label}"

    def ours_and_encode(self, rounds: int, with_encode: bool) -> None:
        """``rounds`` times: ours on a fresh store, then the raw encode of the chunks it stored (alternating)."""
        for n in range(rounds):
            store = self._store(f"ours{n}")
            run = run_ours(self.folder, store)
            got = run.last_json()
            row: dict[str, Any] = {
                "ours": {"wall_s": run.wall_s, "cpu_s": run.cpu_s, "inside_s": got["seconds"], "chunks": got["chunks"],
                         "ingested": got["ingested"], "failed": got["failed"], "peak_rss_mb": run.peak_rss_mb},
            }  # fmt: skip
            if self.first is None:
                self.first, self.first_store = run, store
            print(
                f"  ours (round {n + 1}): {run.wall_s:.1f} s wall, {run.cpu_s:.1f} s CPU, {got['chunks']} chunks, "
                f"peak RSS {run.peak_rss_mb:.0f} MB"
            )
            if with_encode:
                enc_run, enc = run_helper("encode", {"store": str(store), "subset": self.scale["subset"]})
                enc["peak_rss_mb"] = enc_run.peak_rss_mb
                row["encode"] = enc
                print(
                    f"  raw encode (round {n + 1}): {enc['batches_s']:.1f} s wall, {enc['batches_cpu_s']:.1f} s CPU "
                    f"for {enc['chunks']} chunks (model load {enc['model_load_s']:.1f} s, warm-up "
                    f"{enc['warmup_s']:.1f} s excluded)"
                )
            self.result["rounds"].append(row)
        self._summarise()

    def _summarise(self) -> None:
        rounds = self.result["rounds"]
        ours_wall = median([r["ours"]["wall_s"] for r in rounds])
        summary: dict[str, Any] = {"ours_wall_s": ours_wall, "chunks": rounds[0]["ours"]["chunks"]}
        if all("encode" in r for r in rounds):
            per_round = [ratio(r["encode"]["batches_s"], r["ours"]["wall_s"]) for r in rounds]
            per_round_cpu = [ratio(r["encode"]["batches_cpu_s"], r["ours"]["cpu_s"]) for r in rounds]
            summary |= {
                "encode_s": median([r["encode"]["batches_s"] for r in rounds]),
                "model_load_s": median([r["encode"]["model_load_s"] for r in rounds]),
                "efficiency": median(per_round),
                "efficiency_cpu": median(per_round_cpu),
                "efficiency_per_round": per_round,
            }
            if all("subset" in r["encode"] for r in rounds):
                summary["one_call_over_batches"] = median(
                    [ratio(r["encode"]["subset_one_call_s"], r["encode"]["subset_batches_s"]) for r in rounds]
                )
        self.result["summary"] = summary

    def starters(self) -> None:
        self.result["starter"] = {}
        for label, embedder, size, overlap in STARTERS:
            spec = {"corpus": str(self.folder), "store": str(self._store(f"starter-{embedder}-{size}")),
                    "embedder": embedder, "chunk_size": size, "chunk_overlap": overlap}  # fmt: skip
            run, got = run_helper("starter", spec)
            got |= {"wall_s": run.wall_s, "cpu_s": run.cpu_s, "peak_rss_mb": run.peak_rss_mb}
            got["ratio_vs_ours"] = ratio(run.wall_s, self.result["summary"]["ours_wall_s"])
            self.result["starter"][label] = got
            print(
                f"  {label}: {run.wall_s:.1f} s wall, {got['chunks']} chunks (imports {got['import_s']:.1f} s, "
                f"model {got['model_load_s']:.1f} s, embedding {got['embed_s']:.1f} s)"
            )

    def rerun(self) -> None:
        assert self.first is not None and self.first_store is not None
        run = run_ours(self.folder, self.first_store)
        got = run.last_json()
        value = ratio(run.wall_s, self.first.wall_s)
        self.result["rerun"] = {"wall_s": run.wall_s, "inside_s": got["seconds"], "skipped": got["skipped"],
                                "ratio_vs_first": value}  # fmt: skip
        print(f"  re-run, unchanged: {run.wall_s:.2f} s ({got['skipped']} skipped), / first = {value:.3f}")

    def profile(self, fixes: list[str]) -> None:
        """Probed runs: as shipped, then with the trial fixes; efficiency of each against the same raw encode."""
        self.result["profile"] = {}
        encode_s = self.result["summary"].get("encode_s")
        variants = [("as shipped", [])] + ([("with " + "+".join(fixes), fixes)] if fixes else [])
        for label, names in variants:
            spec = {"corpus": str(self.folder), "store": str(self._store(f"profile-{len(names)}")), "fixes": names}
            run, got = run_helper("profile", spec)
            got |= {"wall_s": run.wall_s, "cpu_s": run.cpu_s, "peak_rss_mb": run.peak_rss_mb}
            got["efficiency"] = ratio(encode_s, run.wall_s) if encode_s else None
            self.result["profile"][label] = got
            eff = f", efficiency {got['efficiency']:.2f}" if got["efficiency"] else ""
            if agreement := got.get("tokenizer_agreement"):
                eff += f"; tokenizer ids identical on {agreement['identical']} of {agreement['texts']} chunks"
            print(f"  probed ingest {label}: {run.wall_s:.1f} s wall{eff}")


# --------------------------------------------------------------------------------------------- report
def corpus_table(bench: CorpusBench) -> str:
    r, info = bench.result, bench.info
    s = r["summary"]
    ours = r["rounds"][0]["ours"]
    lines = [
        f"### {info.kind}: {info.files} files ({info.chinese_files} Chinese, {info.english_files} English), "
        f"{info.bytes / 1e6:.2f} MB, mean {info.mean_file_kb:.1f} KB",
        "",
        "| pipeline | chunks | wall s | CPU s | peak RSS MB | of which embedding s | wall / ours |",
        "|---|---|---|---|---|---|---|",
        f"| ours: `python -m ingest CORPUS --json` (e5, 400/50 e5 tokens) | {s['chunks']} | {s['ours_wall_s']:.1f} | "
        f"{ours['cpu_s']:.1f} | {ours['peak_rss_mb']:.0f} | | 1.00 |",
    ]
    if "encode_s" in s:
        enc = r["rounds"][0]["encode"]
        lines.append(
            f"| raw encode of our chunks, `embed_passages` in batches of {enc['batch_size']} (model load "
            f"{s['model_load_s']:.1f} s excluded) | {enc['chunks']} | {s['encode_s']:.1f} | {enc['batches_cpu_s']:.1f} "
            f"| {enc['peak_rss_mb']:.0f} | {s['encode_s']:.1f} | {ratio(s['encode_s'], s['ours_wall_s']):.2f} |"
        )
    for label, st in r.get("starter", {}).items():
        lines.append(
            f"| {label} | {st['chunks']} | {st['wall_s']:.1f} | {st['cpu_s']:.1f} | {st['peak_rss_mb']:.0f} | "
            f"{st['embed_s']:.1f} | {st['ratio_vs_ours']:.2f} |"
        )
    if rerun := r.get("rerun"):
        lines.append(f"| ours, re-run on the unchanged corpus | | {rerun['wall_s']:.2f} | | | | "
                     f"{rerun['ratio_vs_first']:.3f} |")  # fmt: skip
    lines.append("")
    if "efficiency" in s:
        rounds = ", ".join(f"{v:.2f}" for v in s["efficiency_per_round"])
        lines.append(
            f"- **efficiency** = raw encode / ours wall = {s['encode_s']:.1f} / {s['ours_wall_s']:.1f} = "
            f"**{s['efficiency']:.2f}** ({verdict(s['efficiency'], TARGET_EFFICIENCY)}; rounds: {rounds}); "
            f"by CPU time {s['efficiency_cpu']:.2f}"
        )
        if "one_call_over_batches" in s:
            lines.append(
                f"- the first {r['rounds'][0]['encode']['subset']} chunks in one `embed_passages` call instead of "
                f"batches: {s['one_call_over_batches']:.2f}x the time"
            )
    for label, st in r.get("starter", {}).items():
        per_chunk = ratio(st["wall_s"] / max(st["chunks"], 1), s["ours_wall_s"] / max(s["chunks"], 1))
        lines.append(f"- {label}: time / ours {st['ratio_vs_ours']:.2f}; time per chunk / ours {per_chunk:.2f}")
    if rerun:
        value = rerun["ratio_vs_first"]
        lines.append(f"- re-run / first = {value:.3f} ({verdict(value, TARGET_RERUN)})")
    if profile := r.get("profile"):
        lines += ["", profile_table(profile)]
    return "\n".join(lines)


def profile_table(profile: dict[str, Any]) -> str:
    """Self time per probe (wall), for each probed variant side by side; the rest is outside every probe."""
    variants = list(profile)
    labels: list[str] = []
    for got in profile.values():
        labels += [k for k in got["probes"] if k not in labels and k not in ("main", "imports")]
    head = "| stage (self time, wall) | " + " | ".join(f"{v} s | %" for v in variants) + " |"
    lines = [head, "|---|" + "---|---|" * len(variants)]
    rows: list[tuple[str, list[float]]] = []
    for label in labels:
        rows.append((label, [got["probes"].get(label, {}).get("self_s", 0.0) for got in profile.values()]))
    outside = [got["wall_s"] - got["probes"]["main"]["inclusive_s"] - got["probes"]["imports"]["inclusive_s"]
               for got in profile.values()]  # fmt: skip
    rows.append(("interpreter start, exit and untimed glue", outside))
    rows.sort(key=lambda row: -row[1][0])
    for label, values in rows:
        if max(values) < 0.05:
            continue
        walls = [got["wall_s"] for got in profile.values()]
        cells = " | ".join(f"{v:.2f} | {100 * v / wall:.1f}" for v, wall in zip(values, walls, strict=True))
        lines.append(f"| {label.strip()} | {cells} |")
    totals = " | ".join(f"**{got['wall_s']:.1f}** | 100" for got in profile.values())
    lines.append(f"| whole process | {totals} |")
    effs = " | ".join(f"{got['efficiency']:.2f} | " if got.get("efficiency") else " | " for got in profile.values())
    lines.append(f"| efficiency (raw encode of the same chunks / this wall) | {effs}|")
    shares = " | ".join(f"{ratio(embed_seconds(got), got['wall_s']):.2f} | " for got in profile.values())
    lines.append(f"| embed_passages inside this process / this wall (same-process cross-check) | {shares}|")
    for label, got in profile.items():
        if agreement := got.get("tokenizer_agreement"):
            lines.append(f"\n{label}: the word-cached tokenizer gave the shipped ids on {agreement['identical']} of "
                         f"{agreement['texts']} stored chunks")  # fmt: skip
    return "\n".join(lines)


def embed_seconds(probed: dict[str, Any]) -> float:
    return probed["probes"].get(EMBED_LABEL, {}).get("inclusive_s", float("nan"))


def readme_rows(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(measurement, result, target) rows for bench/run_all.py's Markdown table."""
    rows: list[tuple[str, str, str]] = []
    for r in data.get("corpora", {}).values():
        info, s = r["corpus"], r["summary"]
        what = f"{info['files']} files, {info['bytes'] / 1e6:.1f} MB"
        rows.append((f"Ingest {info['kind']} ({what}): `python -m ingest`", f"{s['ours_wall_s']:.1f} s, "
                     f"{s['chunks']} chunks", ""))  # fmt: skip
        if "efficiency" in s:
            rows.append((f"  ingest efficiency, {info['kind']}: raw encode of our chunks / ours",
                         f"{s['encode_s']:.1f} / {s['ours_wall_s']:.1f} s = {s['efficiency']:.2f}",
                         TARGET_EFFICIENCY))  # fmt: skip
        for label, st in r.get("starter", {}).items():
            rows.append((f"  {label} / ours", f"{st['ratio_vs_ours']:.2f} ({st['wall_s']:.1f} s, {st['chunks']} "
                         "chunks)", ""))  # fmt: skip
        if rerun := r.get("rerun"):
            rows.append((f"  re-run on the unchanged corpus / first ({info['kind']})",
                         f"{rerun['ratio_vs_first']:.3f}", TARGET_RERUN))  # fmt: skip
    if pdf := data.get("pdf"):
        rows.append((f"Peak RSS ingesting a {pdf['pages']:,}-page PDF", f"{pdf['peak_rss_mb']:.0f} MB "
                     f"({pdf['wall_s']:.0f} s, {pdf['chunks']} chunks)", ""))  # fmt: skip
    return rows


# --------------------------------------------------------------------------------------------- main
def make_corpus(key: str, folder: Path, scale: dict[str, Any]) -> CorpusInfo:
    if key == "small":
        return make_small_files(folder, scale["small_files"])
    low, high = scale["large_bytes"]
    return make_large_files(folder, scale["large_files"], low, high)


def run_pdf(tmp: Path, pages: int) -> dict[str, Any]:
    path = tmp / "pdf" / "big-manual.pdf"
    path.parent.mkdir()
    info = make_pdf(path, pages)
    run = run_ours(path, tmp / "store-pdf")
    got = run.last_json()
    print(f"{pages}-page PDF: {run.wall_s:.1f} s, {got['chunks']} chunks, peak RSS {run.peak_rss_mb:.0f} MB")
    return info | {"wall_s": run.wall_s, "chunks": got["chunks"], "peak_rss_mb": run.peak_rss_mb}


def parse_args():
    def extra(parser):
        parser.add_argument("--parts", default=DEFAULT_PARTS, help=f"comma-separated subset of {','.join(PARTS)}")
        parser.add_argument("--corpora", default="small,large", help="comma-separated subset of small,large")
        parser.add_argument("--rounds", type=int, default=1, help="ours + raw encode repeated, alternating")
        parser.add_argument("--profile", action="store_true", help="profile even when the efficiency target is met")
        parser.add_argument("--fixes", default=DEFAULT_FIXES, help="trial fixes for the profile ('' for none)")
        parser.add_argument("--keep", action="store_true", help="keep the temp folder (corpora, stores)")

    args = parse_scale("Ingestion cost: ours vs raw encode vs the llama-index starter", extra=extra)
    args.part_set = {p.strip() for p in args.parts.split(",") if p.strip()} | ({"profile"} if args.profile else set())
    args.corpus_keys = [c.strip() for c in args.corpora.split(",") if c.strip()]
    if unknown := (args.part_set - set(PARTS)) | (set(args.corpus_keys) - set(CORPORA)):
        sys.exit(f"unknown parts or corpora {sorted(unknown)}; parts: {','.join(PARTS)}; corpora: small,large")
    return args


def main() -> int:
    args = parse_args()
    scale = SCALES[args.scale]
    results = header(NAME, args) | {"parts": sorted(args.part_set), "corpora": {}}
    tmp = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    fixes = [f.strip() for f in args.fixes.split(",") if f.strip()]
    tables: list[str] = []
    try:
        for key in args.corpus_keys:
            t = time.perf_counter()
            folder = tmp / f"corpus-{key}"
            info = make_corpus(key, folder, scale)
            made = time.perf_counter() - t
            print(f"## {info.kind}: {info.files} files, {info.bytes / 1e6:.2f} MB (made in {made:.1f} s)")
            bench = CorpusBench(key, folder, info, tmp, scale)
            bench.ours_and_encode(max(1, args.rounds), "encode" in args.part_set)
            if "starter" in args.part_set:
                bench.starters()
            if "rerun" in args.part_set:
                bench.rerun()
            efficiency = bench.result["summary"].get("efficiency", 0.0)
            if "profile" in args.part_set and (args.profile or efficiency < 0.85):
                bench.profile(fixes)
            results["corpora"][key] = bench.result
            tables.append(corpus_table(bench))
        if "pdf" in args.part_set:
            results["pdf"] = run_pdf(tmp, scale["pdf_pages"])
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\n" + "\n\n".join(tables))
    write_results(NAME, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
