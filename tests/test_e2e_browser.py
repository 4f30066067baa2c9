"""End to end in a real browser: a real streamlit server with the packaged models, driven by Debian's chromium.

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

from tests.servers import free_port, stop_server

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
QUESTION = "What colour is the citation badge?"

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"streamlit exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"streamlit not healthy after {timeout}s:\n{log.read_text()[-3000:]}")


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
    }
    port = free_port()
    log = tmp_path / "streamlit.log"
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "app.py"),
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
    ]
    # Run from the temp folder: no .env or .streamlit/ of the developer's checkout leaks in.
    with log.open("wb") as out:
        server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, server, log)
        yield url
    finally:
        stop_server(server, timeout=15)


def test_upload_ask_and_see_the_cited_page(server_url: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    started = time.monotonic()

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
            sync_api.expect(page.get_by_text("has no documents yet")).to_be_visible(timeout=120_000)

            page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
                str(ROOT / "data" / "user-guide.pdf")
            )
            sync_api.expect(page.get_by_text("user-guide.pdf: ingested")).to_be_visible(timeout=120_000)

            chat_box = page.get_by_placeholder("Ask a question about your documents")
            chat_box.fill(QUESTION)
            chat_box.press("Enter")

            sources = page.locator('[data-testid="stCaptionContainer"]', has_text="Sources:")
            sync_api.expect(sources).to_be_visible(timeout=120_000)
            assert "user-guide.pdf, page 3" in sources.inner_text()
            answer = page.locator('[data-testid="stChatMessage"]').last
            assert answer.locator('[data-testid="stMarkdownContainer"]').first.inner_text().strip()
            sync_api.expect(page.get_by_text("Open page 3 (one-page PDF)").first).to_be_visible()
            # The first source is open, its supporting sentence highlighted.
            sync_api.expect(page.get_by_text("teal", exact=False).last).to_be_visible()
            page.wait_for_timeout(800)  # let the last rerun settle before the screenshot

            shot = tmp_path / "answer.png"
            page.screenshot(path=str(shot), full_page=True)

            # "Open page 3" hands over that page alone, as a PDF any viewer shows.
            with page.expect_download(timeout=30_000) as download:
                page.get_by_text("Open page 3 (one-page PDF)").first.click()
            single = PdfReader(download.value.path())
            assert len(single.pages) == 1 and "teal" in single.pages[0].extract_text()
        finally:
            browser.close()

    assert shot.stat().st_size > 10_000
    if os.environ.get("RAG_UPDATE_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / "screenshot.png")
    assert time.monotonic() - started < 180
