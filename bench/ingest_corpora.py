"""Corpora for bench/ingest_bench.py, generated at run time (nothing downloaded, nothing committed).

Two shapes, because ingestion overheads scale with files, embedding with text:

- many small files (issue 9's 848 short articles, about 1.4 KB each): paragraph runs cut from the five Chinese
  articles in ``../shared/corpus/zh-llm-articles`` (or, when that folder is missing, from this repository's Chinese
  guide), each starting at a seeded random line and of a seeded random length, so every file is distinct (identical
  files would be skipped by content hash); one file in five is English instead, cut from pydoc text.
- a few large files (100-200 KB each): half are whole pydoc pages of stdlib modules concatenated, half are the
  Chinese articles repeated in rotated order with numbered part headings.

pydoc text (``pydoc.render_doc(module, renderer=pydoc.plaintext)``) depends on the Python version only, so one
interpreter always makes the same corpus. A 1,000-page PDF generator (fpdf2) is kept for the peak-memory check.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ZH_ARTICLES = ROOT.parent / "shared" / "corpus" / "zh-llm-articles"
ZH_FALLBACK = [ROOT / "data" / "用户指南.md"]
EN_PROSE = ROOT / "bench" / "corpus" / "en"
_PYDOC_BAR = re.compile(r"^ *\| ?", re.MULTILINE)
SEED = 9
# Importing these has side effects (a browser, prints, a GUI) or they are tests and tools, not library docs.
SKIP_MODULES = set(
    "antigravity this idlelib tkinter turtle turtledemo test lib2to3 ensurepip venv distutils pydoc_data msilib "
    "winreg winsound msvcrt nt".split()
)


@dataclass
class CorpusInfo:
    kind: str
    files: int
    chinese_files: int
    english_files: int
    bytes: int
    mean_file_kb: float
    zh_source: str

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------- source text
def chinese_sources() -> tuple[list[list[str]], str]:
    """Non-empty lines of each Chinese article, and where they came from."""
    paths = sorted(ZH_ARTICLES.glob("*.txt")) if ZH_ARTICLES.is_dir() else []
    where = str(ZH_ARTICLES)
    if not paths:
        paths, where = [p for p in ZH_FALLBACK if p.exists()], "data/用户指南.md (fallback)"
    articles = [[line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()] for p in paths]
    return [a for a in articles if a], where


def render_module(name: str) -> str | None:
    """The plain-text pydoc page of a module, or None when it cannot be imported here or is nearly empty."""
    import importlib
    import pydoc

    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            text = pydoc.render_doc(importlib.import_module(name), renderer=pydoc.plaintext)
    except BaseException:  # any module that cannot be imported here is simply not in the corpus
        return None
    return text if len(text) >= 1500 else None


def pydoc_pages() -> Iterator[tuple[str, str]]:
    """(module, page) for top-level stdlib modules in name order: enough English text for both corpora."""
    for name in sorted(n for n in sys.stdlib_module_names if not n.startswith("_") and n not in SKIP_MODULES):
        text = render_module(name)
        if text is not None:
            yield name, text


def english_paragraphs(total_chars: int) -> list[str]:
    """Paragraphs of English prose: ``bench/corpus/en`` (Python docs, sky cultures), then pydoc pages (the class
    bars removed) until there are at least ``total_chars`` characters."""
    texts = [p.read_text(encoding="utf-8") for p in sorted(EN_PROSE.glob("*.txt"))]
    pages = pydoc_pages()
    paragraphs: list[str] = []
    while True:
        for text in texts:
            text = _PYDOC_BAR.sub("", text)
            paragraphs += [p.strip("\n") for p in re.split(r"\n\s*\n", text) if p.strip()]
        texts = []
        if sum(len(p) for p in paragraphs) >= total_chars or (page := next(pages, None)) is None:
            return paragraphs
        texts = [page[1]]


# --------------------------------------------------------------------------------------------- corpora
def _cut(paragraphs: list[str], rng: random.Random, target_bytes: int) -> str:
    """Consecutive paragraphs from a random start until ``target_bytes`` of UTF-8 (wrapping around a short
    source); a paragraph that would overshoot by more than half the target is cut at a line end."""
    at = rng.randrange(len(paragraphs))
    out: list[str] = []
    size = 0
    while size < target_bytes and len(out) < len(paragraphs):
        paragraph = paragraphs[(at + len(out)) % len(paragraphs)]
        if size + len(paragraph.encode("utf-8")) > 1.5 * target_bytes:
            paragraph = _head(paragraph, target_bytes - size)
        out.append(paragraph)
        size += len(paragraph.encode("utf-8")) + 2
    return "\n\n".join(out) + "\n"


def _head(text: str, n_bytes: int) -> str:
    """The lines of ``text`` that fit in ``n_bytes`` (at least one line)."""
    lines = text.splitlines()
    kept, size = [lines[0]], len(lines[0].encode("utf-8"))
    for line in lines[1:]:
        size += len(line.encode("utf-8")) + 1
        if size > n_bytes:
            break
        kept.append(line)
    return "\n".join(kept)


def _write_distinct(folder: Path, name: str, text: str, seen: set[str]) -> bool:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if digest in seen:
        return False
    seen.add(digest)
    (folder / name).write_text(text, encoding="utf-8")
    return True


def make_small_files(folder: Path, n_files: int, mean_bytes: int = 1300, english_share: float = 0.2) -> CorpusInfo:
    """``n_files`` distinct short articles, mostly Chinese; sizes uniform in 0.6-1.4x ``mean_bytes``."""
    folder.mkdir(parents=True)
    rng = random.Random(SEED)
    articles, where = chinese_sources()
    n_english = round(n_files * english_share)
    english = english_paragraphs(n_english * mean_bytes * 2) if n_english else []
    langs = ["en"] * n_english + ["zh"] * (n_files - n_english)
    rng.shuffle(langs)
    seen: set[str] = set()
    written = {"zh": 0, "en": 0}
    for number, lang in enumerate(langs):
        for _ in range(50):  # a repeat of an earlier cut is drawn again
            source = english if lang == "en" else rng.choice(articles)
            text = _cut(source, rng, int(mean_bytes * rng.uniform(0.6, 1.4)))
            if _write_distinct(folder, f"{number:04d}_{lang}.txt", text, seen):
                written[lang] += 1
                break
    return _info("many small files", folder, written, where)


def make_large_files(folder: Path, n_files: int, min_bytes: int = 100_000, max_bytes: int = 200_000) -> CorpusInfo:
    """``n_files`` large files: even ones pydoc pages concatenated, odd ones the Chinese articles repeated."""
    folder.mkdir(parents=True)
    rng = random.Random(SEED + 1)
    articles, where = chinese_sources()
    sizes = [rng.randint(min_bytes, max_bytes) for _ in range(n_files)]
    pages = pydoc_pages()
    written = {"zh": 0, "en": 0}
    for i, size in enumerate(sizes):
        if i % 2 == 0:
            text = _concatenate((f"{name}\n\n{page}" for name, page in pages), size)
            lang = "en"
        else:
            text = _concatenate(_rotated_articles(articles, rng, start=i), size)
            lang = "zh"
        if text:
            (folder / f"{i:02d}_{lang}.txt").write_text(text, encoding="utf-8")
            written[lang] += 1
    return _info("a few large files", folder, written, where)


def _rotated_articles(articles: list[list[str]], rng: random.Random, start: int) -> Iterator[str]:
    """The articles over and over, each round in a new order, each part headed by its number (no two alike)."""
    part = 0
    while True:
        for index in rng.sample(range(len(articles)), len(articles)):
            part += 1
            yield f"第{start}卷 第{part}部分\n\n" + "\n\n".join(articles[index])


def _concatenate(parts: Iterator[str], target_bytes: int) -> str:
    """Parts joined until ``target_bytes``; the last one is cut at a line end so the file lands near the target."""
    out: list[str] = []
    size = 0
    for part in parts:
        out.append(_head(part, target_bytes - size))
        size += len(out[-1].encode("utf-8")) + 2
        if size >= target_bytes - 1000:
            break
    return "\n\n".join(out) + "\n"


def _info(kind: str, folder: Path, written: dict[str, int], where: str) -> CorpusInfo:
    files = sorted(folder.iterdir())
    total = sum(p.stat().st_size for p in files)
    return CorpusInfo(kind, len(files), written["zh"], written["en"], total, round(total / max(len(files), 1) / 1e3, 2),
                      where)  # fmt: skip


def make_pdf(path: Path, pages: int) -> dict[str, int]:
    """A ``pages``-page English PDF with a running header and page numbers (boilerplate the pipeline must drop)."""
    from fpdf import FPDF

    words = " ".join(english_paragraphs(pages * 150 * 8)).encode("latin-1", "ignore").decode("latin-1").split()
    pdf = FPDF()
    pdf.set_auto_page_break(auto=False)
    per_paragraph, at = 50, 0
    for page in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font("Helvetica", size=8)
        pdf.cell(0, 6, "Benchmark manual - generated for bench/ingest_bench.py", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 8, f"Section {page}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        for _ in range(3):  # a few paragraphs of real text per page
            chunk = words[at : at + per_paragraph] or words[:per_paragraph]
            at = (at + per_paragraph) % max(1, len(words) - per_paragraph)
            pdf.multi_cell(0, 5, " ".join(chunk), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
        pdf.set_y(-15)
        pdf.cell(0, 6, f"{page}", align="C")
    pdf.output(str(path))
    return {"pages": pages, "bytes": path.stat().st_size}
