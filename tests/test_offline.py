"""With the network cut, the installed app still ingests and answers (packaged models, no hub, no telemetry).

The commands run inside a fresh network namespace (`unshare --net`): only a loopback device that is down, so
any attempt to reach a model hub or a telemetry endpoint fails instead of silently succeeding.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs `unshare --net` (root or user namespaces)")
def test_ingest_and_ask_without_any_network(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "HF_", "TRANSFORMERS_"))}
    env.update(RAG_STORE_DIR=str(tmp_path / "store"), RAG_N_CTX="2048", RAG_MAX_TOKENS="24")
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(ROOT / "data" / "user-guide.pdf", docs)

    def offline(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["unshare", "--net", sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )

    ingest = offline("-m", "ingest", str(docs), "--json")
    assert ingest.returncode == 0, ingest.stderr
    assert json.loads(ingest.stdout)["ingested"] == 1

    ask = offline("-m", "rag", "ask", "What colour is the citation badge?", "--json", "--mode", "generate")
    assert ask.returncode == 0, ask.stderr
    answer = json.loads(ask.stdout)
    assert answer["abstained"] is False and answer["answer"].strip()
    assert answer["sources"][0]["page"] == 3
