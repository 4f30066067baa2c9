"""The sample corpus in data/: facts on known PDF pages, real CJK text, and a small total size.

Other tests (retrieval, citations, eval) rely on these facts and page numbers; if one of these tests fails after an
edit, regenerate the PDFs with ``.venv/bin/python scripts/make_sample_pdfs.py`` and fix the callers.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from pypdf import PdfReader

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
EN_PDF = DATA / "user-guide.pdf"
ZH_PDF = DATA / "用户指南.pdf"
EN_MD = DATA / "user-guide.md"
ZH_MD = DATA / "用户指南.md"

EN_CITATION = (
    "The citation badge colour is teal: each answer's sources are shown under it with the file name and page number."
)
EN_EMBEDDER = (
    "The default embedder, multilingual-e5-small, reads up to 512 tokens at a time, so a 400-token chunk is embedded "
    "whole."
)
ZH_TOP_K = "默认的检索数量（top-k）是 5 个片段。"

# (file, 1-based page, fact). Each fact must be on that page and on no other.
PAGE_FACTS = [
    (EN_PDF, 2, EN_EMBEDDER),
    (EN_PDF, 3, EN_CITATION),
    (ZH_PDF, 2, ZH_TOP_K),
]

# Question -> exact answer substring in the Markdown guides (used by retrieval / eval tests).
MD_FACTS = [
    (EN_MD, "The default chunk size is 400 tokens"),
    (EN_MD, "The Streamlit app listens on 127.0.0.1 port 8501"),
    (EN_MD, "Uploads larger than 50 MB are refused"),
    (EN_MD, "`RAG_N_GPU_LAYERS=-1` offloads every layer to the GPU"),
    (EN_MD, "Duplicate files are skipped by content hash"),
    (ZH_MD, "每个片段默认 400 个词元"),
    (ZH_MD, "Streamlit 界面监听 127.0.0.1 的 8501 端口"),
    (ZH_MD, "单个文件超过 50 MB 会被拒绝上传"),
    (ZH_MD, "设为 -1 表示把所有层都放到 GPU 上"),
    (ZH_MD, "上传的文件保存在 `data/uploads/` 目录"),
]


def squash(text: str) -> str:
    """Drop all whitespace: pypdf ends each wrapped line with a newline, which may fall inside a fact."""
    return "".join(text.split())


def page_texts(pdf: Path) -> list[str]:
    return [page.extract_text() or "" for page in PdfReader(str(pdf)).pages]


@pytest.mark.parametrize(("pdf", "page", "fact"), PAGE_FACTS, ids=lambda v: getattr(v, "name", str(v))[:30])
def test_fact_is_on_its_page_only(pdf: Path, page: int, fact: str) -> None:
    texts = [squash(t) for t in page_texts(pdf)]
    found_on = [i + 1 for i, text in enumerate(texts) if squash(fact) in text]
    assert found_on == [page], f"{pdf.name}: {fact!r} on pages {found_on}, expected page {page}"


def test_page_counts_and_headings() -> None:
    en, zh = page_texts(EN_PDF), page_texts(ZH_PDF)
    assert len(en) == 4
    assert len(zh) == 3
    # Page 3 of the English PDF holds the citation fact alone, under its heading.
    assert squash(en[2]) == squash("Citations" + EN_CITATION)
    assert all(t.strip() for t in en + zh), "every page has text"


def test_chinese_pdf_extracts_real_cjk() -> None:
    text = "".join(page_texts(ZH_PDF))
    assert "默认的检索数量" in text
    assert ZH_TOP_K in text  # on one line: extracts verbatim, spaces included
    cjk = re.findall(r"[\u4e00-\u9fff]", text)
    assert len(cjk) > 200, "Chinese text must extract as CJK characters, not glyph ids or mojibake"
    assert "\ufffd" not in text


def test_pdfs_are_small() -> None:
    for pdf in (EN_PDF, ZH_PDF):
        assert pdf.stat().st_size < 200 * 1024, f"{pdf.name} is {pdf.stat().st_size} bytes"


def test_data_folder_under_1_mb() -> None:
    # data/uploads/ holds the user's own uploads, not the sample corpus.
    uploads = DATA / "uploads"
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file() and uploads not in p.parents)
    assert total < 1024 * 1024, f"data/ sample corpus is {total} bytes"


@pytest.mark.parametrize(("md", "answer"), MD_FACTS, ids=lambda v: getattr(v, "name", str(v))[:30])
def test_markdown_guides_state_the_facts(md: Path, answer: str) -> None:
    assert answer in md.read_text(encoding="utf-8")


def default(name: str) -> object:
    """A setting's coded default (not whatever RAG_* variable this shell happens to set)."""
    from rag.config import Settings

    return Settings.model_fields[name].default


def test_guides_state_the_coded_defaults() -> None:
    """The app answers questions about itself from these guides: a default changed in rag/config.py or rag/e5.py
    without the guides would make it quote a false number."""
    from rag.config import AUTO, PACKAGED_E5
    from rag.e5 import MAX_TOKENS, NAME

    size, overlap, top_k = default("chunk_size"), default("chunk_overlap"), default("top_k")
    pages, seconds, unpacked = default("max_pages"), default("max_seconds_per_doc"), default("max_unpacked_mb")
    assert default("embed_model") == AUTO and PACKAGED_E5.endswith(NAME)
    en_md, zh_md = squash(EN_MD.read_text(encoding="utf-8")), squash(ZH_MD.read_text(encoding="utf-8"))
    en_pdf, zh_pdf = [squash(t) for t in page_texts(EN_PDF)], [squash(t) for t in page_texts(ZH_PDF)]
    for text in (
        f"The default chunk size is {size} tokens, and neighbouring chunks overlap by {overlap} tokens",
        f"| `RAG_CHUNK_SIZE` | {size} |",
        f"| `RAG_CHUNK_OVERLAP` | {overlap} |",
        f"the default `RAG_TOP_K` is {top_k}",
        f"at most {pages:g} pages",
        f"at most {seconds:g} seconds",
        f"at most {unpacked} MB",
        f"{NAME} reads at most {MAX_TOKENS} tokens",
    ):
        assert squash(text) in en_md
    for text in (
        f"每个片段默认 {size} 个词元",
        f"重叠 {overlap} 个词元",
        f"默认取 {top_k} 个",
        f"默认分别是 {size} 和 {overlap}",
    ):
        assert squash(text) in zh_md
    assert squash(f"chunks of {size} tokens that overlap by {overlap} tokens") in en_pdf[1]
    assert squash(f"{NAME}, reads up to {MAX_TOKENS} tokens at a time, so a {size}-token chunk") in en_pdf[1]
    assert squash(f"文档按 {size} 个词元切分，相邻片段重叠 {overlap} 个词元") in zh_pdf[2]
    assert squash(f"（top-k）是 {top_k} 个片段") in zh_pdf[1]


def test_pdf_only_facts_are_not_in_markdown() -> None:
    """Keeps retrieval tests unambiguous: these facts can only be cited from a PDF page."""
    for md in (EN_MD, ZH_MD):
        text = squash(md.read_text(encoding="utf-8"))
        for fact in (EN_CITATION, EN_EMBEDDER, ZH_TOP_K):
            assert squash(fact) not in text


def test_generator_reproduces_committed_pdfs(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_sample_pdfs", ROOT / "scripts" / "make_sample_pdfs.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    try:
        gen.find_cjk_font()
    except gen.FontNotFound as exc:
        pytest.skip(str(exc))
    assert gen.main(["--out-dir", str(tmp_path)]) == 0
    for name in (EN_PDF.name, ZH_PDF.name):
        assert page_texts(tmp_path / name) == page_texts(DATA / name), f"data/{name} is stale: re-run the script"
