"""End to end in a real browser: the app started by its launcher (``python -m ui.serve``, as ``make run`` does) with
the packaged models, driven by Debian's chromium.

The story: add the user guide; upload a scanned PDF that needs OCR page by page; while it is still being read, ask
a question and get the quoted sentence (highlighted in its source), the generated answer and the cited page; then
cancel the scan and see that nothing of it was stored. No assertion on wall time: each step waits for what the page
shows, with generous limits for a loaded two-core machine.

Needs ``apt-get install chromium`` and the ``playwright`` package (its own browser download is never used).
Saves a screenshot under the test's temporary folder; with RAG_UPDATE_SCREENSHOT=1 it also refreshes
docs/screenshot.png for the README (never by default, so a test run leaves the checkout clean).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.fixtures_docs import GUIDE_EN, concat_pdfs, scanned_pdf_bytes
from tests.servers import free_port, stop_server

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
QUESTION = "What colour is the citation badge?"
SCAN_COPIES = 10  # the 4-page guide, scanned, 10 times: 40 pages of OCR at seconds each (the answer took 12 here)
MINUTE = 60_000  # ms

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the app exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"the app was not healthy after {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def server_url(tmp_path: Path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env |= {
        "RAG_STORE_DIR": str(tmp_path / "store"),
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_N_CTX": "2048",
        "RAG_MAX_TOKENS": "48",
        "RAG_MAX_UPLOAD_MB": "20",  # the launcher hands it to the web server
        # With the packaged model the default ("auto") shows quotes only; the browser checks the generated text too.
        "RAG_ANSWER_MODE": "generate",
        "PYTHONPATH": str(ROOT),  # the launcher is a module of the app: `python -m ui.serve`
    }
    port = free_port()
    log = tmp_path / "streamlit.log"
    command = [sys.executable, "-m", "ui.serve", "--port", str(port), "--"]
    command += ["--server.headless", "true", "--server.fileWatcherType", "none"]
    # Run from the temp folder: no .env or .streamlit/ of the developer's checkout leaks in.
    with log.open("wb") as out:
        server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, server, log)
        yield url
    finally:
        stop_server(server, timeout=15)


def test_ask_while_a_scan_ingests_see_the_highlighted_quote_then_cancel(server_url: str, tmp_path: Path) -> None:
    try:
        run_story(server_url, tmp_path)
    except BaseException:
        print(f"--- the app's log:\n{(tmp_path / 'streamlit.log').read_text()[-6000:]}")  # pytest shows it on failure
        raise


def run_story(server_url: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    scan = tmp_path / "scanned-guide.pdf"
    scan.write_bytes(concat_pdfs([scanned_pdf_bytes(GUIDE_EN)] * SCAN_COPIES))

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(server_url)
            # First page view loads the models (sidebar "Machine"), then shows the empty state.
            expect(page.get_by_text("has no documents yet")).to_be_visible(timeout=2 * MINUTE)
            uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
            sidebar = page.locator('[data-testid="stSidebar"]')
            # One upload limit: the server's (what the widget shows) is RAG_MAX_UPLOAD_MB, so the Machine panel
            # has no mismatch to warn about.
            expect(sidebar.get_by_text("20MB per file", exact=False)).to_be_visible()
            sidebar.get_by_text("Machine", exact=True).click()
            expect(sidebar.get_by_text("Embedder:", exact=False)).to_be_visible(timeout=MINUTE)
            expect(sidebar.get_by_text("accepts uploads up to", exact=False)).to_have_count(0)

            uploader.set_input_files(str(GUIDE_EN))
            expect(sidebar.get_by_text("user-guide.pdf: ingested")).to_be_visible(timeout=2 * MINUTE)

            # A scan: every page goes through OCR, and the panel says which page it is on.
            uploader.set_input_files(str(scan))
            reading = sidebar.get_by_text("scanned-guide.pdf: reading page")
            expect(reading).to_be_visible(timeout=2 * MINUTE)
            expect(reading).to_contain_text("(OCR)")

            chat_box = page.get_by_placeholder("Ask a question about your documents")
            chat_box.fill(QUESTION)
            chat_box.press("Enter")
            sources = page.locator('[data-testid="stCaptionContainer"]', has_text="Sources:")
            expect(sources).to_be_visible(timeout=3 * MINUTE)
            # Answered while the scan is still being read: its progress is still there, its result is not.
            expect(sidebar.get_by_text("scanned-guide.pdf: reading page")).to_be_visible()
            expect(sidebar.get_by_text("scanned-guide.pdf: ingested")).to_have_count(0)

            answer = page.locator('[data-testid="stChatMessage"]').last
            texts = answer.locator('[data-testid="stMarkdownContainer"]')
            # Quote first: the sentence that answers, verbatim, with its file and page; then the labelled answer.
            assert "teal" in texts.first.inner_text()
            captions = answer.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
            assert captions[0] == "user-guide.pdf, page 3"
            assert captions[1] == "Generated answer (SmolLM2-135M-Instruct)"
            assert "user-guide.pdf, page 3" in sources.inner_text()
            # The first source is open, and its supporting sentence is highlighted: the coloured element holds it.
            highlight = answer.locator('[data-testid="stExpander"]').first.locator("span.stMarkdownColoredBackground")
            expect(highlight.filter(has_text="teal")).to_have_count(1)
            expect(page.get_by_text("Open page 3 (one-page PDF)").first).to_be_visible()
            page.wait_for_timeout(800)  # let the progress panel redraw before the screenshot
            shot = tmp_path / "answer.png"
            page.screenshot(path=str(shot), full_page=True)

            # "Open page 3" hands over that page alone, as a PDF any viewer shows.
            with page.expect_download(timeout=MINUTE) as download:
                page.get_by_text("Open page 3 (one-page PDF)").first.click()
            single = PdfReader(download.value.path())
            assert len(single.pages) == 1 and "teal" in single.pages[0].extract_text()

            # Cancel the scan: it stops at its next page and leaves nothing behind.
            sidebar.get_by_role("button", name="Cancel").first.click()
            expect(sidebar.get_by_text("scanned-guide.pdf: cancelled, nothing of it was stored")).to_be_visible(
                timeout=2 * MINUTE
            )
            expect(sidebar.get_by_text("Library: 1 document", exact=True)).to_be_visible()
        finally:
            browser.close()

    assert shot.stat().st_size > 10_000
    if os.environ.get("RAG_UPDATE_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / "screenshot.png")
