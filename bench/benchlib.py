"""What the benchmark scripts share: paths, the command header, child processes with their own peak memory, stats.

Benchmarks print numbers and ratios and write them to ``bench/results/<name>.json``; they never assert on time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
SHARED = Path(os.environ.get("DOCCHAT_SHARED", ROOT.parent / "shared"))  # the team's folder beside the repository
ZH_ARTICLES = SHARED / "corpus" / "zh-llm-articles"
EN_CORPUS = ROOT / "bench" / "corpus" / "en"

if str(ROOT) not in sys.path:  # the scripts run as `python bench/x.py`: make `rag` and `ingest` importable
    sys.path.insert(0, str(ROOT))


def parse_scale(description: str, argv: list[str] | None = None, extra=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--scale", choices=("small", "full"), default="small", help="small for development, full for README numbers"
    )
    if extra:
        extra(parser)
    return parser.parse_args(argv)


def header(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Print the exact command and the machine, and return them for the results file."""
    command = " ".join(
        shlex.quote(a) for a in [os.path.relpath(PY, ROOT), os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]
    )
    machine = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    machine["code"] = code_state()
    print(f"# {name} (scale={args.scale})")
    print(f"# command: {command}   (from {ROOT})")
    print(f"# machine: {machine['platform']}, {machine['cpu_count']} CPUs, load average {machine['load_avg_at_start']}")
    if (ROOT / ".env").exists():
        print("# note: a .env file exists in the repo root; RAG_* values in it apply to the measured runs")
    print(f"# code: {machine['code']}")
    print()
    return {"command": command, "scale": args.scale, "machine": machine, "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def code_state() -> str:
    """The commit measured, and which files of the app differ from it (others may be editing the tree meanwhile)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "diff", "--name-only", "HEAD", "--", "rag", "ingest", "ui"],
            cwd=ROOT, capture_output=True, text=True, timeout=10,
        ).stdout.split()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return f"{commit}" + (f" with local changes to {', '.join(changed)}" if changed else "")


def write_results(name: str, results: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    results.setdefault("machine", {})["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"\nresults written to {os.path.relpath(path, ROOT)}")
    return path


def clean_env(**overrides: str) -> dict[str, str]:
    """The caller's environment without RAG_* settings (the measured runs use defaults), plus overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.setdefault("ANONYMIZED_TELEMETRY", "False")
    env.update(overrides)
    return env


@dataclass
class ChildRun:
    command: list[str]
    returncode: int
    wall_s: float
    peak_rss_mb: float  # of this child alone (wait4), children it spawned not included
    stdout: str
    stderr: str
    cpu_s: float = 0.0  # user + system CPU seconds of this child alone (all its threads), from the same wait4

    def check(self) -> ChildRun:
        if self.returncode != 0:
            raise RuntimeError(
                f"command failed ({self.returncode}): {' '.join(self.command)}\n"
                f"{self.stderr[-4000:]}{self.stdout[-2000:]}"
            )
        return self

    def last_json(self) -> Any:
        """The last line of stdout that parses as JSON (libraries may print before it)."""
        for line in reversed(self.stdout.strip().splitlines()):
            try:
                return json.loads(line)
            except ValueError:
                continue
        raise ValueError(f"no JSON line in the output of {' '.join(self.command)}:\n{self.stdout[-2000:]}")


def run_child(
    command: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 3600
) -> ChildRun:
    """Run a command to completion; wall time from spawn to exit, and the child's own peak RSS from wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=cwd)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        # ru_maxrss is KiB on Linux, bytes on macOS
        scale = 1 / (1024 * 1024) if sys.platform == "darwin" else 1 / 1024
        return ChildRun(
            command=command,
            returncode=proc.returncode,
            wall_s=wall,
            peak_rss_mb=usage.ru_maxrss * scale,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            cpu_s=usage.ru_utime + usage.ru_stime,
        )


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in 0..100."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def verdict(value: float, target: str) -> str:
    """'>= 1.0' / '< 0.03' / '<= 50' -> 'target >= 1.0: met' (informational: benchmarks never fail on time)."""
    op, number = target.split()
    limit = float(number)
    ok = {">=": value >= limit, "<=": value <= limit, ">": value > limit, "<": value < limit}[op]
    return f"target {target}: {'met' if ok else 'NOT met'}"


def latency_stats(seconds: list[float]) -> dict[str, float]:
    """n, p50, p95 and max of durations given in seconds, reported in milliseconds."""
    ms = [v * 1000 for v in seconds]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "max_ms": max(ms) if ms else math.nan,
    }


def process_memory_mb() -> dict[str, float]:
    """This process's resident memory now (``rss_mb``) and at its peak so far (``peak_rss_mb``); Linux only."""
    names = {"VmRSS": "rss_mb", "VmHWM": "peak_rss_mb"}
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in names:
                    out[names[key]] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return out


# --------------------------------------------------------------------------------------------- real prose
_SENTENCE_END = re.compile(r"(?<=[。！？!?；])|(?<=\.)\s+|\n+")


def real_texts() -> dict[str, list[tuple[str, str]]]:
    """(file name, text) of the prose we may use, by language: the English dev corpus, and the team's Chinese
    articles (the Chinese sample guide when ``SHARED`` is absent). Nothing is downloaded; the sample guides in data/
    are left out otherwise, since they change with the app (cached benchmark inputs would change with them)."""
    chinese = sorted(ZH_ARTICLES.glob("*.txt")) if ZH_ARTICLES.is_dir() else [ROOT / "data" / "用户指南.md"]
    return {
        "en": [(p.name, p.read_text(encoding="utf-8")) for p in sorted(EN_CORPUS.glob("*.txt"))],
        "zh": [(p.name, p.read_text(encoding="utf-8")) for p in chinese if p.is_file()],
    }


@dataclass
class SentencePool:
    """Every sentence of one language's real texts, in file order: consecutive runs of them make realistic chunks
    and documents (windows that start at different sentences are distinct texts)."""

    language: str
    sentences: list[str] = field(default_factory=list)

    @property
    def joiner(self) -> str:
        return "" if self.language == "zh" else " "

    def window(self, start: int, chars: float) -> tuple[str, int]:
        """Sentences from ``start`` (wrapping around) until about ``chars`` characters; the text and the next start."""
        parts: list[str] = []
        length = 0
        index = start % len(self.sentences)
        while length < chars and len(parts) < len(self.sentences):
            parts.append(self.sentences[index])
            length += len(parts[-1]) + len(self.joiner)
            index = (index + 1) % len(self.sentences)
        return self.joiner.join(parts), index


def sentence_pools(min_chars: int = 8) -> dict[str, SentencePool]:
    """One pool per language from :func:`real_texts` (headings and fragments under ``min_chars`` left out)."""
    pools = {}
    for language, files in real_texts().items():
        pool = SentencePool(language)
        for _name, text in files:
            pool.sentences += [s.strip() for s in _SENTENCE_END.split(text) if len(s.strip()) >= min_chars]
        if pool.sentences:
            pools[language] = pool
    return pools


def dev_questions(per_language: int, seed: int = 0) -> dict[str, list[str]]:
    """Real questions from the dev sets by language ("en", "zh"; traditional Chinese counts as Chinese), without
    repeats, shuffled with ``seed``: the load for latency benchmarks."""
    import numpy as np

    from rag.language import detect_language

    datasets = ROOT / "bench" / "datasets"
    files = [SHARED / "eval" / "seeds-dev.json", SHARED / "eval" / "seeds-dev-en.json"]
    files += [*sorted(datasets.glob("*-dev.json")), datasets / "guide-qa.json"]
    found: dict[str, list[str]] = {"en": [], "zh": []}
    for path in files:
        if not path.exists() or path.name.startswith("offtopic"):
            continue
        for item in json.loads(path.read_text(encoding="utf-8")):
            question = item.get("question") if isinstance(item, dict) else None
            language = detect_language(question) if question else None
            if language in found and question not in found[language]:
                found[language].append(question)
    rng = np.random.default_rng(seed)
    return {lang: [qs[i] for i in rng.permutation(len(qs))][:per_language] for lang, qs in found.items()}


def print_table(headers: list[str], rows: list[list[Any]], right: set[int] | frozenset[int] = frozenset()) -> None:
    """A plain-text table, each column as wide as its widest cell; columns in ``right`` are right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        padded = (v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True)))
        return " | ".join(padded)

    print(line(headers).rstrip())
    print("-|-".join("-" * w for w in widths))
    for row in cells:
        print(line(row).rstrip())
