"""Calibrate RAG_MIN_RELEVANCE: best-hit relevance of answerable vs unanswerable questions.

    .venv/bin/python bench/calibrate_grounding.py [--store DIR]

Ingests data/ (and ../shared/corpus when present) into a temporary store with the packaged models, then prints the
best relevance per question for answerable questions (bench/datasets/guide-qa.json, ../shared/eval/seeds-dev.json)
and off-topic ones (bench/datasets/unanswerable.json), and how each threshold would classify them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from rag.config import Settings
from rag.service import RagService

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", type=Path, default=None)
    args = parser.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="calibrate-"))
    service = RagService(Settings(store_dir=store))
    folders = [ROOT / "data"] + ([SHARED / "corpus"] if (SHARED / "corpus").exists() else [])
    service.ingestor.ingest_paths(folders)

    answerable = [q["question"] for q in json.loads((ROOT / "bench/datasets/guide-qa.json").read_text())]
    if (SHARED / "eval/seeds-dev.json").exists():
        answerable += [q["question"] for q in json.loads((SHARED / "eval/seeds-dev.json").read_text())]
    off_topic = json.loads((ROOT / "bench/datasets/unanswerable.json").read_text())

    def best(question: str) -> float:
        return max((h.relevance for h in service.retriever.search(question, 5)), default=0.0)

    yes = sorted(best(q) for q in answerable)
    no = sorted(best(q) for q in off_topic)
    print(f"answerable ({len(yes)}): " + " ".join(f"{v:.2f}" for v in yes))
    print(f"off-topic  ({len(no)}): " + " ".join(f"{v:.2f}" for v in no))
    print("threshold  answered-when-answerable  abstained-when-off-topic")
    for threshold in (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6):
        kept = sum(v >= threshold for v in yes) / len(yes)
        refused = sum(v < threshold for v in no) / len(no)
        print(f"{threshold:9.2f}  {kept:24.2f}  {refused:24.2f}")


if __name__ == "__main__":
    main()
