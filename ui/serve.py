"""Start the web app with the server's limits taken from our settings: ``python -m ui.serve [--port N] [-- ARGS]``.

Streamlit's web server enforces its own upload limit (``server.maxUploadSize``, 200 MB by default) before the app
sees a byte; the app's RAG_MAX_UPLOAD_MB would otherwise only be checked after the whole file is in the server's
memory. This launcher reads the settings (``RAG_*`` and ``.env``, like every other entry point) and starts
Streamlit with that limit, bound to 127.0.0.1 and without usage statistics. Arguments after ``--`` go to Streamlit.
The app warns in its Machine panel when the running server's limit differs (someone ran ``streamlit run app.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rag.errors import RagError

APP = Path(__file__).resolve().parent.parent / "app.py"
DEFAULT_PORT = 8501
ADDRESS = "127.0.0.1"


def streamlit_args(max_upload_mb: int, port: int = DEFAULT_PORT, extra: list[str] | None = None) -> list[str]:
    """The ``streamlit`` command line (without the program name) that serves the app with these limits."""
    return [
        "run",
        str(APP),
        "--server.address",
        ADDRESS,
        "--server.port",
        str(port),
        "--server.maxUploadSize",
        str(max_upload_mb),
        "--browser.gatherUsageStats",
        "false",
        *(extra or []),
    ]


def upload_limit_warning(server_mb: object, setting_mb: int) -> str | None:
    """The Machine panel's warning when the server's upload limit is not RAG_MAX_UPLOAD_MB, else None."""
    if server_mb == setting_mb:
        return None
    return (
        f"The web server accepts uploads up to {server_mb} MB, but RAG_MAX_UPLOAD_MB is {setting_mb} MB: "
        "start the app with `make run` (or `python -m ui.serve`) so that both limits agree."
    )


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(prog="python -m ui.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on {ADDRESS} (default {DEFAULT_PORT})")
    return parser.parse_args(argv), extra


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    from rag.config import load_settings

    try:
        settings = load_settings()
    except RagError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    from streamlit.web import cli

    cli.main(streamlit_args(settings.max_upload_mb, args.port, extra), prog_name="streamlit")  # exits when done
    return 0


if __name__ == "__main__":
    sys.exit(main())
