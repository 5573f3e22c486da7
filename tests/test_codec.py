"""File format: bit packing, round trips for every kind, and refusal of bad files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import all_models_and_kinds, rewrite_checkpoint, tiny_model
from kancompress.format.bits import index_bits, pack_bits, packed_length, unpack_bits
from kancompress.format.checkpoint import load_checkpoint, save_checkpoint
from kancompress.format.header import read_header
from kancompress.format.schema import FORMAT_VERSION
from kancompress.errors import FormatError, OutputExistsError


def naive_pack(values: list[int], bits: int) -> list[int]:
    """Reference: write each index's bits LSB first into a little-endian bit stream, one bit at a time."""
    out = [0] * ((len(values) * bits + 7) // 8)
    position = 0
    for value in values:
        for b in range(bits):
            if (value >> b) & 1:
                out[position // 8] |= 1 << (position % 8)
            position += 1
    return out


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("n", [1, 7, 13, 64, 1001])
def test_pack_unpack_round_trip(bits: int, n: int) -> None:
    values = torch.randint(0, 1 << bits, (n,))
    packed = pack_bits(values, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == packed_length(n, bits) == -(-n * bits // 8)
    assert packed.tolist() == naive_pack(values.tolist(), bits)
    assert torch.equal(unpack_bits(packed, bits, n), values)


def test_pack_golden_bytes() -> None:
    assert pack_bits(torch.tensor([1, 2, 3]), 2).tolist() == [0b00111001]
    assert pack_bits(torch.tensor([5, 3, 7]), 3).tolist() == [0b11011101, 0b00000001]


def test_index_bits() -> None:
    assert [index_bits(k) for k in (2, 3, 4, 5, 16, 17, 256)] == [1, 2, 2, 3, 4, 5, 8]


@pytest.mark.parametrize("model_name,kind", all_models_and_kinds())
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path: Path, model_name: str, kind: str) -> None:
    model = tiny_model(model_name, kind)
    path = save_checkpoint(model, tmp_path / "m.safetensors", {"dataset": "digits"})
    loaded = load_checkpoint(path)
    assert loaded.kind == kind and loaded.header.provenance == {"dataset": "digits"}
    x = torch.rand(5, 6) * 2 - 1
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    if kind == "clustered":
        for layer, entry in enumerate(loaded.header.indices):
            assert loaded.header.tensors[f"edges.layers.{layer}.indices"].shape == (packed_length(entry.n, 2),)


def test_existing_output_needs_force(tmp_path: Path) -> None:
    model = tiny_model("kan", "dense")
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="--force"):
        save_checkpoint(tiny_model("kan", "dense"), path)
    assert path.read_bytes() == before
    save_checkpoint(model, path, force=True)
    with pytest.raises(OutputExistsError, match="input"):
        save_checkpoint(model, path, force=True, inputs=(path,))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temporary files left


def _rewrite(path: Path, tensors: dict, metadata: dict) -> None:
    rewrite_checkpoint(path, tensors, metadata)


def _parts(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        metadata = dict(handle.metadata())
    return load_file(str(path)), metadata


@pytest.fixture
def clustered_file(tmp_path: Path) -> Path:
    """A clustered file in the version-6 layout (a tensor per part): the checks of versions 1-6 (version 7's are
    in test_lean.py)."""
    return save_checkpoint(tiny_model("kan", "clustered"), tmp_path / "c.safetensors", lean=False)


def test_refuses_missing_foreign_and_truncated_files(tmp_path: Path, clustered_file: Path) -> None:
    with pytest.raises(FormatError, match="no such file"):
        load_checkpoint(tmp_path / "missing.safetensors")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(FormatError, match="not a kancompress checkpoint"):
        load_checkpoint(foreign)
    data = clustered_file.read_bytes()
    for cut in (0, 5, 50, len(data) - 3):
        truncated = tmp_path / f"cut{cut}.safetensors"
        truncated.write_bytes(data[:cut])
        with pytest.raises(FormatError):
            load_checkpoint(truncated)
    text = tmp_path / "text.safetensors"
    text.write_text("hello world, not a checkpoint")
    with pytest.raises(FormatError):
        load_checkpoint(text)


def test_refuses_newer_format_version(clustered_file: Path) -> None:
    tensors, metadata = _parts(clustered_file)
    metadata["format_version"] = str(FORMAT_VERSION + 1)
    _rewrite(clustered_file, tensors, metadata)
    with pytest.raises(FormatError, match="newer"):
        read_header(clustered_file)


def test_refuses_wrong_packed_length(clustered_file: Path) -> None:
    tensors, metadata = _parts(clustered_file)
    tensors["edges.layers.0.indices"] = tensors["edges.layers.0.indices"][:-1].clone()
    _rewrite(clustered_file, tensors, metadata)
    with pytest.raises(FormatError, match="edges.layers.0.indices.*shape"):
        load_checkpoint(clustered_file)


def test_refuses_index_out_of_range(clustered_file: Path) -> None:
    tensors, metadata = _parts(clustered_file)
    table = json.loads(metadata["indices"])
    # k=3 needs 2 bits like k=4, so the packed bytes still fit but may hold index 3 >= k.
    table[0]["k"], table[0]["counts"] = 3, [10, 10, 10]
    metadata["indices"] = json.dumps(table)
    tensors["edges.layers.0.codebook"] = tensors["edges.layers.0.codebook"][:3].clone()
    tensors["edges.layers.0.indices"] = pack_bits(torch.full((30,), 3), 2)
    _rewrite(clustered_file, tensors, metadata)
    with pytest.raises(FormatError, match="index 3 >= k=3"):
        load_checkpoint(clustered_file)


def test_refuses_nan_unexpected_and_missing_tensors(clustered_file: Path) -> None:
    tensors, metadata = _parts(clustered_file)
    bad = dict(tensors)
    bad["edges.layers.1.codebook"] = torch.full_like(tensors["edges.layers.1.codebook"], float("nan"))
    _rewrite(clustered_file, bad, metadata)
    with pytest.raises(FormatError, match="NaN"):
        load_checkpoint(clustered_file)
    _rewrite(clustered_file, {**tensors, "extra": torch.zeros(1)}, metadata)
    with pytest.raises(FormatError, match="unexpected tensor 'extra'"):
        load_checkpoint(clustered_file)
    del tensors["edges.layers.1.codebook"]
    _rewrite(clustered_file, tensors, metadata)
    with pytest.raises(FormatError, match="missing"):
        load_checkpoint(clustered_file)


def test_refuses_bad_model_config(clustered_file: Path) -> None:
    tensors, metadata = _parts(clustered_file)
    config = json.loads(metadata["model"])
    config["model"] = "mlp"
    _rewrite(clustered_file, tensors, {**metadata, "model": json.dumps(config)})
    with pytest.raises(FormatError, match="unknown model 'mlp'"):
        read_header(clustered_file)
    config["model"], config["widths"] = "kan", [1 << 19, 1 << 19]  # would allocate far beyond any sane bound
    _rewrite(clustered_file, tensors, {**metadata, "model": json.dumps(config)})
    with pytest.raises(FormatError, match="edges, more than the limit"):
        read_header(clustered_file)


def test_header_claiming_huge_size_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(FormatError, match="truncated"):
        load_checkpoint(path)


def test_header_values_are_parsed_strictly(tmp_path: Path, clustered_file: Path) -> None:
    """Values that used to crash (TypeError, ValueError, RecursionError) or pass though wrong are one-line refusals."""
    tensors, metadata = _parts(clustered_file)
    table = json.loads(metadata["indices"])
    cases: list[tuple[dict, str]] = []
    floats = [dict(entry) for entry in table]
    floats[0]["bits"] = float(floats[0]["bits"])
    cases.append(({**metadata, "indices": json.dumps(floats)}, "bits="))
    for version in ("²", "-7", "٢", "2.0", " 2"):
        cases.append(({**metadata, "format_version": version}, "format_version"))
    deep = {"stage": "x"}
    for _ in range(200):
        deep = {"parent": deep}
    cases.append(({**metadata, "provenance": json.dumps(deep)}, "nested deeper"))
    cases.append(({**metadata, "provenance": '{"a": 1, "a": 2}'}, "names 'a' twice"))
    cases.append(({**metadata, "surprise": "1"}, "unknown metadata entry 'surprise'"))
    for changed, message in cases:
        _rewrite(clustered_file, tensors, changed)
        with pytest.raises(FormatError, match=message):
            load_checkpoint(clustered_file)


def test_duplicate_tensor_entries_are_refused(tmp_path: Path, clustered_file: Path) -> None:
    data = clustered_file.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = data[8 : 8 + length].decode()
    name = '"edges.layers.0.codebook":'
    start = header.index(name)
    entry = header[start : header.index("}", start) + 1]
    doubled = header.replace(entry, entry + "," + entry, 1).encode()
    doubled += b" " * (-len(doubled) % 8)
    clustered_file.write_bytes(struct.pack("<Q", len(doubled)) + doubled + data[8 + length :])
    with pytest.raises(FormatError, match="twice"):
        load_checkpoint(clustered_file)
