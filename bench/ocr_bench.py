"""OCR of scanned pages: seconds per page and character accuracy, Chinese and English, for several render/detector
settings side by side (the trade-off table behind ``ingest/ocr.py``'s defaults).

The scans are made here: pages with a known text layer are rendered to grayscale images at 200 dpi and saved as an
image-only PDF; OCR reads that PDF back and is compared with the original text layer. Sources: the sample guides in
``data/`` (Chinese and English), and denser A4 pages typeset with fpdf2: English in Helvetica and Times at several
sizes (one page in two columns) and Chinese in the Chinese guide's own embedded font (a subset of WenQuanYi Micro
Hei: the machine has no CJK font), using sentences made of that font's characters.

Character accuracy = 1 - edit distance / reference length, after NFKC normalisation (the reader's normalize_text)
and with all white space removed. Seconds per page = render + OCR of one page (engine already loaded), median over
pages; settings are interleaved page by page so that load from other processes hits them all alike, and process
CPU time is reported beside wall time because it depends much less on that load.

Usage: .venv/bin/python bench/ocr_bench.py [--scale quick|full] [--json PATH]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/ocr_bench.py`: make `ingest` and `tests` importable
    sys.path.insert(0, str(ROOT))

from ingest.ocr import OcrConfig, OcrEngine, ScannedPdf, ocr_threads  # noqa: E402
from ingest.readers import normalize_text  # noqa: E402
from tests.fixtures_docs import (  # noqa: E402
    GUIDE_EN,
    GUIDE_ZH,
    embedded_font,
    font_characters,
    scanned_pdf_bytes,
    text_layers,
    typeset_pdf_bytes,
)

TARGET_SECONDS = 3.0
TARGET_ACCURACY = 0.95


# --------------------------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------------------------


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, one NumPy row per character of ``a`` (insertions via a running minimum)."""
    if not a or not b:
        return len(a) + len(b)
    codes = np.fromiter((ord(c) for c in b), dtype=np.int64, count=len(b))
    index = np.arange(len(b) + 1)
    previous = index.copy()
    for i, char in enumerate(a, 1):
        row = np.empty_like(previous)
        row[0] = i
        row[1:] = np.minimum(previous[1:] + 1, previous[:-1] + (codes != ord(char)))
        previous = np.minimum.accumulate(row - index) + index
    return int(previous[-1])


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", normalize_text(text))


def char_accuracy(reference: str, hypothesis: str) -> tuple[float, int, int]:
    """(accuracy, edit distance, reference length) after normalising and removing white space."""
    ref, hyp = squeeze(reference), squeeze(hypothesis)
    distance = edit_distance(ref, hyp)
    return max(0.0, 1 - distance / max(len(ref), 1)), distance, len(ref)


# --------------------------------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class ScanSet:
    name: str
    lang: str  # "zh" or "en"
    scan: bytes  # image-only PDF
    references: list[str]  # text layer of each page of the original


def _sentences(text: str, pattern: str) -> list[str]:
    return [s.strip() for s in re.findall(pattern, normalize_text(text).replace("\n", "")) if len(s.strip()) > 4]


def dense_chinese(size: float, seed: int) -> bytes:
    """About a full A4 page of Chinese at ``size`` points, from the Chinese guide's sentences (shuffled), typeset in
    that guide's own embedded font; characters the subset cannot draw are left out."""
    font = embedded_font(GUIDE_ZH)
    chars = font_characters(font)
    sentences = _sentences("".join(text_layers(GUIDE_ZH)), r"[^。！？]+[。！？]?")
    sentences = ["".join(c for c in s if c in chars) for s in sentences]
    rng = random.Random(seed)
    body: list[str] = []
    target = int(230_000 / (size * size))  # characters that fill most of one A4 page at this size
    while sum(map(len, body)) < target:
        rng.shuffle(sentences)
        body.extend(sentences)
    paragraphs = ["".join(body[i : i + 4]) for i in range(0, len(body), 4)]
    return typeset_pdf_bytes(["\n".join(paragraphs)[:target]], font=font, size=size)


def dense_english(font: str, size: float, columns: int, seed: int) -> bytes:
    sentences = _sentences("\n".join(text_layers(GUIDE_EN)), r"[^.!?]+[.!?]")
    rng = random.Random(seed)
    body: list[str] = []
    target = int(430_000 / (size * size))
    while sum(len(s) + 1 for s in body) < target:
        rng.shuffle(sentences)
        body.extend(sentences)
    paragraphs = [" ".join(body[i : i + 4]) for i in range(0, len(body), 4)]
    return typeset_pdf_bytes(["\n".join(paragraphs)[:target]], font=font, size=size, columns=columns)


def _scan_set(name: str, lang: str, original: bytes | Path) -> ScanSet:
    return ScanSet(name, lang, scanned_pdf_bytes(original), text_layers(original))


def corpus(scale: str) -> list[ScanSet]:
    sets = [
        _scan_set("zh guide (3 pages)", "zh", GUIDE_ZH),
        _scan_set("en guide (4 pages)", "en", GUIDE_EN),
        _scan_set("zh dense 10.5pt", "zh", dense_chinese(10.5, 1)),
        _scan_set("en dense Helvetica 10pt", "en", dense_english("Helvetica", 10, 1, 1)),
    ]
    if scale == "full":
        sets += [
            _scan_set("zh dense 9pt", "zh", dense_chinese(9, 2)),
            _scan_set("zh dense 12pt", "zh", dense_chinese(12, 3)),
            _scan_set("en dense Times 9pt", "en", dense_english("Times", 9, 1, 2)),
            _scan_set("en dense Helvetica 12pt", "en", dense_english("Helvetica", 12, 1, 3)),
            _scan_set("en two columns Times 10pt", "en", dense_english("Times", 10, 2, 4)),
        ]
    return sets


# --------------------------------------------------------------------------------------------------------------------
# Settings compared
# --------------------------------------------------------------------------------------------------------------------

CHOSEN = OcrConfig()
RAPIDOCR_DEFAULTS = replace(CHOSEN, det_limit_type="min", det_limit_side_len=736, use_cls=True, rec_height=48)


def variants(scale: str) -> dict[str, OcrConfig]:
    """The chosen settings first, then one change at a time (and RapidOCR's own defaults)."""
    quick = {
        "chosen": CHOSEN,
        "RapidOCR defaults": RAPIDOCR_DEFAULTS,
        "rec height 48": replace(CHOSEN, rec_height=48),
        "rec height 32": replace(CHOSEN, rec_height=32),
    }
    if scale != "full":
        return quick
    return quick | {
        "scale 1.5": replace(CHOSEN, render_scale=1.5),
        "scale 2.5": replace(CHOSEN, render_scale=2.5),
        "det max 960": replace(CHOSEN, det_limit_side_len=960),
        "det full resolution": replace(CHOSEN, det_limit_type="min", det_limit_side_len=736),
        "cls on": replace(CHOSEN, use_cls=True),
        "1 thread": replace(CHOSEN, threads=1),
    }


def describe(config: OcrConfig) -> str:
    return (
        f"render scale {config.render_scale} (max side {config.max_render_side} px), "
        f"det limit {config.det_limit_type} {config.det_limit_side_len}, box_thresh {config.det_box_thresh}, "
        f"unclip {config.det_unclip_ratio}, rec height {config.rec_height}, text_score {config.text_score}, "
        f"cls {'on' if config.use_cls else 'off'}, {config.threads} ONNX Runtime thread(s), no spinning"
    )


# --------------------------------------------------------------------------------------------------------------------
# Run
# --------------------------------------------------------------------------------------------------------------------


def run(scale: str) -> dict[str, Any]:
    sets = corpus(scale)
    configs = variants(scale)
    engines = {name: OcrEngine(config) for name, config in configs.items()}
    for engine in engines.values():  # first call allocates ONNX Runtime buffers: keep it out of the timings
        with ScannedPdf(io.BytesIO(sets[0].scan), engine=engine) as warm:
            warm.read(0)
    pages: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    turn = 0
    for scan_set in sets:
        documents = {name: ScannedPdf(io.BytesIO(scan_set.scan), engine=e) for name, e in engines.items()}
        try:
            for index, reference in enumerate(scan_set.references):
                order = list(configs)
                turn += 1
                if turn % 2:  # alternate who goes first, so a burst of load from elsewhere does not favour one
                    order.reverse()
                for name in order:
                    wall, cpu = time.perf_counter(), time.process_time()
                    text = documents[name].read(index)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    accuracy, distance, length = char_accuracy(reference, text)
                    pages[name].append({"set": scan_set.name, "lang": scan_set.lang, "page": index + 1,
                                        "accuracy": round(accuracy, 4), "distance": distance, "chars": length,
                                        "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3)})  # fmt: skip
        finally:
            for document in documents.values():
                document.close()
    return {"configs": configs, "pages": pages, "sets": sets}


def summarise(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, config in result["configs"].items():
        row: dict[str, Any] = {"setting": name, "config": asdict(config)}
        for lang in ("zh", "en"):
            page_rows = [p for p in result["pages"][name] if p["lang"] == lang]
            chars = sum(p["chars"] for p in page_rows)
            row[f"{lang}_s_per_page"] = round(statistics.median(p["seconds"] for p in page_rows), 2)
            row[f"{lang}_s_max"] = round(max(p["seconds"] for p in page_rows), 2)
            row[f"{lang}_cpu_per_page"] = round(statistics.median(p["cpu_seconds"] for p in page_rows), 2)
            row[f"{lang}_cpu_per_1000_chars"] = round(1000 * sum(p["cpu_seconds"] for p in page_rows) / chars, 2)
            row[f"{lang}_accuracy"] = round(1 - sum(p["distance"] for p in page_rows) / chars, 4)
            row[f"{lang}_worst_page"] = round(min(p["accuracy"] for p in page_rows), 4)
        rows.append(row)
    return rows


def print_report(result: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    print("pages (200 dpi grayscale scans, image-only PDFs):")
    for scan_set in result["sets"]:
        chars = [len(squeeze(r)) for r in scan_set.references]
        print(f"  {scan_set.name}: {len(chars)} page(s), {sum(chars)} characters")
    print(f"\nchosen settings: {describe(CHOSEN)}")
    print("s/page: wall-clock median (max); CPU s: process CPU time per page (median) and per 1,000 characters;")
    print("accuracy: 1 - edit distance / reference characters over all pages of the language (worst page)\n")
    print("| setting | zh s/page (max) | zh CPU s/page, /1k chars | zh accuracy (worst) "
          "| en s/page (max) | en CPU s/page, /1k chars | en accuracy (worst) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        cells = [row["setting"]]
        for lang in ("zh", "en"):
            cells.append(f"{row[f'{lang}_s_per_page']:.2f} ({row[f'{lang}_s_max']:.2f})")
            cells.append(f"{row[f'{lang}_cpu_per_page']:.2f}, {row[f'{lang}_cpu_per_1000_chars']:.2f}")
            cells.append(f"{row[f'{lang}_accuracy']:.4f} ({row[f'{lang}_worst_page']:.4f})")
        print("| " + " | ".join(cells) + " |")
    print("\nper page with the chosen settings:")
    for page in result["pages"]["chosen"]:
        print(f"  {page['set']:<28} p{page['page']}  {page['chars']:>5} chars  accuracy {page['accuracy']:.4f}  "
              f"{page['seconds']:.2f} s  CPU {page['cpu_seconds']:.2f} s")  # fmt: skip
    chosen = rows[0]
    for lang in ("zh", "en"):
        s, acc = chosen[f"{lang}_s_per_page"], chosen[f"{lang}_accuracy"]
        s_verdict = "met" if s <= TARGET_SECONDS else "NOT met"
        acc_verdict = "met" if acc >= TARGET_ACCURACY else "NOT met"
        print(f"{lang}: median {s:.2f} s/page (target <= {TARGET_SECONDS}: {s_verdict}), "
              f"accuracy {acc:.4f} (target >= {TARGET_ACCURACY}: {acc_verdict})")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("quick", "small", "full"), default="quick",
                        help="quick (= small): 4 page sets, 4 settings; full: 9 page sets, 10 settings")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    scale = "full" if args.scale == "full" else "quick"
    print(f"# OCR benchmark (scale={scale})")
    print(f"# command: .venv/bin/python bench/ocr_bench.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"# machine: {os.cpu_count()} CPUs, OCR threads {ocr_threads()}, load average {os.getloadavg()}\n")
    started = time.perf_counter()
    result = run(scale)
    rows = summarise(result)
    print_report(result, rows)
    print(f"\n(total {time.perf_counter() - started:.0f} s; load average at end {os.getloadavg()})")
    if args.json:
        payload = {"scale": scale, "chosen": asdict(CHOSEN), "rows": rows, "pages": result["pages"],
                   "load_average_end": os.getloadavg()}  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=2, ensure_ascii=False))
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
