"""Offline OCR for PDF pages that have no text layer: pypdfium2 renders the page, RapidOCR reads it.

RapidOCR (``rapidocr-onnxruntime``) ships PP-OCRv4 detection and Chinese/English recognition models as ONNX files in
its wheel, so nothing is downloaded at run time. One engine per process is built on first use and shared by all
threads behind a lock: OCR already uses every core this process may run on, so two pages at once would only be
slower, and RapidOCR keeps per-call state on the engine. PDFium is not thread-safe at all (not even across different
documents), so every PDFium call in this module holds :data:`PDFIUM_LOCK`.

Tuned with ``bench/ocr_bench.py`` (see :class:`OcrConfig` for the chosen values and why).
"""

from __future__ import annotations

import os
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # heavy: imported when the first scanned page needs them
    import numpy as np
    import pypdfium2

__all__ = [
    "PDFIUM_LOCK",
    "Fragment",
    "OcrConfig",
    "OcrEngine",
    "OcrUnavailable",
    "ScannedPdf",
    "layout_text",
    "ocr_threads",
    "shared_engine",
]

PDFIUM_LOCK = threading.RLock()  # one PDFium call at a time in the whole process (PDFium is not thread-safe)


class OcrUnavailable(RuntimeError):
    """The OCR packages are not installed (rapidocr-onnxruntime, pypdfium2)."""


def ocr_threads() -> int:
    """Threads for ONNX Runtime: the cores this process may run on (its CPU affinity, which containers and
    ``taskset`` narrow), not the machine's total, so OCR never oversubscribes a limited container."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class OcrConfig:
    """Render and model settings; the defaults are the measured choice (``bench/ocr_bench.py --scale full``: 14
    scanned A4 pages, Chinese and English, 9-12 pt, one in two columns).

    - ``render_scale`` 2.0 (144 dpi): 1.5 saves ~13% CPU but English at 9 pt falls to 0.92 accuracy.
    - ``rec_height`` 40: the recogniser's cost grows with its input height squared (lines are resized to it, width
      in proportion); PP-OCRv4 was trained at 48, which costs ~30% more CPU for +0.004 accuracy; 36 and 32 lose
      English small print (0.96 and 0.87 at 9-10 pt).
    - the detector sees at most ``det_limit_side_len`` px ("max"): on A4 at scale 2 it is a small share of the time
      either way (recognition dominates: ~4 CPU s per 1,000 Chinese characters, ~2 per 1,000 English ones).
    - ``use_cls`` off: the orientation classifier only fixes single lines printed upside down, and on these scans it
      turned ~10-20% of correct lines upside down (accuracy 0.80-0.90 with it on).
    """

    render_scale: float = 2.0
    max_render_side: int = 2000  # pixels; RapidOCR shrinks anything larger anyway, so rendering more is waste
    det_limit_type: str = "max"
    det_limit_side_len: int = 1280
    det_box_thresh: float = 0.5
    det_unclip_ratio: float = 1.6
    text_score: float = 0.5
    use_cls: bool = False
    rec_height: int = 40  # the recogniser's input height; PP-OCRv4 was trained at 48
    threads: int = field(default_factory=ocr_threads)

    def engine_kwargs(self) -> dict[str, Any]:
        return {
            "intra_op_num_threads": self.threads,
            "inter_op_num_threads": 1,
            "use_cls": self.use_cls,
            "text_score": self.text_score,
            "max_side_len": max(self.max_render_side, 2000),
            "det_limit_type": self.det_limit_type,
            "det_limit_side_len": self.det_limit_side_len,
            "det_box_thresh": self.det_box_thresh,
            "det_unclip_ratio": self.det_unclip_ratio,
            "rec_img_shape": [3, self.rec_height, 320],
        }


# --------------------------------------------------------------------------------------------------------------------
# Reading order
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fragment:
    """One recognised text box, in image pixels (y grows downwards)."""

    text: str
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def center_y(self) -> float:
        return (self.y0 + self.y1) / 2


def _is_cjk(ch: str) -> bool:
    """Scripts written without spaces between words (Han, kana, Hangul syllables) and their full-width punctuation."""
    code = ord(ch)
    return (
        0x2E80 <= code <= 0x9FFF  # radicals, CJK punctuation, kana, CJK ideographs
        or 0xAC00 <= code <= 0xD7AF  # Hangul syllables
        or 0xF900 <= code <= 0xFAFF  # compatibility ideographs
        or 0xFF00 <= code <= 0xFFEF  # full-width forms: ，（）：
        or 0x20000 <= code <= 0x3FFFF  # extension ideographs
        or unicodedata.east_asian_width(ch) in ("W", "F")
    )


def _join_fragments(left: str, right: str) -> str:
    """Two pieces of one line: no space between Chinese characters, a space anywhere else."""
    if not left or not right:
        return left + right
    return left + ("" if _is_cjk(left[-1]) and _is_cjk(right[0]) else " ") + right


def _group_lines(fragments: Sequence[Fragment]) -> list[list[Fragment]]:
    """Fragments whose vertical centres lie within half a line height of each other form one line."""
    lines: list[list[Fragment]] = []
    for fragment in sorted(fragments, key=lambda f: (f.center_y, f.x0)):
        if lines:
            line = lines[-1]
            center = sum(f.center_y for f in line) / len(line)
            height = min(fragment.height, min(f.height for f in line))
            if abs(fragment.center_y - center) <= height / 2:
                line.append(fragment)
                continue
        lines.append([fragment])
    return [sorted(line, key=lambda f: f.x0) for line in lines]


def _lines_text(fragments: Sequence[Fragment], line_height: float) -> list[str]:
    """Lines top to bottom; an empty string marks a paragraph gap (more than a line height of white space)."""
    out: list[str] = []
    previous_bottom: float | None = None
    for line in _group_lines(fragments):
        top = min(f.y0 for f in line)
        if previous_bottom is not None and top - previous_bottom > line_height and out and out[-1]:
            out.append("")
        text = ""
        for fragment in line:
            text = _join_fragments(text, fragment.text.strip())
        out.append(text)
        previous_bottom = max(f.y1 for f in line)
    return out


def _find_gutter(fragments: Sequence[Fragment]) -> float | None:
    """The x of a white gap between two columns of text, or None for a single column.

    A gutter lies in the middle 40% of the text's width, is crossed by few boxes (a title, an abstract or figure
    captions may span both columns: they are read in their place), and both sides hold several *full* lines: a
    table of short label/value cells also has a vertical gap, but reading it row by row is right, so short boxes
    on either side rule a gutter out.
    """
    if len(fragments) < 6:
        return None
    left_edge = min(f.x0 for f in fragments)
    right_edge = max(f.x1 for f in fragments)
    width = right_edge - left_edge
    best: tuple[int, float] | None = None
    for step in range(31):
        x = left_edge + width * (0.3 + 0.4 * step / 30)
        crossing = sum(1 for f in fragments if f.x0 < x < f.x1)
        if best is None or crossing < best[0]:
            best = (crossing, x)
    assert best is not None
    crossing, x = best
    if crossing > max(2, len(fragments) // 3):
        return None
    left = [f for f in fragments if f.x1 <= x]
    right = [f for f in fragments if f.x0 >= x]
    if len(left) < 3 or len(right) < 3:
        return None
    left_width = x - left_edge
    right_width = right_edge - x
    if median(f.x1 - f.x0 for f in left) < 0.6 * left_width or median(f.x1 - f.x0 for f in right) < 0.6 * right_width:
        return None
    return x


def layout_text(fragments: Sequence[Fragment]) -> str:
    """Text of one page in reading order: top to bottom, left to right; on a two-column page the left column
    before the right one, with boxes that span both columns (titles) kept in their place between them."""
    fragments = [f for f in fragments if f.text.strip()]
    if not fragments:
        return ""
    line_height = median(f.height for f in fragments)
    gutter = _find_gutter(fragments)
    if gutter is None:
        return "\n".join(_lines_text(fragments, line_height))
    out: list[str] = []
    band: list[Fragment] = []

    def flush() -> None:
        left = [f for f in band if f.x1 <= gutter]
        right = [f for f in band if f.x0 >= gutter]
        for column in (left, right):
            if column:
                if out and out[-1]:
                    out.append("")
                out.extend(_lines_text(column, line_height))
        band.clear()

    for fragment in sorted(fragments, key=lambda f: f.y0):
        if fragment.x0 < gutter < fragment.x1:  # spans both columns: ends the band above it
            flush()
            if out and out[-1]:
                out.append("")
            out.extend(_lines_text([fragment], line_height))
        else:
            band.append(fragment)
    flush()
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------------------------------------


class OcrEngine:
    """A RapidOCR engine with its settings; :meth:`read` is thread-safe (calls run one at a time)."""

    def __init__(self, config: OcrConfig | None = None) -> None:
        self.config = config or OcrConfig()
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise OcrUnavailable(f"rapidocr-onnxruntime is not installed ({exc.name})") from None
        self._engine = RapidOCR(**self.config.engine_kwargs())
        for wrapper in (self._engine.text_det.infer, self._engine.text_cls.infer, self._engine.text_rec.session):
            _quiet_session(wrapper, self.config.threads)
        self._lock = threading.Lock()

    def fragments(self, image: np.ndarray) -> list[Fragment]:
        """Recognised boxes of one image (BGR or grayscale array), in no particular order."""
        with self._lock:
            result, _ = self._engine(image, use_cls=self.config.use_cls)
        fragments = []
        for box, text, _score in result or ():
            xs = [float(point[0]) for point in box]
            ys = [float(point[1]) for point in box]
            fragments.append(Fragment(str(text), min(xs), min(ys), max(xs), max(ys)))
        return fragments

    def read(self, image: np.ndarray) -> str:
        """The image's text in reading order, lines separated by newlines (not yet normalised)."""
        return layout_text(self.fragments(image))


def _quiet_session(wrapper: Any, threads: int) -> None:
    """Reopen one of RapidOCR's ONNX Runtime sessions with worker threads that sleep when idle.

    RapidOCR builds its sessions with ONNX Runtime's default of spinning worker threads, which keep both cores busy
    between operators; beside a chat (llama.cpp, the embedder) on 2 cores that spinning only steals time. Measured
    under load: the same wall time or better at about 25% less CPU time. Falls back to RapidOCR's own session if
    its internals differ from the pinned version's.
    """
    import onnxruntime

    session = getattr(wrapper, "session", None)
    model_path = getattr(session, "_model_path", None)
    if not model_path:
        return
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    wrapper.session = onnxruntime.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


_shared: OcrEngine | None = None
_shared_lock = threading.Lock()


def shared_engine() -> OcrEngine:
    """The process's one engine with the default settings, built on first use (about 0.2 s; ~40 MB of models)."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = OcrEngine()
    return _shared


# --------------------------------------------------------------------------------------------------------------------
# PDF pages
# --------------------------------------------------------------------------------------------------------------------


def _import_pdfium() -> Any:
    try:
        import pypdfium2
    except ImportError as exc:
        raise OcrUnavailable(f"pypdfium2 is not installed ({exc.name})") from None
    return pypdfium2


class ScannedPdf:
    """Renders and OCRs pages of one open PDF file with PDFium; PDFium opens the document only when the first
    page needs it, so a PDF that has a text layer everywhere never pays for a second parser.

    ``file`` must stay open until :meth:`close`. Page indexes are 0-based, as in the PDF's page tree.
    """

    def __init__(
        self,
        file: IO[bytes],
        password: str | None = None,
        engine: OcrEngine | None = None,
        config: OcrConfig | None = None,
    ) -> None:
        self._file = file
        self._password = password
        self._engine = engine
        self._config = config or (engine.config if engine else OcrConfig())
        self._document: pypdfium2.PdfDocument | None = None

    def _open(self) -> pypdfium2.PdfDocument:
        if self._document is None:
            pdfium = _import_pdfium()
            with PDFIUM_LOCK:
                self._document = pdfium.PdfDocument(self._file, password=self._password)
            self._password = None  # not needed again: the open document holds the key
        return self._document

    def render(self, index: int) -> np.ndarray:
        """Page ``index`` as a grayscale image at the configured scale (smaller for pages larger than A3)."""
        document = self._open()
        with PDFIUM_LOCK:
            page = document[index]
            try:
                width, height = page.get_size()
                scale = self._config.render_scale
                longest = max(width, height, 1.0)
                scale = min(scale, self._config.max_render_side / longest)
                bitmap = page.render(scale=scale, grayscale=True)
                try:
                    image = bitmap.to_numpy().copy()  # the array is a view of PDFium's buffer: copy before closing
                finally:
                    bitmap.close()
            finally:
                page.close()
        return image

    def image_share(self, index: int) -> float:
        """Share of the page's area covered by images (0..1): near 1 for a scan, whatever its text layer says."""
        pdfium = _import_pdfium()
        document = self._open()
        with PDFIUM_LOCK:
            page = document[index]
            try:
                page_left, page_bottom, page_right, page_top = page.get_mediabox()
                covered = 0.0
                for obj in page.get_objects(filter=[pdfium.raw.FPDF_PAGEOBJ_IMAGE], max_depth=4):
                    left, bottom, right, top = obj.get_bounds()
                    width = min(right, page_right) - max(left, page_left)
                    height = min(top, page_top) - max(bottom, page_bottom)
                    covered += max(0.0, width) * max(0.0, height)
            finally:
                page.close()
        area = (page_right - page_left) * (page_top - page_bottom)
        return min(1.0, covered / area) if area > 0 else 0.0

    def is_blank(self, index: int) -> bool:
        """True when the page draws nothing at all (no text, image or path object): nothing to OCR."""
        document = self._open()
        with PDFIUM_LOCK:
            page = document[index]
            try:
                return next(iter(page.get_objects(max_depth=1)), None) is None
            finally:
                page.close()

    def read(self, index: int) -> str:
        """OCR text of page ``index`` in reading order (not yet normalised)."""
        image = self.render(index)
        return (self._engine or shared_engine()).read(image)

    def __enter__(self) -> ScannedPdf:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._document is not None:
            with PDFIUM_LOCK:
                self._document.close()
            self._document = None
        self._password = None
