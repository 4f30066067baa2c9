"""All configuration in one place: ``RAG_*`` environment variables, then an optional ``.env`` file.

Every consumer (CLI, UI, tests) calls :func:`get_settings` or builds ``Settings(...)`` explicitly, so a wrong
value fails once, at start-up, with a message naming the variable, the value and what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag.errors import ConfigError

# Sentinels that mean "the model shipped inside a PyPI package" (see rag/models.py).
PACKAGED_EMBEDDER = "packaged:all-MiniLM-L6-v2"
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
    embed_model: str = Field(PACKAGED_EMBEDDER, description="Packaged MiniLM, a local folder, a model id, or 'fake'.")
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
    chunk_size: int = Field(200, ge=16, le=8192)
    chunk_overlap: int = Field(30, ge=0, le=4096)

    # Retrieval and answering
    top_k: int = Field(5, ge=1, le=100)
    dense_weight: float = Field(1.0, ge=0.0, le=10.0, description="Fusion weight of dense ranks for non-CJK queries.")
    dense_weight_cjk: float | None = Field(
        None,
        ge=0.0,
        le=10.0,
        description="Fusion weight of dense ranks for CJK queries; default 0 for English-only embedders, else 1.",
    )
    min_relevance: float = Field(0.35, ge=0.0, le=1.0, description="Below this, answer 'not in the documents'.")
    temperature: float = Field(0.2, ge=0.0, le=2.0)
    max_tokens: int = Field(384, ge=1, le=32768)

    # Uploads (UI)
    max_upload_mb: int = Field(50, ge=1, le=10_000)

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        # Chroma's own rule, checked here so the message names our variable instead of a stack trace from Rust.
        import re

        if (
            not (3 <= len(value) <= 512)
            or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]", value)
            or ".." in value
        ):
            raise ValueError(
                "3-512 characters from [a-zA-Z0-9._-], starting and ending with a letter or digit, no '..'"
            )
        return value

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"RAG_CHUNK_OVERLAP ({self.chunk_overlap}) must be smaller than RAG_CHUNK_SIZE ({self.chunk_size})"
            )
        return self

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
