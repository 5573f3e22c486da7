"""The lean container (`kancompress.format.lean`): version 8 (written) round trips, byte accounting, the header
budget, corruption and crafted files; version 7 (read only, a golden file's copy) corruption and crafted files."""

from __future__ import annotations

import dataclasses
import json
import shutil
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
    read_table,
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


GOLDEN = Path(__file__).parent / "golden"


def payload_of(path: Path) -> tuple[bytes, dict[str, str]]:
    """A version-8 file's payload without its two CRCs, and its metadata."""
    tensors, metadata = parts(path)
    return tensors["payload"].numpy().tobytes()[:-8], metadata


def rewrite8(path: Path, payload: bytes, metadata: dict[str, str]) -> None:
    """A hand-edited version-8 file with fresh, matching CRCs (the header's, then the data's, after the payload),
    as a crafted file would carry: the reader's deeper checks are what must refuse it."""
    body = bytearray(safetensors_bytes({"payload": torch.frombuffer(bytearray(payload + bytes(8)), dtype=torch.uint8)},
                                       metadata, padded=False))
    start = header_length(bytes(body))
    body[-8:-4] = zlib.crc32(body[:start]).to_bytes(4, "little")
    body[-4:] = zlib.crc32(body[start:-4]).to_bytes(4, "little")
    path.write_bytes(bytes(body))


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
    assert loaded.header.version == 8 and loaded.kind == "clustered"
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
        assert loaded.header.version == 8
        for name, tensor in model.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[name], tensor), name
    assert loaded.header.grids is not None and all(entry is not None for entry in loaded.header.grids)


@pytest.mark.parametrize("model_name", ["kan", "fastkan", "gramkan", "chebykan", "wavkan"])
def test_header_of_a_two_layer_784_32_10_file_is_at_most_250_bytes(tmp_path: Path, model_name: str) -> None:
    model = clustered(model_name, (784, 32, 10), [16, 16], "context", "int8")
    path = save_checkpoint(model, tmp_path / "m.safetensors", {"dataset": "fashion-mnist"})
    data = path.read_bytes()
    assert header_length(data) <= 250  # issue 31 asked for 400; version 7 wrote 368-376
    legacy = checkpoint_bytes(model, {"dataset": "fashion-mnist"}, lean=False)
    assert header_length(legacy) > 5 * header_length(data)  # what the version-6 layout spent


def test_header_of_a_feynman_file_is_at_most_a_tenth_of_it(tmp_path: Path) -> None:
    """The smallest files the README publishes: `feynman_table.py`'s clustered [3, 32, 32, 1] regression model,
    k = 16, float32 codebooks, packed indices, stored data transforms, no provenance (2.7 KB in version 7, 416 B
    of it header)."""
    model = clustered("kan", (3, 32, 32, 1), [16, 16, 16], "packed", "float32", task="regression",
                      input_affine=True, target_affine=True)
    data = save_checkpoint(model, tmp_path / "m.safetensors", {}).read_bytes()
    assert header_length(data) <= 0.1 * len(data)
    container = header_length(data) + read_table(data[header_length(data):], 3).length + 8  # and the two CRCs
    assert container <= 0.11 * len(data)  # 275 of 2,611 bytes


@pytest.mark.parametrize("coding,dtype", CODINGS)
def test_bytes_add_up(tmp_path: Path, coding: str, dtype: str) -> None:
    """Every byte of the data section is the layout table, a codebook, a stream's model or stream, an extra or a
    CRC; `layer_bytes` (what the search prices a layer at) is the codebook, scale, stream, model and table entry."""
    model = clustered("gramkan", (40, 8, 3), [8, 4], coding, dtype)
    path = save_checkpoint(model, tmp_path / "m.safetensors", {})
    header = read_header(path)
    data = path.read_bytes()[header.data_start:]
    models = sum(len(model_prefix(entry)) for entry in header.indices)
    layout = read_table(data, 2)
    assert len(data) == layout.length + sum(info.nbytes for info in header.tensors.values()) + models + 8
    assert storage_report(header).total_bytes == len(data) - layout.length - 8
    state, table, _ = file_tensors(model)
    for layer, (book, shape, entry) in enumerate(zip(model.edges.books(), model.config.edge_shapes, table)):
        stored = state[f"edges.layers.{layer}.codebook"]
        scale = 4 if dtype == "int8" else 0
        priced = layer_bytes(book.codebook, book.indices, book.k, dtype, coding, shape)
        part = layout.entries[layer][2]
        assert part == entry.bytes + len(model_prefix(entry))
        assert priced == stored.numel() * stored.element_size() + scale + part + len(varints(layout.entries[layer]))
    assert sum(len(varints(entry)) for entry in layout.entries) + 1 == layout.length  # the flags, then the entries


def test_any_safetensors_reader_opens_it(tmp_path: Path) -> None:
    path = save_checkpoint(clustered("kan", (30, 8, 3), [8, 4], "context", "int8"), tmp_path / "m.safetensors", {})
    tensors, metadata = parts(path)
    assert set(tensors) == {"payload"} and tensors["payload"].dtype == torch.uint8
    assert tensors["payload"].numel() == path.stat().st_size - header_length(path.read_bytes())
    assert metadata == {"format": "kancompress", "format_version": "8",
                        "model": '{"model":"kan","widths":[30,8,3]}'}  # no kind, no empty provenance


def test_the_version_6_layout_is_still_written_on_request(tmp_path: Path) -> None:
    model = clustered("kan", (30, 8, 3), [8, 4], "rans", "int8")
    path = save_checkpoint(model, tmp_path / "m.safetensors", {}, lean=False)
    loaded = load_checkpoint(path)
    assert loaded.header.version == 2 and "edges.layers.0.codebook" in parts(path)[0]
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name


@pytest.fixture
def golden_v7(tmp_path: Path) -> Path:
    """A copy of a version-7 golden file (rANS layer 0 over 120 edges, k = 6; packed layer 1, 30 edges, k = 4;
    float16 codebooks), for the crafted-file tests of the version-7 reader."""
    return Path(shutil.copy(GOLDEN / "v7-fc-gramkan-rans-float16.safetensors", tmp_path / "v7.safetensors"))


def refuses_every_flipped_bit_and_cut(data: bytes, damaged: Path) -> None:
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


def test_every_flipped_bit_and_every_cut_is_refused(tmp_path: Path, golden_v7: Path) -> None:
    """One CRC over the header and one over the data (version 7: over the metadata and the data): a flipped bit
    anywhere is refused before anything is decoded, and so is a file cut at any length."""
    data = save_checkpoint(clustered("fastkan", (10, 4, 2), [4, 3], "rans", "int8"), tmp_path / "m.safetensors",
                           {"dataset": "digits"}).read_bytes()
    refuses_every_flipped_bit_and_cut(data, tmp_path / "damaged.safetensors")
    refuses_every_flipped_bit_and_cut(golden_v7.read_bytes(), tmp_path / "damaged.safetensors")


def test_damage_names_the_checksum_it_fails(tmp_path: Path) -> None:
    path = save_checkpoint(clustered("kan", (30, 8, 3), [8, 4], "context", "int8"), tmp_path / "m.safetensors", {})
    data = path.read_bytes()
    for position, message in [(len(data) - 20, "tensor data do not match their checksum"),
                              (data.index(b"[30,") + 2, "header does not match its checksum")]:
        damaged = bytearray(data)
        damaged[position] ^= 0x01  # a byte of the data, or widths [30, ...] made [31, ...]: still parses
        path.write_bytes(bytes(damaged))
        with pytest.raises(FormatError, match=f"{message}; the file is damaged"):
            read_header(path)


@pytest.fixture
def lean_file(tmp_path: Path) -> Path:
    model = clustered("kan", (30, 8, 3), [8, 4], "rans", "int8", skewed=True)
    return save_checkpoint(model, tmp_path / "m.safetensors", {})


def with_table(lean_file: Path, values: list[int]) -> None:
    """`lean_file` with its layout table replaced by these varints (fresh CRCs)."""
    payload, metadata = payload_of(lean_file)
    rewrite8(lean_file, varints(values) + payload[read_table(payload, 2).length:], metadata)


def test_the_layout_table_is_what_the_file_holds(lean_file: Path) -> None:
    payload, _ = payload_of(lean_file)
    layout = read_table(payload, 2)
    assert (layout.codebook_dtype, layout.extras_dtype, layout.grids) == ("int8", "float32", None)
    assert layout.entries[0][:2] == [8, 1]  # k = 8, rANS (skewed indices: rANS pays)
    with_table(lean_file, [3, *layout.entries[0], *layout.entries[1]])  # the same table, written again
    assert load_checkpoint(lean_file).header.indices == read_header(lean_file).indices


@pytest.mark.parametrize("table,message", [
    ([16, 8, 1, 40], "unknown layout flags 16"),
    ([3, 1, 0, 30, 4, 0, 6], "invalid codebook size k=1"),
    ([3, 8, 3, 90, 4, 0, 6], "unknown index coding 3"),
    ([3, 8, 0, 89, 4, 0, 6], "packed indices take 90 bytes, the table says 89"),
    ([3, 8, 0, 90, 4, 0, 6, 0, 0], "'payload' holds"),  # no grid flag: two bytes too many
    ([11, 8, 0, 90, 4, 0, 6, 0, 0], "grid table has no shared grids"),
    ([11, 8, 0, 90, 4, 0, 6, 2, 0, 4, 0], "only for models with stored"),
    ([3, 8, 0, 90, 4, 0, 6], "'payload' holds"),
])
def test_crafted_layout_tables_are_refused(lean_file: Path, table: list[int], message: str) -> None:
    with_table(lean_file, table)
    with pytest.raises(FormatError, match=message):
        read_header(lean_file)


def test_a_cut_layout_table_is_refused(lean_file: Path) -> None:
    rewrite8(lean_file, varints([3, 8, 1]), payload_of(lean_file)[1])
    with pytest.raises(FormatError, match="layout table is cut short or malformed"):
        read_header(lean_file)


def test_crafted_files_are_refused(lean_file: Path) -> None:
    payload, metadata = payload_of(lean_file)
    for changes, message in [
        ({"kind": "clustered"}, "unknown metadata entry 'kind' for format version 8"),
        ({"indices": "[]"}, "unknown metadata entry 'indices' for format version 8"),
        ({"crc": "0" * 16}, "unknown metadata entry 'crc' for format version 8"),
        ({"model": json.dumps({"model": "kan", "widths": [30, 8, 3], "colour": 1})}, "unknown model config key"),
        ({"model": json.dumps({"model": "kan", "widths": [31, 8, 3]})}, "summing to 248"),
    ]:
        rewrite8(lean_file, payload, {**metadata, **changes})
        with pytest.raises(FormatError, match=message):
            read_header(lean_file)
    rewrite8(lean_file, payload + b"\0", metadata)
    with pytest.raises(FormatError, match="'payload' holds"):
        read_header(lean_file)
    lean_file.write_bytes(safetensors_bytes({"payload": torch.zeros(20, dtype=torch.uint8),
                                             "extra": torch.zeros(1)}, metadata))
    with pytest.raises(FormatError, match="exactly one tensor, 'payload'"):
        read_header(lean_file)
    lean_file.write_bytes(safetensors_bytes({"payload": torch.zeros(20, dtype=torch.uint8)}, metadata) + b"tail")
    with pytest.raises(FormatError, match="must fill the whole data section"):
        read_header(lean_file)


def test_crafted_symbol_counts_are_refused(lean_file: Path) -> None:
    payload, metadata = payload_of(lean_file)
    layout = read_table(payload, 2)
    # rANS: layer 0's counts follow the table, the codebooks (12 rows of 9 int8) and its int8 scale (4 bytes)
    counts = layout.length + 12 * 9 + 4
    changed = bytearray(payload)
    changed[counts] += 1  # the counts no longer sum to n
    rewrite8(lean_file, bytes(changed), metadata)
    with pytest.raises(FormatError, match="'counts' must be 8 non-negative integers summing to 240"):
        read_header(lean_file)


def crafted(golden_v7: Path, change_table: object = None, **metadata_changes: str) -> None:
    tensors, metadata = parts(golden_v7)
    if change_table is not None:
        metadata["indices"] = json.dumps(change_table)
    rewrite(golden_v7, tensors, {**metadata, **metadata_changes})


@pytest.mark.parametrize("table,message", [
    ([[6, 1, 41]], "one entry per layer"),
    ([[1, 1, 41], [4, 0, 8]], "invalid codebook size k=1"),
    ([[6, 3, 41], [4, 0, 8]], "unknown index coding 3"),
    ([[6, 2, 41], [4, 0, 8]], "ends with its row"),
    ([[6, 0, 41, 5], [4, 0, 8]], "ends with its row"),
    ([["6", 1, 41], [4, 0, 8]], "integers"),
    ([[6, 1, 41], [4, 0, 7]], "packed indices take 8 bytes"),
])
def test_crafted_version_7_index_tables_are_refused(golden_v7: Path, table: object, message: str) -> None:
    crafted(golden_v7, table)
    with pytest.raises(FormatError, match=message):
        read_header(golden_v7)


def test_crafted_version_7_files_are_refused(golden_v7: Path) -> None:
    assert load_checkpoint(golden_v7).header.version == 7
    tensors, metadata = parts(golden_v7)
    for changes, message in [
        ({"kind": "dense"}, "holds a clustered model"),
        ({"checksums": "{}"}, "unknown metadata entry 'checksums'"),
        ({"grids": "null"}, "metadata 'grids' must list one entry"),
        ({"model": json.dumps({"model": "gramkan", "widths": [12, 10, 3], "colour": 1})}, "unknown model config key"),
        ({"model": json.dumps({"model": "gramkan", "widths": [13, 10, 3]})}, "summing to 130"),
    ]:
        rewrite(golden_v7, tensors, {**metadata, **changes})
        with pytest.raises(FormatError, match=message):
            read_header(golden_v7)
    rewrite(golden_v7, {**tensors, "extra": torch.zeros(1)}, metadata)
    with pytest.raises(FormatError, match="exactly the tensors 'codebooks' and 'payload'"):
        read_header(golden_v7)
    rewrite(golden_v7, {**tensors, "codebooks": tensors["codebooks"][:-1].clone()}, metadata)
    with pytest.raises(FormatError, match="'codebooks' has shape"):
        read_header(golden_v7)
    rewrite(golden_v7, {**tensors, "payload": torch.cat([tensors["payload"], torch.zeros(1, dtype=torch.uint8)])},
            metadata)
    with pytest.raises(FormatError, match="'payload' holds"):
        read_header(golden_v7)
    without = {key: value for key, value in metadata.items() if key != "crc"}
    golden_v7.write_bytes(safetensors_bytes(tensors, without))
    with pytest.raises(FormatError, match="'crc' is missing"):
        read_header(golden_v7)
    tensors["payload"][0] += 1  # layer 0's rANS counts open the payload (float16 codebooks: no scale)
    rewrite(golden_v7, tensors, metadata)
    with pytest.raises(FormatError, match="'counts' must be 6 non-negative integers summing to 120"):
        read_header(golden_v7)


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
    assert read_table(payload_of(half)[0], 2).extras_dtype == "float16"
    assert read_table(payload_of(full)[0], 2).extras_dtype == "float32"
    full_data = full.stat().st_size - read_header(full).data_start
    half_data = half.stat().st_size - read_header(half).data_start
    assert full_data - half_data == 2 * extras
    loaded = load_checkpoint(half)
    assert loaded.model.extras_dtype == "float16" and loaded.header.extras_dtype == "float16"
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    assert storage_report(loaded.header).total_bytes == half_data - read_table(payload_of(half)[0], 2).length - 8
    x = torch.rand(4, 30) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


def test_float16_extras_are_refused_where_they_do_not_belong(lean_file: Path, golden_v7: Path,
                                                            tmp_path: Path) -> None:
    crafted(golden_v7, extras="bfloat16")
    with pytest.raises(FormatError, match="'extras' must be"):
        read_header(golden_v7)
    payload, metadata = payload_of(lean_file)
    rewrite8(lean_file, payload, {**metadata, "extras": "float16"})  # version 8: a flag in the layout table
    with pytest.raises(FormatError, match="unknown metadata entry 'extras' for format version 8"):
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
