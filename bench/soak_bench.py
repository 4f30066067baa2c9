"""Soak and faults: questions while `python -m ingest` writes the same embedded store, and kill -9 at exact steps.

Everything runs on this machine against temporary embedded stores (no network, no server). Two parts:

1. Latency under a concurrent ingest. A store is filled with the repository's real texts (bench/corpus/en, data/,
   the Chinese articles in ../shared/corpus when present). Reader processes (``--child reader``) each build one
   ``RagService``, as the app does (one per process, shared by its sessions), and run T threads that ask questions
   back to back through ``service.retriever.search(question, 5)``: the part of a question that touches the store
   (generation is llama.cpp behind its own lock; bench/answer_bench.py times it). Questions are the English and
   Chinese dev questions. Phases, marked by wall-clock time: idle (no writer), while ``python -m ingest FOLDER``
   runs in another process, then idle again (this one includes the readers catching up with the commit). Per phase:
   p50/p95 latency, questions per second, errors (count and first messages), searches that returned nothing; plus
   how long after the ingest exited the readers saw all its documents, and ``python -m ingest --check`` afterwards.
   Configurations: 16 threads in one process while the ingest adds new files; at full scale also 4 processes of 4
   threads while the ingest replaces every one of those files (atomic replace under readers).
2. Faults (fake embedder, RAG_CHUNK_SIZE=64): ``python -m tests.crash_helper STEP ARGS`` SIGKILLs `python -m ingest`
   at an exact step of the write order (tests/crash_helper.py): during a replace (after the new chunks are written,
   after the ledger switched, before the keyword-index update) and during a delete (``--remove``: after the ledger
   record is deleted, before the keyword-index update). Each is followed by ``python -m ingest --check --json``, one
   normal run of the same command (which repairs on entry), ``--check`` again (must be clean), and a comparison with a
   clean ingest of the same files into a fresh store (documents, chunk texts, no chunk left over). At full scale also
   kill -9 at random moments of three successive replaces of a 40-file folder.

Embedder: ``--embedder fake`` (word hashing, RAG_CHUNK_SIZE=64) or ``default`` (the packaged multilingual-e5-small,
default chunking). The latency part uses ``fake`` at small scale (bounded to ~3 minutes) and ``default`` at full; the
fault part always uses ``fake`` (what is tested is the write order, not the vectors).

Usage: .venv/bin/python bench/soak_bench.py --scale small|full [--embedder fake|default]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import (
    PY,
    ROOT,
    ChildRun,
    clean_env,
    dev_questions,
    header,
    latency_stats,
    parse_scale,
    print_table,
    process_memory_mb,
    real_texts,
    run_child,
    sentence_pools,
    write_results,
)

NAME = "soak_bench"
SCALES: dict[str, dict[str, Any]] = {
    "small": {"embedder": "fake", "idle_s": 6.0, "incoming": 24, "process_readers": False, "random_kills": 0},
    "full": {"embedder": "default", "idle_s": 15.0, "incoming": 60, "process_readers": True, "random_kills": 3},
}
FAKE_ENV = {"RAG_EMBED_MODEL": "fake", "RAG_CHUNK_SIZE": "64", "RAG_CHUNK_OVERLAP": "8", "RAG_EMBED_BATCH_SIZE": "16"}
THREADS = 16
PROCESS_SPLIT = (4, 4)  # processes x threads for the several-processes configuration
TOP_K = 5
FILE_CHARS = {"zh": 1500, "en": 3500}
FAULT_FILES = 6
RANDOM_KILL_FILES = 40
READY_TIMEOUT_S = 300
SEED = 20250612
# The kinds of problem `--check` reports, by a phrase of their text (ingest/check.py), for the summary table.
PROBLEM_KINDS = [
    ("interrupted write", "interrupted write"),
    ("belong to no committed document", "orphan chunks"),
    ("keyword index is behind", "keyword index behind"),
    ("keyword index was built by tokenizer", "old tokenizer"),
    ("changed since it was ingested", "file changed"),
    ("is gone from disk", "file gone"),
    ("chunks are stored", "chunks missing"),
    ("chunk numbers", "chunk numbers"),
]


# --------------------------------------------------------------------------------------------- files
def write_documents(folder: Path, count: int, version: int, prefix: str = "doc") -> list[Path]:
    """``count`` text files of consecutive real sentences, alternately Chinese and English; another ``version``
    gives every file other content (a replace)."""
    folder.mkdir(parents=True, exist_ok=True)
    pools = sentence_pools()
    languages = [lang for lang in ("zh", "en") if lang in pools]
    rng = np.random.default_rng(SEED + 1000 * version + count)
    paths = []
    for i in range(count):
        language = languages[i % len(languages)]
        pool = pools[language]
        text, _ = pool.window(int(rng.integers(len(pool.sentences))), FILE_CHARS[language] * rng.uniform(0.7, 1.3))
        path = folder / f"{prefix}_{i:03d}.txt"
        path.write_text(f"{text}\n(version {version})\n", encoding="utf-8")
        paths.append(path)
    return paths


def copy_real_texts(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for files in real_texts().values():
        for name, text in files:
            (folder / name).write_text(text, encoding="utf-8")
            count += 1
    return count


# --------------------------------------------------------------------------------------------- CLI runs
def cli_env(store: Path, embedder: str) -> dict[str, str]:
    extra = FAKE_ENV if embedder == "fake" else {}
    return clean_env(RAG_STORE_DIR=str(store), RAG_COLLECTION="soak", RAG_LLM_MODEL="fake", **extra)


def ingest(env: dict[str, str], *args: str, step: str | None = None) -> ChildRun:
    command = [PY, "-m", "tests.crash_helper", step] if step else [PY, "-m", "ingest"]
    return run_child([*command, *args, "--json"], env=env, timeout=1800)


def check(env: dict[str, str]) -> dict[str, Any]:
    run = run_child([PY, "-m", "ingest", "--check", "--json"], env=env, timeout=600)
    try:
        report = run.last_json()
    except ValueError:
        return {"clean": False, "problems": [{"what": f"--check failed: {run.stderr.strip()[-300:]}"}], "rc": -1}
    report["rc"] = run.returncode
    report["seconds"] = round(run.wall_s, 2)
    return report


def check_summary(report: dict[str, Any]) -> str:
    if report.get("clean"):
        return "clean"
    kinds: Counter[str] = Counter()
    for problem in report.get("problems", []):
        what = problem.get("what", "")
        kind = next((name for phrase, name in PROBLEM_KINDS if phrase in what), what[:40])
        number = re.match(r"(\d+) stored chunks", what)
        kinds[f"{number.group(1)} orphan chunks" if number else kind] += 1
    return "; ".join(kind if n == 1 else f"{kind} x{n}" for kind, n in kinds.items())


def run_summary(run: ChildRun) -> str:
    if run.returncode == -signal.SIGKILL:
        return "killed"
    tail = run.stderr.strip().splitlines()[-1:] if run.returncode else []
    message = re.sub(r"/\S*/", "", tail[0]).removeprefix("Error: ") if tail else ""  # file names, not paths
    return f"rc {run.returncode}" + (f": {message[:60]}" if message else "")


# --------------------------------------------------------------------------------------------- readers
def reader(args: argparse.Namespace) -> int:
    """A reader process: one RagService, ``--threads`` threads asking back to back until the stop file appears."""
    from rag.cli_common import quiet_libraries
    from rag.config import load_settings
    from rag.service import RagService

    quiet_libraries()
    started = time.perf_counter()
    service = RagService(load_settings())
    retriever = service.retriever
    asked = dev_questions(60, SEED + args.seed)
    pool = [q for pair in zip(asked["en"], asked["zh"], strict=False) for q in pair]
    for question in pool[:4]:  # models loaded, first refresh done: what a running app has behind it
        retriever.search(question, TOP_K)
    load_s = time.perf_counter() - started
    stop = Path(args.stop)
    records: list[list[Any]] = []
    seen: list[tuple[float, int]] = []

    def ask(k: int) -> None:
        i = k
        while not stop.exists():
            question = pool[i % len(pool)]
            i += args.threads
            wall, t = time.time(), time.perf_counter()
            try:
                hits, error = len(retriever.search(question, TOP_K)), None
            except Exception as exc:  # what a user would see as a failed question: counted and reported
                hits, error = 0, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc) else ''}"
            records.append([wall, time.perf_counter() - t, error, hits])

    def watch() -> None:  # what the library view would show: documents visible to this process
        while not stop.exists():
            with contextlib.suppress(Exception):  # a failing refresh shows up in the questions' errors
                seen.append((time.time(), len(retriever.documents)))
            time.sleep(0.2)

    threads = [threading.Thread(target=ask, args=(k,), daemon=True) for k in range(args.threads)]
    threads.append(threading.Thread(target=watch, daemon=True))
    for thread in threads:
        thread.start()
    Path(args.ready).write_text("ready")
    for thread in threads:
        thread.join()
    out = {"records": records, "seen": seen, "load_s": load_s, "memory": process_memory_mb()}
    Path(args.out).write_text(json.dumps(out))
    return 0


def start_readers(work: Path, env: dict[str, str], label: str, n_procs: int, threads: int) -> tuple[list, Path]:
    stop = work / f"stop-{label}"
    procs = []
    for p in range(n_procs):
        files = {kind: work / f"{kind}-{label}-{p}" for kind in ("ready", "out", "log")}
        command = [PY, __file__, "--child", "reader", "--threads", str(threads), "--seed", str(p)]
        command += ["--ready", str(files["ready"]), "--stop", str(stop), "--out", str(files["out"])]
        log = files["log"].open("w")
        procs.append((subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), files, log))
    deadline = time.monotonic() + READY_TIMEOUT_S
    for proc, files, _ in procs:
        while not files["ready"].exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"reader did not start: {files['log'].read_text()[-2000:]}")
            time.sleep(0.1)
    return procs, stop


def stop_readers(procs: list, stop: Path) -> list[dict[str, Any]]:
    stop.touch()
    outs = []
    for proc, files, log in procs:
        try:
            proc.wait(timeout=120)
        finally:
            log.close()
        if proc.returncode != 0 or not files["out"].exists():
            raise RuntimeError(f"reader failed ({proc.returncode}): {files['log'].read_text()[-2000:]}")
        outs.append(json.loads(files["out"].read_text()))
    return outs


def phase_stats(outs: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    records = [r for out in outs for r in out["records"] if start <= r[0] < end]
    errors = [r[2] for r in records if r[2]]
    ok = [r[1] for r in records if not r[2]]
    return {
        "seconds": round(end - start, 1),
        "questions": len(records),
        "per_second": round(len(records) / max(end - start, 1e-9), 1),
        "latency": latency_stats(ok),
        "errors": len(errors),
        "first_errors": list(dict.fromkeys(errors))[:5],
        "empty_results": sum(1 for r in records if not r[2] and r[3] == 0),
        "first_error_after_s": round(min(r[0] for r in records if r[2]) - start, 1) if errors else None,
    }


def visible_after(outs: list[dict[str, Any]], expected: int, since: float) -> float | None:
    """Seconds after ``since`` until every reader process saw ``expected`` documents (None: not within the run)."""
    lags = []
    for out in outs:
        times = [t for t, n in out["seen"] if n >= expected and t >= since - 60]
        if not times:
            return None
        lags.append(max(0.0, min(times) - since))
    return max(lags) if lags else None


# --------------------------------------------------------------------------------------------- part 1
def latency_part(work: Path, embedder: str, scale: dict[str, Any]) -> dict[str, Any]:
    store = work / "store-latency"
    env = cli_env(store, embedder)
    base_files = copy_real_texts(work / "base")
    base = ingest(env, str(work / "base")).check()
    incoming = work / "incoming"
    write_documents(incoming, scale["incoming"], version=1)
    n_docs = base_files + scale["incoming"]
    print(
        f"store: {base_files} real-text files, {base.last_json()['chunks']} chunks ({base.wall_s:.0f} s to ingest); "
        f"embedder: {embedder}; the ingest under load: {scale['incoming']} files"
    )
    configs = [("16 threads x 1 process, ingest adds files", 1, THREADS, 1)]
    if scale["process_readers"]:
        label = f"{PROCESS_SPLIT[1]} threads x {PROCESS_SPLIT[0]} processes, ingest replaces them"
        configs.append((label, PROCESS_SPLIT[0], PROCESS_SPLIT[1], 2))
    out: dict[str, Any] = {"embedder": embedder, "base_chunks": base.last_json()["chunks"], "configs": []}
    for number, (label, n_procs, threads, version) in enumerate(configs):
        if version > 1:
            write_documents(incoming, scale["incoming"], version=version)
        procs, stop = start_readers(work, env, f"c{number}", n_procs, threads)
        t0 = time.time()
        time.sleep(scale["idle_s"])
        t1 = time.time()
        run = ingest(env, str(incoming))
        t2 = time.time()
        time.sleep(scale["idle_s"])
        t3 = time.time()
        outs = stop_readers(procs, stop)
        report = check(env)
        result = {
            "label": label,
            "processes": n_procs,
            "threads_per_process": threads,
            "ingest": {"rc": run.returncode, "wall_s": round(run.wall_s, 1), **_json_or_error(run)},
            "phases": {
                "idle before": phase_stats(outs, t0, t1),
                "during ingest": phase_stats(outs, t1, t2),
                "idle after": phase_stats(outs, t2, t3),
            },
            "all_documents_visible_after_s": visible_after(outs, n_docs, t2),
            "reader_rss_mb": [o["memory"].get("rss_mb") for o in outs],
            "reader_load_s": [round(o["load_s"], 1) for o in outs],
            "check_after": report,
        }
        out["configs"].append(result)
        print_config(result)
    return out


def _json_or_error(run: ChildRun) -> dict[str, Any]:
    try:
        return {"report": run.last_json()}
    except ValueError:
        return {"stderr": run.stderr.strip()[-500:]}


def print_config(result: dict[str, Any]) -> None:
    ingest_info = result["ingest"]
    report = ingest_info.get("report", {})
    print(
        f"\n== {result['label']}: ingest rc {ingest_info['rc']}, {ingest_info['wall_s']} s, "
        f"{report.get('ingested', '?')} files ingested"
    )
    rows = []
    for name, s in result["phases"].items():
        lat = s["latency"]
        rows.append([name, f"{s['seconds']:.1f}", s["questions"], f"{s['per_second']:.1f}", f"{lat['p50_ms']:.1f}",
                     f"{lat['p95_ms']:.1f}", f"{lat['max_ms']:.1f}", s["errors"], s["empty_results"]])  # fmt: skip
    headers = ["phase", "s", "questions", "q/s", "p50 ms", "p95 ms", "max ms", "errors", "empty"]
    print_table(headers, rows, right=set(range(1, 9)))
    for name, s in result["phases"].items():
        if s["errors"]:
            print(f"  {name}: first error {s['first_error_after_s']} s into the phase; first messages:")
        for message in s["first_errors"]:
            print(f"    {message}")
    lag = result["all_documents_visible_after_s"]
    print(
        f"readers saw all documents {f'{lag:.1f} s' if lag is not None else 'NOT'} after the ingest exited; "
        f"reader RSS {result['reader_rss_mb']} MB; --check afterwards: {check_summary(result['check_after'])}"
    )


# --------------------------------------------------------------------------------------------- part 2
def fault_settings(store: Path):
    from rag.config import Settings

    return Settings(
        _env_file=None, store_dir=store, collection="soak", embed_model="fake", chunk_size=64, chunk_overlap=8,
        embed_batch_size=16,
    )  # fmt: skip


def clean_content(work: Path, files: list[Path]) -> dict[str, Any]:
    """What a clean ingest of these files (copied, same names) into a fresh store holds."""
    from ingest.pipeline import Ingestor

    folder = Path(tempfile.mkdtemp(dir=work, prefix="clean-files-"))
    for path in files:
        shutil.copy(path, folder / path.name)
    store = Path(tempfile.mkdtemp(dir=work, prefix="clean-store-"))
    report = Ingestor(fault_settings(store)).ingest_paths([folder])
    if report.failed:
        raise RuntimeError(f"clean reference ingest failed: {report.failed}")
    return store_content(store)


def store_content(store_dir: Path) -> dict[str, Any]:
    """Documents by file name (hash, chunk count), chunk texts, and whether anything else is stored."""
    from rag.store import Store, fresh_client

    settings = fault_settings(store_dir)
    store = Store(settings, fresh_client(settings), create=False)
    records = store.documents()
    texts = {}
    for record in records.values():
        for chunk in store.document_chunks(record):
            texts[f"{record.file_name}#{chunk.meta.get('chunk_index')}"] = chunk.text
    return {
        "documents": {r.file_name: [r.doc_hash, r.n_chunks] for r in records.values()},
        "texts": texts,
        "extra_stored_chunks": store.chunk_count_raw() - sum(r.n_chunks for r in records.values()),
    }


def same_content(got: dict[str, Any], want: dict[str, Any]) -> bool:
    return got["documents"] == want["documents"] and got["texts"] == want["texts"] and got["extra_stored_chunks"] == 0


def fault_part(work: Path, random_kills: int) -> dict[str, Any]:
    store = work / "store-faults"
    env = cli_env(store, "fake")
    folder = work / "faults"
    files = write_documents(folder, FAULT_FILES, version=1)
    ingest(env, str(folder)).check()
    removed: list[Path] = []
    cases = [
        ("replace: killed after new chunks written", "chunks-written", None),
        ("replace: killed after ledger switch", "ledger-switched", None),
        ("replace: killed before keyword update", "keyword-update", None),
        ("delete: killed after ledger switch", "ledger-switched", files[1]),
        ("delete: killed before keyword update", "keyword-update", files[2]),
    ]
    rows = []
    for version, (label, step, target) in enumerate(cases, start=2):
        if target is None:
            write_documents(folder, FAULT_FILES, version=version)
            args = [str(folder)]
        else:
            args = ["--remove", str(target)]
            removed.append(target)
        killed = ingest(env, *args, step=step)
        before = check(env)
        normal = ingest(env, *args)
        after = check(env)
        kept = [p for p in files if p not in removed]
        same = same_content(store_content(store), clean_content(work, kept))
        rows.append(fault_row(label, f"python -m tests.crash_helper {step} {' '.join(_short(a) for a in args)}",
                              killed, before, normal, after, same))  # fmt: skip
    if random_kills:
        rows += random_kill_rows(work, random_kills)
    print_fault_table(rows)
    return {"rows": rows}


def _short(arg: str) -> str:
    return Path(arg).name if os.sep in arg else arg


def fault_row(label, command, killed, before, normal, after, same) -> dict[str, Any]:
    return {
        "fault": label,
        "command": command,
        "killed": run_summary(killed),
        "check_before": check_summary(before),
        "check_before_report": before,
        "normal_run": run_summary(normal),
        "check_after": check_summary(after),
        "check_after_report": after,
        "same_as_clean_run": same,
    }


def random_kill_rows(work: Path, kills: int) -> list[dict[str, Any]]:
    """kill -9 at random moments of successive replaces of a larger folder, then one normal run."""
    store = work / "store-random"
    env = cli_env(store, "fake")
    folder = work / "random"
    files = write_documents(folder, RANDOM_KILL_FILES, version=1, prefix="big")
    first = ingest(env, str(folder)).check()
    rng = random.Random(SEED)
    rows = []
    for k in range(kills):
        write_documents(folder, RANDOM_KILL_FILES, version=10 + k, prefix="big")
        delay = rng.uniform(0.3, 1.0) * first.wall_s
        proc = subprocess.Popen([PY, "-m", "ingest", str(folder), "--json"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = check(env)
        state = "killed" if proc.returncode == -signal.SIGKILL else f"had exited (rc {proc.returncode})"
        label = f"replace of {RANDOM_KILL_FILES} files: kill -9 at {delay:.1f} s"
        rows.append({"fault": label, "command": "", "killed": state, "check_before": check_summary(before),
                     "check_before_report": before})  # fmt: skip
    normal = ingest(env, str(folder))
    after = check(env)
    same = same_content(store_content(store), clean_content(work, files))
    rows[-1].update(normal_run=run_summary(normal), check_after=check_summary(after), check_after_report=after,
                    same_as_clean_run=same)  # fmt: skip
    return rows


def print_fault_table(rows: list[dict[str, Any]]) -> None:
    print("\n== faults: kill -9 of `python -m ingest`, then --check, one normal run, --check again")
    table = []
    for r in rows:
        same = r.get("same_as_clean_run")
        table.append([r["fault"], r["killed"], r["check_before"], r.get("normal_run", ""), r.get("check_after", ""),
                      "" if same is None else ("yes" if same else "NO")])  # fmt: skip
    print_table(["fault", "process", "check before", "normal run", "check after", "same as clean run"], table)


# --------------------------------------------------------------------------------------------- main
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--embedder", choices=("fake", "default"), help="embedder of the latency part")
    parser.add_argument("--skip", choices=("latency", "faults"), action="append", default=[], help="leave a part out")
    parser.add_argument("--child", choices=("reader",), help=argparse.SUPPRESS)
    for name in ("--threads", "--seed"):
        parser.add_argument(name, type=int, default=0, help=argparse.SUPPRESS)
    for name in ("--ready", "--stop", "--out"):
        parser.add_argument(name, help=argparse.SUPPRESS)


def main() -> int:
    args = parse_scale("Soak and fault benchmark", extra=add_arguments)
    if args.child == "reader":
        return reader(args)
    for key in [k for k in os.environ if k.startswith("RAG_")]:
        del os.environ[key]
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    results = header(NAME, args)
    scale = dict(SCALES[args.scale])
    embedder = args.embedder or scale["embedder"]
    results["settings"] = {**scale, "latency_embedder": embedder, "fault_embedder": "fake", **FAKE_ENV}
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="soak-bench-"))
    try:
        if "latency" not in args.skip:
            results["latency"] = latency_part(work, embedder, scale)
        if "faults" not in args.skip:
            from rag.cli_common import quiet_libraries

            quiet_libraries()
            results["faults"] = fault_part(work, scale["random_kills"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    print_verdicts(results)
    write_results(NAME, results)
    return 0


def print_verdicts(results: dict[str, Any]) -> None:
    print()
    for config in results.get("latency", {}).get("configs", []):
        errors = sum(p["errors"] for p in config["phases"].values())
        print(f"{config['label']}: {errors} errors; --check after: {check_summary(config['check_after'])}")
    rows = results.get("faults", {}).get("rows", [])
    final = [r for r in rows if "check_after" in r]
    if final:
        clean = sum(r["check_after"] == "clean" for r in final)
        same = sum(bool(r.get("same_as_clean_run")) for r in final)
        print(f"faults: --check clean after the normal run in {clean} of {len(final)} cases; "
              f"same content as a clean run in {same} of {len(final)}")  # fmt: skip
    print(f"total time {results['seconds']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
