"""Model catalog: synthetic GGUF files laid out like Ollama, LM Studio, the HF cache and ~/models, plus the real
packaged SmolLM2 (metadata only, so it is fast and not marked slow)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from rag import model_catalog as mc
from rag.errors import RagError, UnreadableFile

N_TOKENS = 2000  # above the reader's 1024-item limit, so the vocabulary is stepped over, not materialised
TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"


def write_gguf(
    path: Path,
    *,
    arch: str = "llama",
    file_type: int | None = gguf.LlamaFileType.MOSTLY_Q8_0,
    context_length: int = 2048,
    chat_template: str | None = TEMPLATE,
    pooling: gguf.PoolingType | None = None,
    split_max_tensors: int = 0,
) -> Path:
    """A tiny but complete GGUF: 2 layers of 8 wide, 2 heads (1 for K/V), a 2,000-token vocabulary, 3 tensors
    (4x8 f32 + 8x8 f16 + 8x16 f16 = 224 elements). No general.parameter_count, so counts come from tensor shapes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, arch, split_max_tensors=split_max_tensors)
    writer.add_context_length(context_length)
    writer.add_block_count(2)
    writer.add_embedding_length(8)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    if file_type is not None:
        writer.add_file_type(file_type)
    if pooling is not None:
        writer.add_pooling_type(pooling)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"tok{i}" for i in range(N_TOKENS)])
    writer.add_token_types([1] * N_TOKENS)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight", np.ones((8, 8), dtype=np.float16))
    writer.add_tensor("blk.0.ffn_up.weight", np.ones((8, 16), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


TINY_PARAMS = 4 * 8 + 8 * 8 + 8 * 16
TINY_KV_PER_TOKEN = 2 * (2 * 1 * (4 + 4))  # 2 layers x 2 bytes x 1 KV head x (K 4 + V 4); head dim = 8 / 2 heads


def ollama_store(root: Path, parts: tuple[str, ...], gguf_path: Path) -> Path:
    """An Ollama store entry as `ollama pull` leaves it: a manifest naming a content-addressed blob."""
    data = gguf_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    blob = root / "blobs" / f"sha256-{digest}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:" + "0" * 64},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": len(data)},
            {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "1" * 64, "size": 10},
        ],
    }
    path = root / "manifests" / Path(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return blob


@pytest.fixture
def machine(tmp_path: Path) -> dict[str, Path]:
    """A home folder with models in every place we look, plus the traps (duplicates, junk, loops, shards)."""
    home = tmp_path / "home"
    src = tmp_path / "src"
    found: dict[str, Path] = {"home": home}
    found["ollama_blob"] = ollama_store(
        home / ".ollama/models", ("registry.ollama.ai", "library", "tiny", "1b"), write_gguf(src / "o1.gguf")
    )
    ollama_store(
        home / ".ollama/models",
        ("registry.ollama.ai", "someone", "notemplate", "latest"),
        write_gguf(src / "o2.gguf", chat_template=None, context_length=1024),
    )
    found["lms"] = write_gguf(home / ".lmstudio/models/pub/Tiny-GGUF/tiny-Q8_0.gguf", context_length=4096)
    found["mmproj"] = write_gguf(home / ".lmstudio/models/pub/Tiny-GGUF/mmproj-tiny-f16.gguf", arch="clip")
    hf_repo = home / ".cache/huggingface/hub/models--org--Tiny-GGUF"
    write_gguf(hf_repo / "blobs/0123abcd", file_type=None, context_length=8192)
    snapshot = hf_repo / "snapshots/abc123/sub/tiny-f16.gguf"
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(Path("../../../blobs/0123abcd"))
    models = home / "models"
    found["plain"] = write_gguf(models / "plain.gguf")
    write_gguf(models / "embed/bge.gguf", arch="bert", pooling=gguf.PoolingType.CLS, chat_template=None)
    (models / "link-to-lms.gguf").symlink_to(found["lms"])  # the same file twice
    (models / "loop").symlink_to(models, target_is_directory=True)  # a folder loop
    (models / "notes.gguf").write_text("this is not a model\n")
    good = write_gguf(src / "good.gguf").read_bytes()
    (models / "cut-data.gguf").write_bytes(good[: len(good) - 100])  # download stopped in the tensor data
    (models / "cut-vocab.gguf").write_bytes(good[:5000])  # ... or in the vocabulary
    write_gguf(models / "big.gguf", split_max_tensors=1)  # 3 shards, big-0000N-of-00003.gguf
    return found


def find(home: Path, **kwargs: object) -> tuple[list[mc.GgufModel], list[str]]:
    return mc.find_gguf_models(home=home, env={}, system=False, packaged=False, **kwargs)  # type: ignore[arg-type]


def by_name(models: list[mc.GgufModel]) -> dict[str, mc.GgufModel]:
    return {m.name: m for m in models}


def test_finds_models_in_every_place_with_their_metadata(machine: dict[str, Path]) -> None:
    models, _ = find(machine["home"])
    found = by_name(models)
    assert set(found) == {
        "tiny:1b",
        "someone/notemplate:latest",
        "pub/Tiny-GGUF/tiny-Q8_0.gguf",
        "pub/Tiny-GGUF/mmproj-tiny-f16.gguf",
        "org/Tiny-GGUF/sub/tiny-f16.gguf",
        "plain.gguf",
        "embed/bge.gguf",
        "big-00001-of-00003.gguf",
    }
    tiny = found["tiny:1b"]
    assert (tiny.source, tiny.path) == ("ollama", machine["ollama_blob"])
    assert tiny.size_bytes == machine["ollama_blob"].stat().st_size
    assert (tiny.architecture, tiny.parameters, tiny.quantization) == ("llama", TINY_PARAMS, "Q8_0")
    assert (tiny.context_length, tiny.has_chat_template, tiny.kind) == (2048, True, "chat")
    assert tiny.kv_bytes_per_token == TINY_KV_PER_TOKEN
    assert found["someone/notemplate:latest"].has_chat_template is False
    assert found["someone/notemplate:latest"].context_length == 1024
    assert (found["pub/Tiny-GGUF/tiny-Q8_0.gguf"].source, found["pub/Tiny-GGUF/tiny-Q8_0.gguf"].context_length) == (
        "lm-studio",
        4096,
    )
    hf = found["org/Tiny-GGUF/sub/tiny-f16.gguf"]
    assert (hf.source, hf.context_length) == ("hf-cache", 8192)
    assert hf.quantization == "F16"  # no general.file_type: the tensor type holding most elements (192 of 224)
    assert found["plain.gguf"].source == "models-dir"


def test_projectors_and_embedders_are_not_chat_models(machine: dict[str, Path]) -> None:
    found = by_name(find(machine["home"])[0])
    assert found["pub/Tiny-GGUF/mmproj-tiny-f16.gguf"].kind == "projector"
    assert found["embed/bge.gguf"].kind == "embedding"
    assert [m.name for m in found.values() if m.is_chat] == [
        n for n in found if n not in {"pub/Tiny-GGUF/mmproj-tiny-f16.gguf", "embed/bge.gguf"}
    ]


def test_symlinked_duplicates_and_folder_loops_appear_once(machine: dict[str, Path]) -> None:
    models, _ = find(machine["home"])
    real_paths = [m.path.resolve() for m in models]
    assert len(real_paths) == len(set(real_paths))
    lms = [m for m in models if m.path.resolve() == machine["lms"].resolve()]
    assert [(m.source, m.name) for m in lms] == [("lm-studio", "pub/Tiny-GGUF/tiny-Q8_0.gguf")]
    assert not any("loop" in m.name for m in models)
    walked = [p.relative_to(machine["home"] / "models") for p in mc._walk_gguf(machine["home"] / "models")]
    assert len(walked) == len(set(walked)) and not any(p.parts[0] == "loop" for p in walked)


def test_split_model_is_listed_once_as_a_whole(machine: dict[str, Path]) -> None:
    models, _ = find(machine["home"])
    shards = sorted((machine["home"] / "models").glob("big-*-of-00003.gguf"))
    assert len(shards) == 3
    big = [m for m in models if m.name.startswith("big")]
    assert [m.name for m in big] == ["big-00001-of-00003.gguf"]
    assert big[0].size_bytes == sum(s.stat().st_size for s in shards)
    assert big[0].parameters == TINY_PARAMS  # one tensor per shard, summed across them


def test_unreadable_files_are_one_line_problems(machine: dict[str, Path]) -> None:
    models, problems = find(machine["home"])
    names = {m.name for m in models}
    assert not names & {"notes.gguf", "cut-data.gguf", "cut-vocab.gguf"}
    assert all("\n" not in p for p in problems)
    by_file = {Path(p.split(":")[0]).name: p for p in problems}
    assert set(by_file) == {"notes.gguf", "cut-data.gguf", "cut-vocab.gguf"}
    assert "not a GGUF file" in by_file["notes.gguf"]
    size = (machine["home"] / "models/cut-data.gguf").stat().st_size
    assert f"truncated GGUF ({size:,} of {size + 100:,} bytes)" in by_file["cut-data.gguf"]
    assert "damaged or truncated GGUF" in by_file["cut-vocab.gguf"]


def test_missing_shard_and_missing_ollama_blob_are_reported(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_gguf(home / "models/big.gguf", split_max_tensors=1)
    (home / "models/big-00002-of-00003.gguf").unlink()
    blob = ollama_store(
        home / ".ollama/models", ("registry.ollama.ai", "library", "gone", "7b"), write_gguf(tmp_path / "x.gguf")
    )
    blob.unlink()
    models, problems = find(home)
    assert models == []
    assert len(problems) == 2
    assert any("big-00001-of-00003.gguf" in p and "1 of 3 parts missing" in p for p in problems)
    assert any("gone:7b" in p and "missing" in p for p in problems)


def test_models_are_sorted_by_source_then_name(machine: dict[str, Path]) -> None:
    models, _ = find(machine["home"])
    order = [(mc.SOURCES.index(m.source), m.name.lower()) for m in models]
    assert order == sorted(order)
    assert models[0].source == "ollama"


def test_environment_overrides_and_extra_folders(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ollama_store(tmp_path / "ollama-elsewhere", ("example.com", "team", "m", "q4"), write_gguf(tmp_path / "a.gguf"))
    ollama_store(
        home / ".ollama/models", ("registry.ollama.ai", "library", "ignored", "1b"), write_gguf(tmp_path / "b.gguf")
    )
    write_gguf(tmp_path / "hf/models--acme--Small/snapshots/r1/small.gguf")
    write_gguf(tmp_path / "hf/models--acme--Two/snapshots/1111aaaa2222/two.gguf")
    write_gguf(tmp_path / "hf/models--acme--Two/snapshots/3333bbbb4444/two.gguf", context_length=512)
    write_gguf(tmp_path / "mine/deep/x.gguf")
    env = {"OLLAMA_MODELS": str(tmp_path / "ollama-elsewhere"), "HF_HUB_CACHE": str(tmp_path / "hf")}
    models, problems = mc.find_gguf_models(
        [tmp_path / "mine", tmp_path / "nowhere"], home=home, env=env, system=False, packaged=False
    )
    assert [(m.source, m.name) for m in models] == [
        ("ollama", "example.com/team/m:q4"),
        ("hf-cache", "acme/Small/small.gguf"),
        ("hf-cache", "acme/Two@1111aaaa/two.gguf"),
        ("hf-cache", "acme/Two@3333bbbb/two.gguf"),
        ("extra", "deep/x.gguf"),
    ]
    assert problems == [f"{tmp_path / 'nowhere'}: no such folder (from the extra model folders); skipped"]


def test_ollama_display_names_match_ollama() -> None:
    # Cases from ollama's types/model name_test.go (DisplayShortest).
    assert mc._ollama_name(("registry.ollama.ai", "library", "model", "latest")) == "model:latest"
    assert mc._ollama_name(("registry.ollama.ai", "library", "model", "tag")) == "model:tag"
    assert mc._ollama_name(("registry.ollama.ai", "namespace", "model", "tag")) == "namespace/model:tag"
    assert mc._ollama_name(("host", "namespace", "model", "tag")) == "host/namespace/model:tag"
    assert mc._ollama_name(("host", "library", "model", "tag")) == "host/library/model:tag"


def test_fast_reader_agrees_with_the_stock_reader(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf")
    ours, stock = mc._MetadataReader(path), gguf.GGUFReader(path)
    assert list(ours.fields) == list(stock.fields)
    skipped = {k for k, f in stock.fields.items() if len(f.data) > mc._MetadataReader._LONGEST_KEPT}
    assert skipped == {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type"}
    assert ours.fields["tokenizer.ggml.tokens"].contents() == []  # stepped over, not materialised
    for key in set(stock.fields) - skipped:
        assert ours.fields[key].contents() == stock.fields[key].contents(), key
    assert ours.data_offset == stock.data_offset
    assert [(t.name, t.tensor_type, t.n_elements, t.data_offset) for t in ours.tensors] == [
        (t.name, t.tensor_type, t.n_elements, t.data_offset) for t in stock.tensors
    ]


def test_read_gguf_info_raises_a_one_line_rag_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(RagError, match=r"junk\.gguf: not a GGUF file") as info:
        mc.read_gguf_info(junk)
    assert "\n" not in str(info.value)
    with pytest.raises(UnreadableFile, match="cannot open"):
        mc.read_gguf_info(tmp_path / "absent.gguf")
    (tmp_path / "empty.gguf").touch()
    with pytest.raises(UnreadableFile, match="empty file"):
        mc.read_gguf_info(tmp_path / "empty.gguf")


def test_memory_estimate_uses_the_models_own_hyper_parameters(tmp_path: Path) -> None:
    model = mc.read_gguf_info(write_gguf(tmp_path / "m.gguf"))
    small, large = mc.estimate_memory_bytes(model, 1024), mc.estimate_memory_bytes(model, 5120)
    assert large - small == TINY_KV_PER_TOKEN * 4096
    assert small > model.size_bytes
    no_hparams = mc.GgufModel(**{**mc.models_as_json([model])[0], "path": model.path, "kv_bytes_per_token": None})
    assert mc.estimate_memory_bytes(no_hparams, 5120) - mc.estimate_memory_bytes(no_hparams, 1024) > 0


def test_fits_in_memory_says_no_when_memory_is_short_and_yes_when_ample(tmp_path: Path) -> None:
    model = mc.read_gguf_info(write_gguf(tmp_path / "m.gguf"), name="tiny")
    needed = mc.estimate_memory_bytes(model, 4096)
    ok, message = mc.fits_in_memory(model, 4096, available_bytes=needed - 1)
    assert not ok
    assert message.startswith("tiny needs about ")
    assert "4,096-token context" in message and "will not fit" in message and "\n" not in message
    ok, message = mc.fits_in_memory(model, 4096, available_bytes=needed)
    assert ok and "will not fit" not in message
    ok, _ = mc.fits_in_memory(model, 4096, available_bytes=64 * 10**9)
    assert ok


def test_table_and_json_output(machine: dict[str, Path]) -> None:
    models, _ = find(machine["home"])
    table = mc.format_models_table(models).splitlines()
    assert table[0].split() == list(mc._COLUMNS)
    assert len(table) == len(models) + 1
    line = next(row for row in table if row.startswith("tiny:1b "))
    size = machine["ollama_blob"].stat().st_size
    assert line.split()[1:8] == ["ollama", f"{size / 1000:.1f}", "kB", "224", "Q8_0", "2,048", "yes"]
    assert line.endswith(str(machine["ollama_blob"]))
    data = json.loads(json.dumps(mc.models_as_json(models)))
    tiny = next(d for d in data if d["name"] == "tiny:1b")
    assert tiny["path"] == str(machine["ollama_blob"])
    assert (tiny["parameters"], tiny["quantization"], tiny["has_chat_template"]) == (TINY_PARAMS, "Q8_0", True)
    assert mc.format_models_table([]) == "No GGUF models found."


def test_packaged_smollm2_is_read_from_its_metadata() -> None:
    from rag.models import packaged_llm_path

    model = mc.read_gguf_info(packaged_llm_path(), source="packaged")
    assert 130_000_000 < model.parameters < 140_000_000  # type: ignore[operator]
    assert model.has_chat_template
    assert model.context_length == 8192  # SmolLM2-135M-Instruct's llama.context_length
    assert (model.architecture, model.quantization, model.kind) == ("llama", "Q4_1", "chat")
    assert model.kv_bytes_per_token == 30 * 2 * 3 * (64 + 64)  # 30 layers, 3 KV heads of 64, f16
    packaged, _ = mc.find_gguf_models(home=Path("/nonexistent-home"), env={}, system=False)
    assert [(m.source, m.path) for m in packaged] == [("packaged", packaged_llm_path())]
