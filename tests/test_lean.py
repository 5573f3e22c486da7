"""Format version 7, the lean container (`kancompress.format.lean`): round trips, byte accounting, the header
budget, corruption and crafted files."""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import tiny_model
from kancompress.config import MODEL_NAMES, ConvConfig, ModelConfig
from kancompress.errors import FormatError
from kancompress.format.checkpoint import (
    checkpoint_bytes,
    file_tensors,
    layer_bytes,
    load_checkpoint,
    safetensors_bytes,
    save_checkpoint,
)
from kancompress.format.header import read_header
from kancompress.format.lean import (
    CONFIG_DEFAULTS,
    compact_config,
    expand_config,
    model_prefix,
    read_varints,
    varints,
)
from kancompress.format.schema import metadata_checksum
from kancompress.models import KANModel, build_model
from kancompress.report import storage_report


def clustered(model_name: str, widths: tuple[int, ...], ks: list[int], coding: str, dtype: str,
              seed: int = 0, skewed: bool = False, **config: object) -> KANModel:
    """A clustered model with codebooks off zero and indices in runs (as trained layers have: every coder pays), or
    `skewed`: drawn independently, a few centroids common (rANS pays, context coding does not)."""
    generator = torch.Generator().manual_seed(seed)
    config_ = ModelConfig(model=model_name, widths=widths, **config)  # type: ignore[arg-type]
    model = build_model(config_, "clustered", ks)
    with torch.no_grad():
        for parameter in model.layers.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
        for book in model.edges.books():
            book.codebook.data.normal_(0, 0.4, generator=generator)
            if model_name == "wavkan":  # wavelet scales away from 0
                book.codebook.data[:, 1] = 0.5 + book.codebook.data[:, 1].abs()
            runs = torch.arange(book.indices.numel()) // 5 % book.k  # (n,)
            noise = torch.randint(0, book.k, runs.shape, generator=generator)
            keep = torch.rand(runs.shape, generator=generator) < 0.8
            indices = torch.where(keep, runs, noise)
            if skewed:
                indices = (torch.rand(runs.shape, generator=generator) ** 3 * book.k).long()
            book.indices.copy_(indices.reshape(book.indices.shape))
        model.edges.codebook_dtype, model.edges.index_coding = dtype, coding
        model.edges.round_to_storage()
    return model.eval()


def header_length(data: bytes) -> int:
    return 8 + struct.unpack("<Q", data[:8])[0]


def parts(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), "pt") as handle:
        metadata = dict(handle.metadata())
    return {name: tensor.clone() for name, tensor in load_file(str(path)).items()}, metadata  # not views of the file


def rewrite(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """A hand-edited v7 file with a fresh, matching `crc`, as a crafted file would carry: the reader's deeper checks
    are what must refuse it."""
    body = safetensors_bytes(tensors, {**metadata, "crc": "0" * 16})
    data = body[header_length(body):]
    metadata = {key: value for key, value in metadata.items() if key != "crc"}
    metadata["crc"] = f"{metadata_checksum(metadata)}{zlib.crc32(data):08x}"
    path.write_bytes(safetensors_bytes(tensors, metadata))


CODINGS = [("packed", "float32"), ("rans", "float16"), ("context", "int8"), ("context", "bfloat16")]


@pytest.mark.parametrize("model_name", MODEL_NAMES)
@pytest.mark.parametrize("coding,dtype", CODINGS)
def test_round_trip_is_exact_for_every_basis_coding_and_dtype(tmp_path: Path, model_name: str, coding: str,
                                                              dtype: str) -> None:
    model = clustered(model_name, (30, 8, 3), [8, 4], coding, dtype)
    path = save_checkpoint(model, tmp_path / "m.safetensors", {"dataset": "digits"})
    loaded = load_checkpoint(path)
    assert loaded.header.version == 7 and loaded.kind == "clustered"
    assert loaded.header.provenance == {"dataset": "digits"} and loaded.header.config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name  # bit-exact: the point of a container
    assert loaded.model.edges.codebook_dtype == dtype
    x = torch.rand(5, 30) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    assert checkpoint_bytes(loaded.model, {"dataset": "digits"}) == path.read_bytes()  # written again, same bytes


def test_conv_batchnorm_and_shared_grids_round_trip(tmp_path: Path) -> None:
    conv = build_model(ModelConfig(model="fastkan", widths=(2, 4, 4), arch="conv",
                                   conv=ConvConfig(strides=(1, 2), groups=2, num_classes=3)), "clustered", [5, 3])
    for buffer_name, buffer in conv.named_buffers():
        if buffer_name.endswith("num_batches_tracked"):
            buffer.fill_(77)  # an I64 buffer, stored as bytes in the payload
    base = ModelConfig(model="kan", widths=(20, 6, 2))
    grids = build_model(dataclasses.replace(base, basis=dataclasses.replace(base.basis, stored_grid=True)),
                        "clustered", [4, 3])
    with torch.no_grad():
        for layer in grids.fc_layers():  # two distinct grids per layer: stored as shared rows and an index
            rows = torch.linspace(-1.4, 1.4, layer.basis.grid.shape[1]) * torch.tensor([[1.0], [1.1]])
            layer.basis.grid.copy_(rows[torch.arange(layer.basis.grid.shape[0]) % 2])
    for model in (conv, grids):
        path = save_checkpoint(model.eval(), tmp_path / "m.safetensors", {}, force=True)
        loaded = load_checkpoint(path)
        assert loaded.header.version == 7
        for name, tensor in model.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[name], tensor), name
    assert loaded.header.grids is not None and all(entry is not None for entry in loaded.header.grids)


@pytest.mark.parametrize("model_name", ["kan", "fastkan", "gramkan", "chebykan", "wavkan"])
def test_header_of_a_two_layer_784_32_10_file_is_at_most_400_bytes(tmp_path: Path, model_name: str) -> None:
    model = clustered(model_name, (784, 32, 10), [16, 16], "context", "int8")
    path = save_checkpoint(model, tmp_path / "m.safetensors", {"dataset": "fashion-mnist"})
    data = path.read_bytes()
    assert header_length(data) <= 400
    legacy = checkpoint_bytes(model, {"dataset": "fashion-mnist"}, lean=False)
    assert header_length(legacy) > 3 * header_length(data)  # what the version-6 layout spent


@pytest.mark.parametrize("coding,dtype", CODINGS)
def test_bytes_add_up(tmp_path: Path, coding: str, dtype: str) -> None:
    """Every byte of the data section is a codebook, a stream's model or stream, or an extra; `layer_bytes` (what
    the search prices a layer at) is the codebook, scale, stream, model and table entry."""
    model = clustered("gramkan", (40, 8, 3), [8, 4], coding, dtype)
    path = save_checkpoint(model, tmp_path / "m.safetensors", {})
    header = read_header(path)
    data_bytes = path.stat().st_size - header.data_start
    models = sum(len(model_prefix(entry)) for entry in header.indices)
    assert data_bytes == sum(info.nbytes for info in header.tensors.values()) + models
    state, table, _ = file_tensors(model)
    table_json = json.loads(json.loads(header_text(path))["__metadata__"]["indices"])
    for layer, (book, shape, entry) in enumerate(zip(model.edges.books(), model.config.edge_shapes, table)):
        stored = state[f"edges.layers.{layer}.codebook"]
        scale = 4 if dtype == "int8" else 0
        priced = layer_bytes(book.codebook, book.indices, book.k, dtype, coding, shape)
        assert priced == (stored.numel() * stored.element_size() + scale + table_json[layer][2]
                          + len(json.dumps(table_json[layer], separators=(",", ":"))) + 1)
        assert table_json[layer][2] == entry.bytes + len(model_prefix(entry))


def header_text(path: Path) -> str:
    data = path.read_bytes()
    return data[8:header_length(data)].decode()


def test_any_safetensors_reader_opens_it(tmp_path: Path) -> None:
    path = save_checkpoint(clustered("kan", (30, 8, 3), [8, 4], "context", "int8"), tmp_path / "m.safetensors", {})
    tensors, metadata = parts(path)
    assert set(tensors) == {"codebooks", "payload"} and tensors["codebooks"].dtype == torch.int8
    assert tensors["codebooks"].shape == (12, 9) and tensors["payload"].dtype == torch.uint8
    assert metadata["format"] == "kancompress" and metadata["format_version"] == "7" and "kind" not in metadata


def test_the_version_6_layout_is_still_written_on_request(tmp_path: Path) -> None:
    model = clustered("kan", (30, 8, 3), [8, 4], "rans", "int8")
    path = save_checkpoint(model, tmp_path / "m.safetensors", {}, lean=False)
    loaded = load_checkpoint(path)
    assert loaded.header.version == 2 and "edges.layers.0.codebook" in parts(path)[0]
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name


def test_every_flipped_bit_and_every_cut_is_refused(tmp_path: Path) -> None:
    """One CRC over the metadata and one over the data: a flipped bit anywhere, header or payload, is refused
    before anything is decoded, and so is a file cut at any length."""
    data = save_checkpoint(clustered("fastkan", (10, 4, 2), [4, 3], "rans", "int8"), tmp_path / "m.safetensors",
                           {"dataset": "digits"}).read_bytes()
    damaged = tmp_path / "damaged.safetensors"
    for position in range(len(data)):
        for bit in (0x01, 0x40):
            flipped = bytearray(data)
            flipped[position] ^= bit
            damaged.write_bytes(bytes(flipped))
            with pytest.raises(FormatError):
                load_checkpoint(damaged)
    for cut in range(len(data)):
        damaged.write_bytes(data[:cut])
        with pytest.raises(FormatError):
            load_checkpoint(damaged)


def test_a_damaged_payload_names_the_checksum(tmp_path: Path) -> None:
    path = save_checkpoint(clustered("kan", (30, 8, 3), [8, 4], "context", "int8"), tmp_path / "m.safetensors", {})
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="tensor data do not match their checksum; the file is damaged"):
        read_header(path)


@pytest.fixture
def lean_file(tmp_path: Path) -> Path:
    model = clustered("kan", (30, 8, 3), [8, 4], "rans", "int8", skewed=True)
    return save_checkpoint(model, tmp_path / "m.safetensors", {})


def crafted(lean_file: Path, change_table: object = None, **metadata_changes: str) -> None:
    tensors, metadata = parts(lean_file)
    if change_table is not None:
        metadata["indices"] = json.dumps(change_table)
    rewrite(lean_file, tensors, {**metadata, **metadata_changes})


@pytest.mark.parametrize("table,message", [
    ([[8, 1, 40]], "one entry per layer"),
    ([[1, 0, 30], [4, 0, 6]], "invalid codebook size k=1"),
    ([[8, 3, 90], [4, 0, 6]], "unknown index coding 3"),
    ([[8, 2, 90], [4, 0, 6]], "ends with its row"),
    ([[8, 0, 90, 5], [4, 0, 6]], "ends with its row"),
    ([["8", 0, 90], [4, 0, 6]], "integers"),
    ([[8, 0, 89], [4, 0, 6]], "packed indices take 90 bytes"),
])
def test_crafted_index_tables_are_refused(lean_file: Path, table: object, message: str) -> None:
    crafted(lean_file, table)
    with pytest.raises(FormatError, match=message):
        read_header(lean_file)


def test_crafted_files_are_refused(lean_file: Path) -> None:
    tensors, metadata = parts(lean_file)
    for changes, message in [
        ({"kind": "dense"}, "holds a clustered model"),
        ({"checksums": "{}"}, "unknown metadata entry 'checksums'"),
        ({"model": json.dumps({"model": "kan", "widths": [30, 8, 3], "colour": 1})}, "unknown model config key"),
        ({"model": json.dumps({"model": "kan", "widths": [31, 8, 3]})}, "summing to 248"),
    ]:
        rewrite(lean_file, tensors, {**metadata, **changes})
        with pytest.raises(FormatError, match=message):
            read_header(lean_file)
    rewrite(lean_file, {**tensors, "extra": torch.zeros(1)}, metadata)
    with pytest.raises(FormatError, match="exactly the tensors 'codebooks' and 'payload'"):
        read_header(lean_file)
    rewrite(lean_file, {**tensors, "codebooks": tensors["codebooks"][:-1].clone()}, metadata)
    with pytest.raises(FormatError, match="'codebooks' has shape"):
        read_header(lean_file)
    rewrite(lean_file, {**tensors, "payload": torch.cat([tensors["payload"], torch.zeros(1, dtype=torch.uint8)])},
            metadata)
    with pytest.raises(FormatError, match="'payload' holds"):
        read_header(lean_file)
    without = {key: value for key, value in metadata.items() if key != "crc"}
    lean_file.write_bytes(safetensors_bytes(tensors, without))
    with pytest.raises(FormatError, match="'crc' is missing"):
        read_header(lean_file)


def test_crafted_symbol_counts_are_refused(lean_file: Path) -> None:
    tensors, metadata = parts(lean_file)
    table = json.loads(metadata["indices"])
    assert table[0][1] == 1  # rANS: its counts follow layer 0's int8 scale (4 bytes) at the payload's start
    payload = tensors["payload"].clone()
    payload[4] += 1  # the counts no longer sum to n
    rewrite(lean_file, {**tensors, "payload": payload}, metadata)
    with pytest.raises(FormatError, match="'counts' must be 8 non-negative integers summing to 240"):
        read_header(lean_file)


def test_varints() -> None:
    values = [0, 1, 127, 128, 300, 16383, 16384, 2**31 - 1]
    encoded = varints(values)
    assert encoded[:5] == bytes([0, 1, 127, 0x80, 0x01])
    assert read_varints(encoded + b"tail", len(values)) == (values, len(encoded))
    with pytest.raises(ValueError, match="run past"):
        read_varints(encoded[:-1], len(values))
    with pytest.raises(ValueError, match="overflow"):
        read_varints(b"\xff" * 6 + b"\x01", 1)


def test_compact_config_round_trips_and_its_defaults_are_frozen() -> None:
    # A changed default would change what old v7 files mean: it needs a new format version, not an edit here.
    assert json.dumps(dataclasses.asdict(ModelConfig())) == json.dumps(CONFIG_DEFAULTS)
    configs = [ModelConfig(), ModelConfig(model="gramkan", widths=(784, 32, 10)),
               ModelConfig(model="kan", widths=(4, 6, 1), mult_nodes=(2, 0), task="regression", input_affine=True,
                           target_affine=True, grid_ranges=((-2.0, 1.0), (0.0, 3.0))),
               ModelConfig(model="fastkan", widths=(1, 32, 64, 128, 256), arch="conv", conv=ConvConfig()),
               tiny_model("wavkan", "clustered").config]
    for config in configs:
        compact = compact_config(config.to_dict())
        assert ModelConfig.from_dict(expand_config(json.loads(json.dumps(compact)))) == config
    assert json.dumps(compact_config(configs[1].to_dict())) == '{"model": "gramkan", "widths": [784, 32, 10]}'


def test_lean_provenance_keeps_what_later_commands_need() -> None:
    from kancompress import api

    full = {"stage": "compress", "dataset": "file:x.csv", "trials": [{"k": [4, 4]}], "seed": 0,
            "data": {"file": "/data/x.csv", "target": "y", "task": None}}
    assert api.lean_provenance(full) == {"dataset": "file:x.csv", "data": {"file": "/data/x.csv", "target": "y"}}
    assert api.lean_provenance({"stage": "cluster", "dataset": "digits"}) == {"dataset": "digits"}


@pytest.mark.parametrize("model_name", ["fastkan", "gramkan", "wavkan"])
def test_float16_extras_round_trip_and_halve_their_bytes(tmp_path: Path, model_name: str) -> None:
    model = clustered(model_name, (30, 8, 3), [8, 4], "context", "int8")
    extras = sum(t.numel() for t in model.extras().values())
    assert extras > 0
    full = save_checkpoint(model, tmp_path / "full.safetensors", {})
    model.extras_dtype = "float16"
    model.round_extras()
    half = save_checkpoint(model, tmp_path / "half.safetensors", {})
    metadata = parts(half)[1]
    assert metadata["extras"] == "float16" and "extras" not in parts(full)[1]
    full_data = full.stat().st_size - read_header(full).data_start
    half_data = half.stat().st_size - read_header(half).data_start
    assert full_data - half_data == 2 * extras
    loaded = load_checkpoint(half)
    assert loaded.model.extras_dtype == "float16" and loaded.header.extras_dtype == "float16"
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    assert storage_report(loaded.header).total_bytes == half_data
    x = torch.rand(4, 30) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


def test_float16_extras_are_refused_where_they_do_not_belong(lean_file: Path, tmp_path: Path) -> None:
    crafted(lean_file, extras="bfloat16")
    with pytest.raises(FormatError, match="'extras' must be"):
        read_header(lean_file)
    legacy = save_checkpoint(clustered("fastkan", (10, 4, 2), [4, 3], "packed", "int8"), tmp_path / "v6.safetensors",
                             {}, lean=False)
    from conftest import rewrite_checkpoint

    tensors, metadata = parts(legacy)
    rewrite_checkpoint(legacy, tensors, {**metadata, "extras": "float16"})
    with pytest.raises(FormatError, match="unknown metadata entry 'extras'"):
        read_header(legacy)
    huge = clustered("fastkan", (10, 4, 2), [4, 3], "packed", "int8")
    huge.extras_dtype = "float16"
    with torch.no_grad():
        next(iter(huge.extras().values())).fill_(1e6)
    with pytest.raises(ValueError, match="do not fit extras_dtype float16"):
        checkpoint_bytes(huge, {})
