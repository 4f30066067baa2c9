"""Helpers for tests that start real servers (chroma run, llama_cpp.server, streamlit) on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_server(process: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate, and kill if it does not exit in time, so no test leaves a server behind."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
