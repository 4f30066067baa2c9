"""The development questions by language pair, their tune/report halves, and the store they are asked against.

Every tuned constant is chosen on the "tune" half and reported on the "report" half (bench/check_datasets.py checks the
split rule). The dev store holds the sample guides (data/), the English dev corpus (bench/corpus/en) and, when the
team's shared folder is beside the repository, the five Chinese articles (../shared/corpus/zh-llm-articles); sets
that need a corpus which is absent are skipped with a note.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from benchlib import ROOT

DATASETS = ROOT / "bench" / "datasets"
SHARED = Path(os.environ.get("DOCCHAT_SHARED", ROOT.parent / "shared"))
ZH_CORPUS = SHARED / "corpus" / "zh-llm-articles"
EN_CORPUS = ROOT / "bench" / "corpus" / "en"
STORES = ROOT / "bench" / "results" / "stores"


@dataclass(frozen=True)
class DevSet:
    name: str  # question language -> document language
    path: Path
    needs_zh: bool  # asked over the Chinese articles

    @property
    def documents_language(self) -> str | None:
        """The language of the documents that answer it ("zh", "en"), None for the bilingual guides."""
        if self.name.startswith("guides"):
            return None
        return self.name.partition("->")[2].split(" ")[0]

    def items(self, split: str | None = None) -> list[dict]:
        items = json.loads(self.path.read_text(encoding="utf-8"))
        splits = seed_splits()
        for item in items:
            if "split" not in item:
                base = str(item.get("id", "")).rsplit("-en", 1)[0]
                item["split"] = splits.get(str(item.get("id"))) or splits.get(base)
        return [i for i in items if split in (None, "all") or i.get("split") == split]


def seed_splits() -> dict[str, str]:
    return {i["id"]: i["split"] for i in json.loads((DATASETS / "seeds-splits.json").read_text(encoding="utf-8"))}


def dev_sets() -> list[DevSet]:
    """Answerable sets, named question->documents by language."""
    sets = [
        DevSet("zh->zh (seeds)", SHARED / "eval" / "seeds-dev.json", True),
        DevSet("zh->zh (extra)", DATASETS / "zh-extra-dev.json", True),
        DevSet("zh-hant->zh", DATASETS / "zh-hant-dev.json", True),
        DevSet("en->zh (seeds)", SHARED / "eval" / "seeds-dev-en.json", True),
        DevSet("en->zh (extra)", DATASETS / "en-over-zh-extra-dev.json", True),
        DevSet("en->en", DATASETS / "en-dev.json", False),
        DevSet("zh->en", DATASETS / "zh-over-en-dev.json", False),
        DevSet("guides (en+zh)", DATASETS / "guide-qa.json", False),
        # Written later by someone who had not seen the system (bench/check_datasets.py): both halves were fresh when
        # they came, so a constant tuned before them was never chosen on them.
        DevSet("zh->zh (new)", DATASETS / "zh-more-dev.json", True),
        DevSet("en->zh (new)", DATASETS / "en-over-zh-more-dev.json", True),
        DevSet("en->en (new)", DATASETS / "en-more-dev.json", False),
        DevSet("zh->en (new)", DATASETS / "zh-over-en-more-dev.json", False),
    ]
    available = []
    for s in sets:
        if s.path.exists() and (not s.needs_zh or ZH_CORPUS.is_dir()):
            available.append(s)
        else:
            print(f"note: skipping {s.name}: {s.path if not s.path.exists() else ZH_CORPUS} not found", file=sys.stderr)
    return available


def pair_of(name: str) -> str:
    """Which language pair a set measures: same-language or cross-language, by question language."""
    question, _, rest = name.partition("->")
    documents = rest.split(" ")[0]
    question = question.split(" ")[0].replace("-hant", "")
    if name.startswith("guides"):
        return "same"
    return "same" if question == documents else "cross"


def offtopic(split: str | None = None) -> list[dict]:
    """Off-topic questions: the first set, then the later one (near-topic and far ones, written by someone who had
    not seen the system)."""
    items = [
        item
        for name in ("offtopic-dev.json", "offtopic-more-dev.json")
        for item in json.loads((DATASETS / name).read_text(encoding="utf-8"))
    ]
    return [i for i in items if split in (None, "all") or i.get("split") == split]


def corpus_folders(language: str | None = None) -> list[Path]:
    """The dev corpora: all of them (a bilingual collection), or those of one language with that language's guide."""
    if language == "en":
        folders = [ROOT / "data" / "user-guide.md", ROOT / "data" / "user-guide.pdf", EN_CORPUS]
    elif language == "zh":
        folders = [ROOT / "data" / "用户指南.md", ROOT / "data" / "用户指南.pdf", ZH_CORPUS]
    else:
        folders = [ROOT / "data", EN_CORPUS, ZH_CORPUS]
    return [f for f in folders if f.exists()]


def dev_settings(name: str, **overrides):
    """Settings for a dev store kept under bench/results/stores/NAME (built once, reused while its files match)."""
    from rag.config import Settings

    values = {"store_dir": STORES / name, "collection": "dev", "llm_model": "packaged:SmolLM2-135M-Instruct"}
    values.update(overrides)
    return Settings(_env_file=None, **values)


def dev_store_settings(args, **overrides):
    """The dev store for --embed-model and --chunk-size (default: the settings' default); each combination is its
    own store, built once and reused (an unchanged file is not re-read, so a store never mixes chunk sizes)."""
    from rag.config import Settings

    chunk_size = getattr(args, "chunk_size", None) or Settings(_env_file=None).chunk_size
    name = f"dev-{args.embed_model.replace('/', '_').replace(':', '_')}-c{chunk_size}"
    values = {"embed_model": args.embed_model, "chunk_size": chunk_size, "chunk_overlap": max(8, chunk_size // 8)}
    return dev_settings(name, **values, **overrides)


def build_dev_store(settings, quiet: bool = False, language: str | None = None):
    """Ingest the dev corpora (skipped when unchanged) and return a ready RagService."""
    from rag.service import RagService

    service = RagService(settings)
    report = service.ingestor.ingest_paths(corpus_folders(language))
    if not quiet:
        print(
            f"dev store {settings.store_dir} ({settings.collection}): {report.count('ingested', 'replaced')} "
            f"ingested, {report.count('skipped')} unchanged, {report.chunks_total} chunks ({report.seconds:.0f} s)",
            file=sys.stderr,
        )
    if report.failed:
        raise SystemExit(f"dev corpus failed to ingest: {[(r.path, r.reason) for r in report.failed]}")
    return service


def add_dev_store_options(parser) -> None:
    """The options every dev-store benchmark takes: which embedder and chunk size its dev store is built with."""
    parser.add_argument("--embed-model", default="auto")
    parser.add_argument("--chunk-size", type=int, default=None, help="RAG_CHUNK_SIZE of the dev store")


def build_dev_stores(args, quiet: bool = False, **overrides) -> dict[str, object]:
    """Three collections of one dev store: both languages ("mixed"), and the Chinese and the English corpora alone
    ("zh", "en"): users have either kind, and cross-language search behaves differently in each."""
    settings = dev_store_settings(args, **overrides)
    stores = {"mixed": build_dev_store(settings, quiet)}
    for language in ("zh", "en"):
        if language == "zh" and not ZH_CORPUS.is_dir():
            continue
        one = settings.model_copy(update={"collection": f"dev-{language}"})
        stores[language] = build_dev_store(one, quiet, language)
    return stores


def dev_cases(stores: dict, split: str | None) -> list[tuple[str, object, list[dict]]]:
    """(label, service, questions): every answerable set in the bilingual collection, and again in the collection
    holding only its documents' language."""
    cases = []
    for dev in dev_sets():
        items = dev.items(split)
        if not items:
            continue
        cases.append((f"{dev.name} @mixed", stores["mixed"], items))
        language = dev.documents_language
        if language in stores:
            cases.append((f"{dev.name} @{language}-only", stores[language], items))
    return cases


def cached_queries(embedder):
    """Wrap embed_query with a cache: a grid search asks the same questions many times."""
    import functools

    if not hasattr(embedder.embed_query, "cache_info"):
        original = embedder.embed_query
        embedder.embed_query = functools.lru_cache(maxsize=None)(original)  # type: ignore[method-assign]
    return embedder


def cached_passages(embedder):
    """Wrap embed_passages with a cache per text: grounding evidence rates the same retrieved sentences for many
    questions (bench/calibrate_grounding.py)."""
    import numpy as np

    if not hasattr(embedder.embed_passages, "memo"):
        original, memo = embedder.embed_passages, {}

        def embed_passages(texts):
            missing = [t for t in dict.fromkeys(texts) if t not in memo]
            if missing:
                memo.update(zip(missing, original(missing), strict=True))
            return np.stack([memo[t] for t in texts]) if texts else original(texts)

        embed_passages.memo = memo  # type: ignore[attr-defined]
        embedder.embed_passages = embed_passages  # type: ignore[method-assign]
    return embedder
