"""Validate the development question sets under bench/datasets before anyone tunes or reports on them.

Why: every constant we tune is chosen on the "tune" half and reported on the "report" half, by language pair. That is
only honest if the halves are fixed, balanced and shared between a question and its translations, and if each gold
string really is in the document the question points at. This script checks all of that and prints a summary per file;
it exits 1 on any problem. Gold strings that occur more than once in their corpus are listed (allowed, but noted).

    .venv/bin/python bench/check_datasets.py [--shared ../shared]

Without the shared folder (a fresh clone has none) the checks against the Chinese articles are skipped with a note.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT / "bench" / "datasets"
EN_CORPUS = ROOT / "bench" / "corpus" / "en"
SPLITS = ("tune", "report")
HAN = re.compile(r"[\u3400-\u9fff]")
GOLD_CHARS = (2, 40)
EN_CORPUS_FILES = (8, 15)
EN_CORPUS_MAX_BYTES = 300_000


def canon(text: str) -> str:
    """The comparison `rag.evaluate` uses for hits (kept in step with `rag.evaluate._canon`)."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def assign_splits(items: list[tuple[str, str]]) -> dict[str, str]:
    """Deterministic 50/50 split of (base_id, stratum) pairs, stratified by stratum.

    Within each stratum (sorted by name) ids are ordered by SHA-256 of the id and dealt alternately to "tune" and
    "report", the alternation carrying over between strata: each stratum and the whole group differ by at most one.
    A translation uses its base id, so it always lands in the same half as the original.
    """
    strata: dict[str, list[str]] = {}
    for base_id, stratum in items:
        strata.setdefault(stratum, []).append(base_id)
    splits: dict[str, str] = {}
    turn = 0
    for stratum in sorted(strata):
        for base_id in sorted(strata[stratum], key=lambda i: hashlib.sha256(i.encode()).hexdigest()):
            splits[base_id] = SPLITS[turn % 2]
            turn += 1
    return splits


@dataclass
class Corpus:
    """Canonical text of each document of one corpus, for presence and occurrence checks."""

    name: str
    texts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, name: str, folder: Path) -> Corpus | None:
        if not folder.is_dir():
            return None
        texts = {p.name: canon(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.txt"))}
        return cls(name, texts)

    def occurrences(self, gold: str) -> int:
        key = canon(gold)
        return sum(text.count(key) for text in self.texts.values())


@dataclass
class FileSpec:
    """One question file: its question language, the corpus its sources live in, and what it translates."""

    name: str
    lang: str
    corpus: str | None  # "en", "zh" or None for off-topic questions
    suffix: str = ""  # id suffix of a translation ("-zh", "-en", "-hant")
    bases: tuple[str, ...] = ()  # files (or "seeds") whose ids this file translates


SPECS = (
    FileSpec("en-dev.json", "en", "en"),
    FileSpec("zh-over-en-dev.json", "zh", "en", "-zh", ("en-dev.json",)),
    FileSpec("zh-extra-dev.json", "zh", "zh"),
    FileSpec("en-over-zh-extra-dev.json", "en", "zh", "-en", ("zh-extra-dev.json",)),
    FileSpec("zh-hant-dev.json", "zh-hant", "zh", "-hant", ("seeds", "zh-extra-dev.json")),
    FileSpec("offtopic-dev.json", "mixed", None),
    # Written in a later release by someone who had not seen the system, to enlarge every half: the sets above had
    # 6-22 questions a row, too few to tell a real gain from one question.
    FileSpec("zh-more-dev.json", "zh", "zh"),
    FileSpec("en-over-zh-more-dev.json", "en", "zh", "-en", ("zh-more-dev.json",)),
    FileSpec("en-more-dev.json", "en", "en"),
    FileSpec("zh-over-en-more-dev.json", "zh", "en", "-zh", ("en-more-dev.json",)),
    FileSpec("offtopic-more-dev.json", "mixed", None),
)
SEED_SPLITS = "seeds-splits.json"


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def problem(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")


def read_json(path: Path, report: Report) -> list | dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        report.problem(path.name, f"cannot read ({exc})")
        return None


def lang_of(question: str) -> str:
    return "zh" if HAN.search(question) else "en"


def check_en_corpus(report: Report) -> Corpus | None:
    corpus = Corpus.load("en", EN_CORPUS)
    if corpus is None:
        report.problem("bench/corpus/en", "folder missing")
        return None
    files = sorted(EN_CORPUS.glob("*.txt"))
    size = sum(p.stat().st_size for p in files)
    if not EN_CORPUS_FILES[0] <= len(files) <= EN_CORPUS_FILES[1]:
        report.problem("bench/corpus/en", f"{len(files)} documents, expected {EN_CORPUS_FILES[0]}-{EN_CORPUS_FILES[1]}")
    if size > EN_CORPUS_MAX_BYTES:
        report.problem("bench/corpus/en", f"{size} bytes, more than {EN_CORPUS_MAX_BYTES}")
    for path in files:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        if not (first.startswith("[Source:") and "Licence:" in first):
            report.problem(f"bench/corpus/en/{path.name}", "first line must name the source and the licence")
    print(f"bench/corpus/en: {len(files)} documents, {size} bytes")
    return corpus


def check_seed_splits(shared: Path | None, report: Report) -> dict[str, dict]:
    """The seeds' splits live here (the seed files in shared/ are read-only); verify them against the rule."""
    rows = read_json(DATASETS / SEED_SPLITS, report)
    if not isinstance(rows, list):
        return {}
    seeds = {r["id"]: r for r in rows if isinstance(r, dict) and {"id", "source", "split"} <= r.keys()}
    if len(seeds) != len(rows):
        report.problem(SEED_SPLITS, 'every row needs "id", "source" and "split"')
    expected = assign_splits([(i, r["source"]) for i, r in seeds.items()])
    for seed_id, row in seeds.items():
        if row["split"] != expected[seed_id]:
            report.problem(SEED_SPLITS, f"{seed_id}: split {row['split']!r}, rule gives {expected[seed_id]!r}")
    if shared is not None:
        for seed_file in ("seeds-dev.json", "seeds-dev-en.json"):
            items = read_json(shared / "eval" / seed_file, report) or []
            ids = {str(q.get("id", "")).removesuffix("-en") for q in items if isinstance(q, dict)}
            if ids != set(seeds):
                report.problem(SEED_SPLITS, f"ids differ from shared/eval/{seed_file}: {sorted(ids ^ set(seeds))}")
            if seed_file == "seeds-dev.json":  # the translations are then compared with the seeds' own answers
                for q in items:
                    if q.get("id") in seeds and q.get("source") == seeds[q["id"]]["source"]:
                        seeds[q["id"]] = {**q, "split": seeds[q["id"]]["split"]}
                    elif q.get("id") in seeds:
                        report.problem(SEED_SPLITS, f"{q['id']}: source differs from shared/eval/{seed_file}")
    counts = Counter(r["split"] for r in seeds.values())
    print(f"{SEED_SPLITS}: {len(seeds)} seed ids, tune {counts['tune']} / report {counts['report']}")
    return seeds


def check_item(spec: FileSpec, item: dict, corpus: Corpus | None, report: Report, repeats: list[str]) -> None:
    where = f"{spec.name} {item.get('id', '?')}"
    keys = {"id", "question", "answers", "source", "split", "lang"}
    if not keys <= item.keys():
        report.problem(where, f"missing fields {sorted(keys - item.keys())}")
        return
    if item["lang"] != spec.lang:
        report.problem(where, f"lang {item['lang']!r}, file is {spec.lang!r}")
    if lang_of(item["question"]) != spec.lang.split("-")[0]:
        report.problem(where, f"question is not in {spec.lang}")
    answers = item["answers"]
    if not (isinstance(answers, list) and answers and all(isinstance(a, str) for a in answers)):
        report.problem(where, '"answers" must be a non-empty list of strings')
        return
    for gold in answers:
        if not GOLD_CHARS[0] <= len(gold) <= GOLD_CHARS[1]:
            report.problem(where, f"gold {gold!r} is {len(gold)} characters, expected {GOLD_CHARS[0]}-{GOLD_CHARS[1]}")
        if canon(gold) in canon(item["question"]):
            report.problem(where, f"the question gives its gold {gold!r} away")
        if corpus is None:
            continue
        source = corpus.texts.get(item["source"])
        if source is None:
            report.problem(where, f"source {item['source']!r} is not in the {corpus.name} corpus")
            continue
        if canon(gold) not in source:
            report.problem(where, f"gold {gold!r} not found in {item['source']}")
        count = corpus.occurrences(gold)
        if count > 1:
            repeats.append(f"{item['id']} {gold!r} x{count}")


def check_rule(name: str, items: list[dict], stratum: str, report: Report) -> None:
    """An original (not a translation) must carry the split that `assign_splits` gives it, stratified by `stratum`."""
    rule = assign_splits([(q["id"], q[stratum]) for q in items if {"id", stratum} <= q.keys()])
    for q in items:
        if q.get("split") != rule.get(q.get("id")):
            report.problem(f"{name} {q.get('id')}", f"split {q.get('split')!r}, rule gives {rule.get(q.get('id'))!r}")


def check_answerable(spec: FileSpec, items: list[dict], ctx: dict, report: Report) -> None:
    corpus = ctx["corpora"].get(spec.corpus)
    repeats: list[str] = []
    for item in items:
        check_item(spec, item, corpus, report, repeats)
    if spec.bases:
        check_translation(spec, items, ctx, report)
    else:
        check_rule(spec.name, items, "source", report)
    if corpus is None:
        report.notes.append(f"{spec.name}: {spec.corpus} corpus absent, gold strings not checked against it")
    if repeats:
        report.notes.append(f"{spec.name}: gold strings found more than once in the corpus: " + "; ".join(repeats))


def check_translation(spec: FileSpec, items: list[dict], ctx: dict, report: Report) -> None:
    """A translation keeps the base's answers, source and split; only the question (and its language) change."""
    bases: dict[str, dict] = {}
    for base_file in spec.bases:
        bases.update(ctx["seeds"] if base_file == "seeds" else ctx["loaded"].get(base_file, {}))
    seen = set()
    for q in items:
        where = f"{spec.name} {q.get('id')}"
        base_id = str(q.get("id", "")).removesuffix(spec.suffix)
        base = bases.get(base_id)
        if base is None or base_id == q.get("id"):
            report.problem(where, f"id must be a base id plus {spec.suffix!r}, with the base in {spec.bases}")
            continue
        seen.add(base_id)
        if q.get("split") != base.get("split"):
            report.problem(where, f"split {q.get('split')!r} differs from {base_id}'s {base.get('split')!r}")
        if q.get("source") != base.get("source"):
            report.problem(where, f"source differs from {base_id}'s")
        if "answers" in base and q.get("answers") != base["answers"]:
            report.problem(where, f"answers differ from {base_id}'s")
        if "question" in base and q.get("question") == base["question"]:
            report.problem(where, "question is not translated")
    missing = sorted(set(bases) - seen)
    if missing:
        report.problem(spec.name, f"no translation for {missing}")


def check_offtopic(spec: FileSpec, items: list[dict], report: Report) -> None:
    langs = ("en", "zh", "zh-hant")
    for q in items:
        where = f"{spec.name} {q.get('id', '?')}"
        if not {"id", "question", "lang", "split"} <= q.keys():
            report.problem(where, 'needs "id", "question", "lang" and "split"')
            continue
        if q["lang"] not in langs or lang_of(q["question"]) != q["lang"].split("-")[0]:
            report.problem(where, f"lang {q['lang']!r} does not match the question")
        if "answers" in q:
            report.problem(where, "off-topic questions have no answers")
        if q.get("kind") not in (None, "near", "far"):
            report.problem(where, f"kind {q['kind']!r}: near (a topic the documents discuss) or far")
    # Halves balanced by language, and by kind where the file gives one.
    strata = [{**q, "stratum": "/".join(filter(None, (q.get("lang"), q.get("kind"))))} for q in items]
    check_rule(spec.name, strata, "stratum", report)
    unanswerable = read_json(DATASETS / "unanswerable.json", report) or []
    dup = {q["question"] for q in items if "question" in q} & set(unanswerable)
    if dup:
        report.problem(spec.name, f"already in unanswerable.json: {sorted(dup)}")


def summarise(spec: FileSpec, items: list[dict], report: Report) -> None:
    counts = Counter(q.get("split") for q in items)
    by_lang = Counter(q.get("lang") for q in items)
    ids = [q.get("id") for q in items]
    dup = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dup:
        report.problem(spec.name, f"duplicate ids {dup}")
    if abs(counts["tune"] - counts["report"]) > 1 or set(counts) - set(SPLITS):
        report.problem(spec.name, f"splits unbalanced or unknown: {dict(counts)}")
    langs = ", ".join(f"{k} {v}" for k, v in sorted(by_lang.items()))
    sources = len({q.get("source") for q in items if q.get("source")})
    print(
        f"{spec.name}: {len(items)} questions ({langs}), {sources or '-'} sources, "
        f"tune {counts['tune']} / report {counts['report']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ROOT.parent / "shared"
    parser.add_argument("--shared", type=Path, default=default, help="the shared folder (seeds, zh corpus)")
    args = parser.parse_args(argv)
    shared = args.shared if args.shared.is_dir() else None
    report = Report()
    corpora = {"en": check_en_corpus(report)}
    if shared is None:
        report.notes.append(f"{args.shared} absent: Chinese-corpus and seed-file checks skipped")
    else:
        corpora["zh"] = Corpus.load("zh", shared / "corpus" / "zh-llm-articles")
    ctx = {"corpora": corpora, "seeds": check_seed_splits(shared, report), "loaded": {}}
    for spec in SPECS:
        items = read_json(DATASETS / spec.name, report)
        if not isinstance(items, list) or not all(isinstance(q, dict) for q in items):
            report.problem(spec.name, "expected a JSON list of objects")
            continue
        ctx["loaded"][spec.name] = {q.get("id"): q for q in items}
        if spec.corpus is None:
            check_offtopic(spec, items, report)
        else:
            check_answerable(spec, items, ctx, report)
        summarise(spec, items, report)
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    print(f"{len(report.problems)} problem(s)")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
