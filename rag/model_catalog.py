"""Find the GGUF models a person already has (Ollama, LM Studio, the Hugging Face cache, ~/models) and describe them.

Everything is read from each file's GGUF metadata with the `gguf` library (llama.cpp's reader); tensor data is
never read and nothing is downloaded. Unreadable files become one-line problems, never exceptions, so one damaged
blob cannot hide the others. The CLI (`python -m rag models`) and the sidebar's model switch both call this module.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from gguf import GGUFValueType

from rag.errors import ModelNotFound, UnreadableFile

SOURCES = ("packaged", "ollama", "lm-studio", "hf-cache", "models-dir", "extra")  # listing (and dedup) order
GGUF_MAGIC = b"GGUF"
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_DEFAULT_HOST, OLLAMA_DEFAULT_NAMESPACE = "registry.ollama.ai", "library"
OLLAMA_SYSTEM_DIR = Path("/usr/share/ollama/.ollama/models")  # the Linux service's store
_DIGEST = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")  # what Ollama accepts; also keeps paths inside blobs/
_SHARD = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)  # llama.cpp's split names
_MAX_DEPTH = 8  # folders below a models root that we still walk into

# Encoder-only architectures: they embed text, they cannot chat.
_EMBEDDING_ARCHS = frozenset(
    {"bert", "modern-bert", "nomic-bert", "nomic-bert-moe", "neo-bert", "jina-bert-v2", "jina-bert-v3", "eurobert",
     "gemma-embedding", "t5encoder"}
)  # fmt: skip
_POOLING_RANK = 4  # gguf.PoolingType.RANK: a re-ranker

# Memory rule of thumb, checked against SmolLM2-135M in llama.cpp (RSS after a generation, n_ctx 512/4096/8192:
# 140/248/342 MB = weights 98 MB + KV + 30-55 MB). Overhead covers compute buffers, which grow with the model.
_OVERHEAD_FIXED = 100_000_000
_OVERHEAD_SHARE = 0.10  # of the weights
_KV_BYTES_PER_TOKEN_PER_BILLION = 64 * 1024  # fallback without hyper-parameters; >= Llama-2-7B's real 512 KiB / 7


@dataclass(frozen=True)
class GgufModel:
    """One model file on disk, described from its own metadata."""

    path: Path  # the file llama.cpp opens (first shard of a split model)
    name: str  # Ollama "name:tag", LM Studio "publisher/repo/file", HF "org/repo/file", else path under its root
    source: str  # one of SOURCES
    size_bytes: int  # all shards together
    architecture: str | None  # general.architecture
    parameters: int | None  # general.parameter_count, else summed from tensor shapes
    quantization: str | None  # from general.file_type (e.g. "Q4_K_M"), else the tensor type with most elements
    context_length: int | None  # <arch>.context_length: the context it was trained for
    has_chat_template: bool  # tokenizer.chat_template present
    kind: str  # "chat" | "embedding" | "reranker" | "projector" | "adapter" | "unknown"
    kv_bytes_per_token: int | None = None  # f16 K+V over all layers; None when the hyper-parameters are absent

    @property
    def is_chat(self) -> bool:
        return self.kind == "chat"

    def label(self) -> str:
        """One line for a select box: name, then what decides whether it is worth loading."""
        facts = [_human_count(self.parameters), self.quantization, _human_bytes(self.size_bytes)]
        if not self.has_chat_template:
            facts.append("no chat template")
        return f"{self.name} ({', '.join(f for f in facts if f)})"


# ---------------------------------------------------------------------------------------------------- reading


class _MetadataReader(gguf.GGUFReader):
    """`GGUFReader` that steps over long arrays (vocabulary, merges, token types) instead of materialising them.

    The stock reader builds one numpy view per array element: 2.7 s for SmolLM2's 49k-token vocabulary, several
    seconds per model with 150k-token vocabularies. We need none of those arrays; skipped ones read as empty.
    Everything else (header, scalar keys, tensor infos, alignment) is the library's own parsing.
    """

    _LONGEST_KEPT = 1024  # per-layer arrays (head_count_kv of a 126-layer model) stay readable

    def _get_field_parts(self, orig_offs: int, raw_type: int) -> tuple[int, list[Any], list[int], list[GGUFValueType]]:
        if GGUFValueType(raw_type) != GGUFValueType.ARRAY:
            return super()._get_field_parts(orig_offs, raw_type)
        raw_item_type = self._get(orig_offs, np.uint32)
        count = self._get(orig_offs + 4, np.uint64)
        if len(raw_item_type) != 1 or len(count) != 1:
            raise ValueError("metadata ends inside an array header")
        item_type = GGUFValueType(int(raw_item_type[0]))
        if int(count[0]) <= self._LONGEST_KEPT or item_type == GGUFValueType.ARRAY:
            return super()._get_field_parts(orig_offs, raw_type)
        end = self._skip_items(orig_offs + 12, item_type, int(count[0]))
        return end - orig_offs, [raw_item_type, count], [], [GGUFValueType.ARRAY, item_type]

    def _skip_items(self, offs: int, item_type: GGUFValueType, count: int) -> int:
        if item_type == GGUFValueType.STRING:
            order = "little" if self.endianess == gguf.GGUFEndian.LITTLE else "big"
            raw, size = memoryview(self.data), len(self.data)
            for _ in range(count):
                offs += 8 + int.from_bytes(raw[offs : offs + 8], order)
                if offs > size:  # also stops a damaged count from looping for ages
                    break
        else:
            offs += count * np.dtype(self.gguf_scalar_to_np[item_type]).itemsize
        if offs > len(self.data):
            raise ValueError("metadata ends inside an array")
        return offs

    def _build_tensors(self, start_offs: int, fields: list[Any]) -> None:
        """A download cut in the tensor data still has complete metadata: say how much of the file is there."""
        end = start_offs
        for field in fields:
            _name_len, _name, _n_dims, dims, raw_dtype, offset = field.parts
            block_size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(int(raw_dtype[0]))]
            end = max(end, start_offs + int(offset[0]) + int(np.prod(dims)) * type_size // block_size)
        if end > len(self.data):
            raise _Truncated(f"truncated GGUF ({len(self.data):,} of {end:,} bytes); download it again")
        super()._build_tensors(start_offs, fields)


class _Truncated(Exception):
    pass


def _value(reader: gguf.GGUFReader, key: str) -> Any:
    field = reader.get_field(key)
    return None if field is None else field.contents()


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class _Facts:
    """What one file's metadata says; cached per (real path, size, mtime) so a rerun of the sidebar is free."""

    architecture: str | None
    parameters: int | None
    quantization: str | None
    context_length: int | None
    has_chat_template: bool
    kind: str
    kv_bytes_per_token: int | None
    split_count: int
    tensor_elements: int
    tensor_types: tuple[tuple[str, int], ...]  # (type name, elements), for the quantisation fallback


def _open(path: Path) -> gguf.GGUFReader:
    """Check the magic ourselves (a clear message for a non-GGUF file), then let the library parse."""
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise UnreadableFile(path, f"not a GGUF file (starts with {magic!r}, not b'GGUF')")
    try:
        return _MetadataReader(path)
    except _Truncated as exc:
        raise UnreadableFile(path, str(exc)) from None
    except (ValueError, IndexError, KeyError, OverflowError, TypeError, UnicodeDecodeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UnreadableFile(path, f"damaged or truncated GGUF ({detail}); download it again") from None


def _kind(reader: gguf.GGUFReader, arch: str | None) -> str:
    general_type = _value(reader, "general.type")
    pooling = _int_or_none(_value(reader, f"{arch}.pooling_type")) if arch else None
    if general_type == gguf.GGUFType.MMPROJ or arch == "clip":
        return "projector"
    if general_type == gguf.GGUFType.ADAPTER:
        return "adapter"
    if pooling == _POOLING_RANK:
        return "reranker"
    if arch in _EMBEDDING_ARCHS or (pooling or 0) > 0:
        return "embedding"
    return "chat" if arch and general_type in (None, gguf.GGUFType.MODEL) else "unknown"


def _per_layer(value: Any, n_layers: int) -> list[int] | None:
    """Hyper-parameters are a scalar or one value per layer (e.g. OpenELM's head_count_kv)."""
    if isinstance(value, list):
        return [int(v) for v in value] if len(value) == n_layers else None
    number = _int_or_none(value)
    return None if number is None else [number] * n_layers


def _kv_bytes_per_token(reader: gguf.GGUFReader, arch: str | None) -> int | None:
    """f16 K and V for every layer, as llama.cpp allocates by default: 2 bytes x (K width + V width) per layer."""
    if not arch:
        return None
    n_layers = _int_or_none(_value(reader, f"{arch}.block_count"))
    n_embd = _int_or_none(_value(reader, f"{arch}.embedding_length"))
    if not n_layers or not n_embd:
        return None
    heads = _per_layer(_value(reader, f"{arch}.attention.head_count"), n_layers)
    if not heads or not any(heads):
        return None
    kv_heads = _per_layer(_value(reader, f"{arch}.attention.head_count_kv"), n_layers) or heads
    head_dim = n_embd // max(heads)
    key_dim = _int_or_none(_value(reader, f"{arch}.attention.key_length")) or head_dim
    value_dim = _int_or_none(_value(reader, f"{arch}.attention.value_length")) or head_dim
    return sum(2 * kv * (key_dim + value_dim) for kv in kv_heads)


def _quantization(file_type: Any, tensor_types: Iterable[tuple[str, int]]) -> str | None:
    number = _int_or_none(file_type)
    try:
        file_type = gguf.LlamaFileType(number) if number is not None else None
    except ValueError:  # a newer quantisation than this gguf release knows
        file_type = None
    if file_type is not None and file_type != gguf.LlamaFileType.GUESSED:
        return file_type.name.removeprefix("MOSTLY_").removeprefix("ALL_")
    counts = Counter(dict(tensor_types))
    return counts.most_common(1)[0][0] if counts else None


@functools.lru_cache(maxsize=256)
def _read_facts(real_path: str, size: int, mtime_ns: int) -> _Facts:
    """Size and mtime are part of the key so a replaced file is read again."""
    path = Path(real_path)
    reader = _open(path)
    arch = _value(reader, "general.architecture")
    arch = arch if isinstance(arch, str) else None
    elements: Counter[str] = Counter()
    for tensor in reader.tensors:
        elements[tensor.tensor_type.name] += int(tensor.n_elements)
    tensor_types = tuple(elements.items())
    return _Facts(
        architecture=arch,
        parameters=_int_or_none(_value(reader, "general.parameter_count")),
        quantization=_quantization(_value(reader, "general.file_type"), tensor_types),
        context_length=_int_or_none(_value(reader, f"{arch}.context_length")) if arch else None,
        has_chat_template=bool(_value(reader, "tokenizer.chat_template")),
        kind=_kind(reader, arch),
        kv_bytes_per_token=_kv_bytes_per_token(reader, arch),
        split_count=_int_or_none(_value(reader, "split.count")) or 1,
        tensor_elements=sum(elements.values()),
        tensor_types=tensor_types,
    )


def _facts(path: Path) -> _Facts:
    try:
        real = path.resolve(strict=True)
        stat = real.stat()
    except OSError as exc:
        raise UnreadableFile(path, f"cannot open ({exc.strerror or exc}); check that the file exists") from None
    if stat.st_size == 0:
        raise UnreadableFile(path, "empty file, not a GGUF model; download it again")
    try:
        return _read_facts(str(real), stat.st_size, stat.st_mtime_ns)
    except PermissionError:
        raise UnreadableFile(path, "permission denied; make the file readable for this user") from None
    except OSError as exc:
        raise UnreadableFile(path, f"cannot read ({exc.strerror or exc})") from None


def _shards(path: Path, count: int) -> list[Path]:
    """All files of a split model, first included; raises when one is missing (llama.cpp could not load it)."""
    match = _SHARD.match(path.name)
    if count <= 1 or not match:
        return [path]
    stem, suffix = match.group("stem"), path.name[match.end("count") :]
    shards = [path.with_name(f"{stem}-{no:05d}-of-{count:05d}{suffix}") for no in range(1, count + 1)]
    missing = [s.name for s in shards if not s.is_file()]
    if missing:
        raise UnreadableFile(path, f"split model with {len(missing)} of {count} parts missing ({missing[0]}, ...)")
    return shards


def read_gguf_info(path: Path, name: str | None = None, source: str = "extra") -> GgufModel:
    """Describe one GGUF file from its metadata; raises `UnreadableFile` (a `RagError`) with a one-line reason.

    A split model (`x-00001-of-00003.gguf`) is described as a whole: sizes are summed and, when the first shard
    does not carry `general.parameter_count`, so are the tensor elements of every shard.
    """
    path = Path(path).expanduser()
    facts = _facts(path)
    shards = _shards(path, facts.split_count)
    parameters = facts.parameters
    size = 0
    elements = 0
    for shard in shards:
        shard_facts = facts if shard == path else _facts(shard)
        elements += shard_facts.tensor_elements
        size += shard.stat().st_size
    kv = facts.kv_bytes_per_token
    return GgufModel(
        path=path,
        name=name or path.name,
        source=source,
        size_bytes=size,
        architecture=facts.architecture,
        parameters=parameters if parameters else (elements or None),
        quantization=facts.quantization,
        context_length=facts.context_length,
        has_chat_template=facts.has_chat_template,
        kind=facts.kind,
        kv_bytes_per_token=kv,
    )


# ---------------------------------------------------------------------------------------------------- finding


@dataclass(frozen=True)
class _Candidate:
    path: Path
    name: str
    source: str


def _walk_gguf(root: Path) -> Iterator[Path]:
    """`*.gguf` under root, following folder symlinks (people link models from other disks) but never in a loop."""
    seen: set[tuple[int, int]] = set()
    base_depth = len(root.parts)
    for folder, dirnames, filenames in os.walk(root, followlinks=True, onerror=lambda _exc: None):
        here = Path(folder)
        try:
            st = here.stat()
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        too_deep = len(here.parts) - base_depth >= _MAX_DEPTH
        dirnames[:] = [] if too_deep else sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.lower().endswith(".gguf"):
                yield here / filename


def _is_later_shard(path: Path) -> bool:
    match = _SHARD.match(path.name)
    return bool(match) and int(match.group("no")) != 1


def _folder_candidates(root: Path, source: str, prefix: str = "") -> Iterator[_Candidate]:
    for path in _walk_gguf(root):
        if not _is_later_shard(path):
            yield _Candidate(path, prefix + path.relative_to(root).as_posix(), source)


def _ollama_name(parts: tuple[str, ...]) -> str:
    """Like Ollama's `Name.DisplayShortest`: drop the default host and namespace, always keep the tag."""
    *front, model, tag = parts
    host, namespace, *kind = front
    if host.lower() != OLLAMA_DEFAULT_HOST:
        prefix = f"{host}/{namespace}/"
    elif namespace.lower() != OLLAMA_DEFAULT_NAMESPACE:
        prefix = f"{namespace}/"
    else:
        prefix = ""
    return prefix + "".join(f"{k}/" for k in kind) + f"{model}:{tag}"


def _ollama_candidates(store: Path, problems: list[str]) -> Iterator[_Candidate]:
    """Manifests `manifests/<host>/<namespace>/[<kind>/]<model>/<tag>` (JSON) name blobs `blobs/sha256-<hex>`."""
    manifests = store / "manifests"
    if not manifests.is_dir():
        return
    for folder, dirnames, filenames in os.walk(manifests, onerror=lambda _exc: None):
        dirnames.sort()
        for filename in sorted(filenames):
            manifest = Path(folder) / filename
            parts = manifest.relative_to(manifests).parts
            if len(parts) not in (4, 5):
                continue
            name = _ollama_name(parts)
            try:
                layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers") or []
            except (OSError, ValueError, AttributeError):
                problems.append(f"{manifest}: Ollama manifest for {name} is not readable JSON; skipped")
                continue
            digests = [layer.get("digest", "") for layer in layers if layer.get("mediaType") == OLLAMA_MODEL_LAYER]
            if not digests:
                continue  # cloud models, skills and agents have no weights here
            blob = _ollama_blob(store, name, digests[0], problems)
            if blob is not None:
                yield _Candidate(blob, name, "ollama")


def _ollama_blob(store: Path, name: str, digest: str, problems: list[str]) -> Path | None:
    """Blobs are `sha256-<hex>` (older Ollama on Linux/macOS wrote `sha256:<hex>`)."""
    match = _DIGEST.match(digest)
    if not match:
        problems.append(f"{store}: Ollama model {name} has an invalid digest {digest[:80]!r}; skipped")
        return None
    for separator in "-:":
        blob = store / "blobs" / f"sha256{separator}{match[1]}"
        if blob.exists():
            return blob
    problems.append(f"{store / 'blobs'}: blob sha256-{match[1][:12]}... of Ollama model {name} is missing; skipped")
    return None


def _hf_candidates(hub: Path) -> Iterator[_Candidate]:
    """`models--<org>--<name>/snapshots/<rev>/**.gguf`; the files are usually symlinks into `blobs/`."""
    if not hub.is_dir():
        return
    for repo in sorted(hub.glob("models--*")):
        repo_id = "/".join(repo.name.removeprefix("models--").split("--"))
        snapshots = sorted(s for s in (repo / "snapshots").glob("*") if s.is_dir())
        for snapshot in snapshots:  # several revisions: name each, so two files never share a name
            revision = f"@{snapshot.name[:8]}" if len(snapshots) > 1 else ""
            yield from _folder_candidates(snapshot, "hf-cache", prefix=f"{repo_id}{revision}/")


def _hf_hub(home: Path, env: Mapping[str, str]) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]).expanduser() / "huggingface" / "hub"
    return home / ".cache" / "huggingface" / "hub"


def _ollama_stores(home: Path, env: Mapping[str, str], system: bool) -> list[Path]:
    if env.get("OLLAMA_MODELS"):  # Ollama itself then looks nowhere else
        return [Path(env["OLLAMA_MODELS"]).expanduser()]
    return [home / ".ollama" / "models"] + ([OLLAMA_SYSTEM_DIR] if system else [])


def _packaged_candidates(problems: list[str]) -> Iterator[_Candidate]:
    from rag.models import packaged_llm_path  # rag.models pulls in pydantic; needed only here

    try:
        path = packaged_llm_path()
    except ModelNotFound as exc:
        problems.append(str(exc))
        return
    yield _Candidate(path, path.name, "packaged")


def _candidates(
    extra_dirs: Iterable[Path], home: Path, env: Mapping[str, str], system: bool, packaged: bool, problems: list[str]
) -> Iterator[_Candidate]:
    if packaged:
        yield from _packaged_candidates(problems)
    for store in _ollama_stores(home, env, system):
        yield from _ollama_candidates(store, problems)
    for folder in (home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"):
        if folder.is_dir():
            yield from _folder_candidates(folder, "lm-studio")
    yield from _hf_candidates(_hf_hub(home, env))
    if (home / "models").is_dir():
        yield from _folder_candidates(home / "models", "models-dir")
    for folder in extra_dirs:
        folder = Path(folder).expanduser()
        if folder.is_file():
            yield _Candidate(folder, folder.name, "extra")
        elif folder.is_dir():
            yield from _folder_candidates(folder, "extra")
        else:
            problems.append(f"{folder}: no such folder (from the extra model folders); skipped")


def find_gguf_models(
    extra_dirs: Iterable[Path] = (),
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    system: bool = True,
    packaged: bool = True,
) -> tuple[list[GgufModel], list[str]]:
    """Every GGUF model on this machine that we know where to look for, and one line per file we could not read.

    Models come sorted by source (in `SOURCES` order) then name; a file reached twice (symlinks, an HF snapshot
    linked from ~/models) is listed once, under the first source. `home`/`env` default to the real ones; tests
    point them at a temporary folder and pass `system=False` to skip `/usr/share/ollama`. Nothing is downloaded.
    """
    home = Path.home() if home is None else Path(home)
    env = os.environ if env is None else env
    problems: list[str] = []
    models: list[GgufModel] = []
    seen: set[Path] = set()
    for candidate in _candidates(extra_dirs, home, env, system, packaged, problems):
        try:
            real = candidate.path.resolve(strict=True)
        except (OSError, RuntimeError):  # RuntimeError: a symlink loop on Python < 3.13
            problems.append(f"{candidate.path}: broken or looping symlink; skipped")
            continue
        if real in seen:
            continue
        seen.add(real)
        try:
            models.append(read_gguf_info(candidate.path, candidate.name, candidate.source))
        except UnreadableFile as exc:
            problems.append(str(exc))
    order = {source: i for i, source in enumerate(SOURCES)}
    models.sort(key=lambda m: (order.get(m.source, len(order)), m.name.lower()))
    return models, problems


# ---------------------------------------------------------------------------------------------------- memory


def estimate_memory_bytes(model: GgufModel, n_ctx: int) -> int:
    """Weights + KV cache + overhead, the RAM llama.cpp needs to run `model` with an `n_ctx`-token context.

    Weights: the file size (llama.cpp maps the file and touches all of it). KV cache: f16 K and V for every layer
    and token, from the GGUF's own hyper-parameters; without them, 64 KiB per token per billion parameters (a
    ceiling: Llama-2-7B needs 73, Llama-3-8B with grouped-query attention 16). Overhead: 100 MB + 10% of the
    weights for compute buffers. Sliding-window layers are counted at full length, so the estimate errs high.
    """
    kv_per_token = model.kv_bytes_per_token
    if kv_per_token is None:
        billions = (model.parameters or model.size_bytes * 2) / 1e9  # no count: assume ~4 bits per weight
        kv_per_token = int(max(billions, 0.1) * _KV_BYTES_PER_TOKEN_PER_BILLION)
    overhead = _OVERHEAD_FIXED + int(_OVERHEAD_SHARE * model.size_bytes)
    return model.size_bytes + kv_per_token * n_ctx + overhead


def available_memory_bytes() -> int | None:
    """Memory a new model can use now (Linux MemAvailable, psutil elsewhere); None when the OS does not say."""
    try:
        import psutil  # optional; /proc/meminfo covers Linux without it

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if sys.platform != "win32" and hasattr(os, "sysconf"):
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            return None
    return None


def fits_in_memory(model: GgufModel, n_ctx: int, available_bytes: int | None = None) -> tuple[bool, str]:
    """(fits, one line for the user). `available_bytes` defaults to what the OS reports free now.

    Call it before unloading the current model: memory that model holds is not counted as free, so a switch
    between two large models may warn although it would fit once the first is released.
    """
    needed = estimate_memory_bytes(model, n_ctx)
    free = available_memory_bytes() if available_bytes is None else available_bytes
    context = f"needs about {_human_bytes(needed)} with a {n_ctx:,}-token context"
    if free is None:
        return True, f"{model.name} {context}; free memory is unknown"
    fits = needed <= free
    verdict = "" if fits else "; it will not fit: choose a smaller model or quantisation, or lower RAG_N_CTX"
    return fits, f"{model.name} {context}; {_human_bytes(free)} is free{verdict}"


# ---------------------------------------------------------------------------------------------------- output


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _human_count(n: int | None) -> str:
    """Parameter counts the way model cards write them: 135M, 1.5B, 70B."""
    if not n:
        return "?"
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    return str(n)


_COLUMNS = ("NAME", "SOURCE", "SIZE", "PARAMS", "QUANT", "CONTEXT", "TEMPLATE", "KIND", "PATH")


def _row(model: GgufModel) -> tuple[str, ...]:
    return (
        model.name,
        model.source,
        _human_bytes(model.size_bytes),
        _human_count(model.parameters),
        model.quantization or "?",
        f"{model.context_length:,}" if model.context_length else "?",
        "yes" if model.has_chat_template else "no",
        model.kind,
        str(model.path),
    )


def format_models_table(models: list[GgufModel]) -> str:
    """Aligned text table for the CLI; PATH is last because it is what RAG_LLM_MODEL takes."""
    if not models:
        return "No GGUF models found."
    rows = [_COLUMNS, *(_row(m) for m in models)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]) for row in rows)


def models_as_json(models: list[GgufModel]) -> list[dict[str, Any]]:
    """JSON-ready dicts for `--json`: every field, `path` as a string."""
    return [{**asdict(model), "path": str(model.path)} for model in models]
