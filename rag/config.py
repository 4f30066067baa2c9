"""All configuration in one place: ``RAG_*`` environment variables, then an optional ``.env`` file.

Every consumer (CLI, UI, tests) calls :func:`get_settings` or builds ``Settings(...)`` explicitly, so a wrong
value fails once, at start-up, with a message naming the variable, the value and what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rag.errors import ConfigError


def cache_root() -> Path:
    """Where derived files of packaged models live: ``${DOCCHAT_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/docchat}``."""
    root = os.environ.get("DOCCHAT_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "docchat"
    return Path(root).expanduser()


# Sentinels that mean "the model shipped inside a PyPI package" (see rag/embedders.py and rag/models.py).
AUTO = "auto"
PACKAGED_E5 = "packaged:multilingual-e5-small"
PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"
PACKAGED_LLM = "packaged:SmolLM2-135M-Instruct"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore", validate_default=True)

    # Store
    store_dir: Path = Field(Path("storage"), description="Chroma persistence folder (embedded mode).")
    collection: str = Field("documents", description="Chroma collection holding the chunks.")
    chroma_host: str | None = Field(None, description="Chroma server host; when set, use HttpClient instead.")
    chroma_port: int = Field(8000, ge=1, le=65535)
    data_dir: Path = Field(Path("data"), description="Sample documents and uploads live here.")

    # Models
    embed_model: str = Field(
        AUTO,
        description="'auto' (the collection's own packaged embedder, multilingual-e5-small for a new one), "
        f"{PACKAGED_E5!r}, {PACKAGED_MINILM!r}, a sentence-transformers folder or model id, or 'fake'.",
    )
    embed_batch_size: int = Field(64, ge=1, le=4096)
    llm_model: str = Field(PACKAGED_LLM, description="Packaged SmolLM2, a path to a .gguf, or 'fake'.")
    llm_base_url: str | None = Field(None, description="OpenAI-compatible server; generation goes there when set.")
    llm_api_key: str = Field("not-needed", description="Sent to the OpenAI-compatible server.")
    llm_server_model: str = Field("local", description="Model name sent to the OpenAI-compatible server.")
    n_ctx: int = Field(4096, ge=256, le=1_048_576)
    n_threads: int | None = Field(None, ge=1, le=1024, description="llama.cpp threads; default: all cores.")
    n_gpu_layers: int = Field(0, ge=-1, description="Layers offloaded to the GPU; -1 offloads all.")
    rerank_model: str | None = Field(None, description="Cross-encoder for re-ranking; off when unset.")

    # Chunking (sizes in tokens of the embedding model)
    chunk_size: int = Field(400, ge=16, le=8192)
    chunk_overlap: int = Field(50, ge=0, le=4096)

    # Retrieval and answering
    top_k: int = Field(5, ge=1, le=100)
    dense_weight: float | None = Field(
        None, ge=0.0, le=10.0, description="Fusion weight of the vector ranking; default: tuned per question language."
    )
    keyword_weight: float = Field(1.0, ge=0.0, le=10.0, description="Fusion weight of BM25 for same-language chunks.")
    keyword_weight_cross: float | None = Field(
        None,
        ge=0.0,
        le=10.0,
        description="Fusion weight of BM25 for chunks in another language; default: tuned per question language.",
    )
    translated_weight: float | None = Field(
        None,
        ge=0.0,
        le=10.0,
        description="Fusion weight of BM25 on the question's dictionary translation, for chunks in another language "
        "(rag/dictionary.py); 0 turns translation off; default: tuned per question language.",
    )
    min_relevance: float = Field(
        0.43,
        ge=0.0,
        le=3.0,
        description="Below this grounding evidence (the best chunk's relevance plus RAG_SENTENCE_WEIGHT times the "
        "closest sentence's similarity), answer 'not in the documents' (bench/calibrate_grounding.py).",
    )
    unknown_word_penalty: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Relevance lost in proportion to the share of the question's words that no chunk holds, as they "
        "are or in dictionary translation ('How do I make a French omelette?'); chosen with RAG_MIN_RELEVANCE "
        "(bench/calibrate_grounding.py).",
    )
    sentence_weight: float = Field(
        0.25,
        ge=0.0,
        le=2.0,
        description="Grounding evidence added per unit of the similarity of the retrieved sentence closest to the "
        "question, on top of the best chunk's relevance; chosen with RAG_MIN_RELEVANCE and RAG_UNKNOWN_WORD_PENALTY "
        "(bench/calibrate_grounding.py).",
    )
    temperature: float = Field(0.2, ge=0.0, le=2.0)
    max_tokens: int = Field(384, ge=1, le=32768)
    answer_mode: Literal["auto", "generate", "quotes"] = Field(
        "auto",
        description="'generate': quotes, then the model's answer; 'quotes': the quoted sentences only; 'auto': quotes "
        "with the packaged SmolLM2-135M (bench/answer_eval.py: its answers showed no gold answer the quotes lacked), "
        "generate with a model you chose (RAG_LLM_MODEL or RAG_LLM_BASE_URL).",
    )
    context_tokens: int = Field(
        1536, ge=64, le=1_048_576, description="Most tokens of sources sent to the model (time to first token)."
    )
    filter_sources: bool = Field(
        False, description="Send only sources over RAG_MIN_RELEVANCE instead of the top-k once grounding passed."
    )
    refuse_unknown_names: bool = Field(
        True,
        description="Refuse a question naming what no document mentions: a Chinese one by a Latin-script name or a "
        "《title》, an English one by an identifier (OpenAI, TLS, GPT-4o).",
    )
    model_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Extra folders searched for GGUF models (python -m rag models, sidebar)."
    )

    # Untrusted input: limits that hold for the CLI and the UI alike
    max_upload_mb: int = Field(50, ge=1, le=10_000, description="Largest upload; the web server enforces it too.")
    max_pages: int = Field(2000, ge=1, le=1_000_000, description="Pages read from one document at most.")
    max_seconds_per_doc: float = Field(
        900.0, gt=0, le=86_400, description="Time budget for reading (and OCR of) one document."
    )
    max_unpacked_mb: int = Field(
        200, ge=1, le=100_000, description="Largest decompressed size of a zip-based file (DOCX)."
    )
    ocr: Literal["auto", "off"] = Field("auto", description="OCR pages without a text layer (offline, RapidOCR).")

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        # Chroma's own rule, checked here so the message names our variable instead of a stack trace from Rust.
        import re

        # Shorter than Chroma's 512 and no "--": the store adds ".docs", ".r<rev>" and "--<language>" to it.
        if (
            not (3 <= len(value) <= 480)
            or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]", value)
            or ".." in value
            or "--" in value
        ):
            raise ValueError(
                "3-480 characters from [a-zA-Z0-9._-], starting and ending with a letter or digit, no '..' or '--'"
            )
        return value

    @field_validator("model_dirs", mode="before")
    @classmethod
    def _split_dirs(cls, value: object) -> object:
        if isinstance(value, str):  # RAG_MODEL_DIRS=~/llm:/data/gguf, like PATH
            return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]
        return value

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"RAG_CHUNK_OVERLAP ({self.chunk_overlap}) must be smaller than RAG_CHUNK_SIZE ({self.chunk_size})"
            )
        return self

    @model_validator(mode="after")
    def _answer_fits_the_window(self) -> Settings:
        if self.max_tokens >= self.n_ctx // 2:
            raise ValueError(
                f"RAG_MAX_TOKENS ({self.max_tokens}) must be less than half of RAG_N_CTX ({self.n_ctx}): "
                "the rest of the window holds the question and its sources"
            )
        return self

    @property
    def resolved_answer_mode(self) -> Literal["generate", "quotes"]:
        if self.answer_mode != "auto":
            return self.answer_mode
        return "quotes" if self.llm_model == PACKAGED_LLM and not self.llm_base_url else "generate"

    @property
    def threads(self) -> int:
        return self.n_threads or max(1, os.cpu_count() or 1)


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning pydantic's multi-line report into one line per bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        var = f"RAG_{loc[0].upper()}" if loc else "settings"
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        if loc:
            parts.append(f"{var}={err.get('input')!r} is invalid: {msg}")
        else:
            parts.append(msg)
    return "; ".join(parts)
