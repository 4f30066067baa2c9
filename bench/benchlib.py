"""What the benchmark scripts share: paths, the command header, child processes with their own peak memory, stats.

Benchmarks print numbers and ratios and write them to ``bench/results/<name>.json``; they never assert on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable

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
    print(f"# {name} (scale={args.scale})")
    print(f"# command: {command}   (from {ROOT})")
    print(f"# machine: {machine['platform']}, {machine['cpu_count']} CPUs, load average {machine['load_avg_at_start']}")
    if (ROOT / ".env").exists():
        print("# note: a .env file exists in the repo root; RAG_* values in it apply to the measured runs")
    print()
    return {"command": command, "scale": args.scale, "machine": machine, "started": time.strftime("%Y-%m-%d %H:%M:%S")}


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
