"""Entropy-coded indices and low-precision codebooks: exact round trips, sizes near n·H(I), old files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save_file
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import rewrite_checkpoint, tiny_model
from kancompress.format.bits import pack_bits
from kancompress.format.checkpoint import load_checkpoint, save_checkpoint
from kancompress.format.header import read_header
from kancompress.entropy import (
    context_decode,
    context_encode,
    entropy_bits,
    quantize_counts,
    rans_decode,
    rans_encode,
)
from kancompress.errors import FormatError
from kancompress.report import storage_report


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300).flatmap(lambda k: st.tuples(st.just(k), st.lists(st.integers(0, k - 1), min_size=1,
                                                                            max_size=3000))))
def test_rans_round_trip_any_stream(case: tuple[int, list[int]]) -> None:
    """Any alphabet size (unused symbols included) and any stream round-trips exactly."""
    k, values = case
    symbols = np.array(values)
    counts = np.bincount(symbols, minlength=k)
    assert rans_decode(rans_encode(symbols, counts), counts, len(symbols)).tolist() == values


@pytest.mark.parametrize("k,alpha", [(4, 0.2), (16, 0.05), (16, 1.0), (64, 0.3), (256, 0.5)])
def test_rans_size_near_entropy_on_skewed_layers(k: int, alpha: float) -> None:
    rng = np.random.default_rng(k)
    n = 20_000
    symbols = rng.choice(k, n, p=rng.dirichlet([alpha] * k))
    counts = np.bincount(symbols, minlength=k)
    stream = rans_encode(symbols, counts)
    assert np.array_equal(rans_decode(stream, counts, n), symbols)
    floor = n * entropy_bits(counts) / 8
    table = 4 * k  # the counts, as 32-bit integers
    assert len(stream) <= 1.02 * floor + table
    assert len(stream) >= floor - 1


def test_quantized_counts_are_valid() -> None:
    for counts in ([1, 0, 0], [5, 5], [1] * 300, [10**6, 1, 0, 1]):
        freq = quantize_counts(counts)
        assert freq.sum() == 1 << 16 and all((f > 0) == (c > 0) for f, c in zip(freq, counts))


def test_corrupted_rans_stream_is_refused() -> None:
    symbols = np.arange(100) % 7
    counts = np.bincount(symbols)
    stream = bytearray(rans_encode(symbols, counts))
    with pytest.raises(ValueError):
        rans_decode(bytes(stream[:-3]), counts, 100)


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 64).flatmap(lambda k: st.tuples(st.just(k), st.integers(1, 40),
                                                      st.lists(st.integers(0, k - 1), min_size=1, max_size=2000))))
def test_context_round_trip_any_stream(case: tuple[int, int, list[int]]) -> None:
    """Any k the coder takes, any row, any stream: decoded exactly, every byte read."""
    k, row, values = case
    assert context_decode(context_encode(np.array(values), k, row), k, row, len(values)).tolist() == values


def image_like_indices(k: int, outputs: int = 8, side: int = 28, seed: int = 0) -> np.ndarray:
    """Per output, a smooth random field over a side×side image quantised into k levels: the index map of a
    first layer on images (neighbouring pixels' edges fall in the same cluster)."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(outputs, side // 4, side // 4))
    field = np.kron(coarse, np.ones((4, 4)))  # (outputs, side, side), blocks of 4×4 pixels
    field += 0.3 * rng.normal(size=field.shape)
    levels = np.quantile(field, np.linspace(0, 1, k + 1)[1:-1])
    return np.digitize(field, levels).reshape(-1)  # (outputs·side·side,), edge (o, i) at o·side² + i


@pytest.mark.parametrize("k", [2, 4, 16])
def test_context_coding_beats_the_order_0_entropy_on_image_like_layers(k: int) -> None:
    symbols = image_like_indices(k, outputs=32)  # 25,088 edges, as a 784-32 layer has
    floor = len(symbols) * entropy_bits(np.bincount(symbols, minlength=k)) / 8  # the best rANS can do
    stream = context_encode(symbols, k, 28)
    assert np.array_equal(context_decode(stream, k, 28, len(symbols)), symbols)
    assert len(stream) < 0.85 * floor
    assert len(context_encode(symbols, k, 1)) > len(stream)  # the pixel above is what helps


@pytest.mark.parametrize("k", [2, 5, 64])
def test_context_coding_costs_little_on_random_indices(k: int) -> None:
    symbols = np.random.default_rng(k).integers(0, k, 20_000)
    stream = context_encode(symbols, k, 28)
    bits = (k - 1).bit_length()
    assert len(stream) <= 1.06 * len(symbols) * bits / 8 + 8  # adaptation overhead, never a blow-up


def test_corrupted_context_stream_is_refused() -> None:
    symbols = image_like_indices(4, outputs=2)
    stream = context_encode(symbols, 4, 28)
    n = len(symbols)
    for bad in (stream[:-2], stream + b"\x00", b"\x01\x02"):
        with pytest.raises(ValueError):
            context_decode(bad, 4, 28, n)
    with pytest.raises(ValueError, match="k <= 64"):
        context_encode(np.zeros(4, dtype=np.int64), 65, 1)
    with pytest.raises(ValueError, match="outside"):
        context_encode(np.array([0, 4]), 4, 1)
    # A non-power-of-two k leaves codes the stream may hold but k does not: refused, not returned.
    with pytest.raises(ValueError):
        context_decode(b"\xff" * 64, 3, 1, 200)


def skewed_clustered(model_name: str = "kan") -> torch.nn.Module:
    model = tiny_model(model_name, "clustered", (64, 40, 10))
    for book in model.edges.layers:  # mostly index 0, as dead input pixels give
        book.indices.copy_(torch.where(torch.rand(book.indices.shape) < 0.8, 0, book.indices))
    return model


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int8"])
@pytest.mark.parametrize("coding", ["packed", "rans", "context"])
def test_storage_options_round_trip(tmp_path: Path, dtype: str, coding: str) -> None:
    model = skewed_clustered()
    model.edges.codebook_dtype, model.edges.index_coding = dtype, coding
    model.edges.round_to_storage()
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = load_checkpoint(path)
    x = torch.rand(4, 64) * 2 - 1
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))  # exactly what was evaluated before saving
    report = storage_report(read_header(path))
    first = report.layers[0]
    assert first.codebook_bits == {"float32": 32, "float16": 16, "bfloat16": 16, "int8": 8}[dtype]
    if coding == "context":  # the smallest of the three, counting the table entry
        assert first.index_coding in ("packed", "rans", "context")
        assert read_header(path).version == 8
    else:
        assert first.index_coding == coding
    if coding != "packed":
        assert first.index_bytes < (first.n * first.bits + 7) // 8
    assert loaded.model.edges.codebook_dtype == dtype


@pytest.mark.parametrize("model_name", ["kan", "fastkan", "gramkan"])
def test_context_coding_picks_the_smallest_and_round_trips_image_like_layers(tmp_path: Path, model_name: str) -> None:
    model = tiny_model(model_name, "clustered", (64, 6, 3))  # 64 inputs: an 8×8 "image", context row 8 tried
    first = model.edges.books()[0]
    first.indices.copy_(torch.from_numpy(image_like_indices(first.k, outputs=6, side=8)))
    sizes = {}
    for coding in ("packed", "rans", "context"):
        model.edges.index_coding = coding
        sizes[coding] = save_checkpoint(model, tmp_path / f"{coding}.safetensors").stat().st_size
    assert sizes["context"] <= sizes["rans"] <= sizes["packed"]
    header = read_header(tmp_path / "context.safetensors")
    assert header.version == 8
    assert header.indices[0].coding == "context" and header.indices[0].row in (8, 64)
    assert header.indices[0].counts is None
    assert storage_report(header).layers[0].entropy is None  # no counts stored; the report says "-"
    loaded = load_checkpoint(tmp_path / "context.safetensors")
    assert loaded.model.edges.index_coding == "context"
    for a, b in zip(loaded.model.edges.books(), model.edges.books()):
        assert torch.equal(a.indices, b.indices)
    x = torch.rand(3, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.eval()(x), model.eval()(x), rtol=0, atol=0)


def _context_file(tmp_path: Path) -> tuple[Path, dict, dict]:
    from test_codec import _parts

    model = tiny_model("kan", "clustered", (64, 6, 3))
    first = model.edges.books()[0]
    first.indices.copy_(torch.from_numpy(image_like_indices(first.k, outputs=6, side=8)))
    model.edges.index_coding = "context"
    path = save_checkpoint(model, tmp_path / "c.safetensors", lean=False)  # the version-4 table's checks
    tensors, metadata = _parts(path)
    return path, tensors, metadata


@pytest.mark.parametrize("change,message", [
    (lambda e, m: e.update(counts=[1] * e["k"]), "stores no counts"),
    (lambda e, m: e.update(row=0), "'row' must be an integer"),
    (lambda e, m: e.update(row="8"), "'row' must be an integer"),
    (lambda e, m: e.pop("row"), "must have keys"),
    (lambda e, m: m.update(format_version="3"), "needs format version 4"),
])
def test_bad_context_entries_are_refused(tmp_path: Path, change: object, message: str) -> None:
    path, tensors, metadata = _context_file(tmp_path)
    table = json.loads(metadata["indices"])
    assert table[0]["coding"] == "context"
    change(table[0], metadata)  # type: ignore[operator]
    metadata["indices"] = json.dumps(table)
    rewrite_checkpoint(path, tensors, metadata)
    with pytest.raises(FormatError, match=message):
        read_header(path)


def test_damaged_context_stream_is_refused_by_name(tmp_path: Path) -> None:
    path, tensors, metadata = _context_file(tmp_path)
    stream = tensors["edges.layers.0.indices"]
    tensors["edges.layers.0.indices"] = torch.cat([stream, torch.zeros(1, dtype=torch.uint8)])
    table = json.loads(metadata["indices"])
    table[0]["bytes"] += 1
    metadata["indices"] = json.dumps(table)
    rewrite_checkpoint(path, tensors, metadata)  # checksums recomputed: only the coder can notice
    with pytest.raises(FormatError, match="edges.layers.0.indices.*not a valid context-coded stream"):
        load_checkpoint(path)


def test_version_1_files_stay_readable(tmp_path: Path) -> None:
    model = tiny_model("kan", "clustered")
    state = {name: t.contiguous() for name, t in model.state_dict().items()}
    table = []
    for layer, book in enumerate(model.edges.layers):
        state[f"edges.layers.{layer}.indices"] = pack_bits(book.indices, 2)
        table.append({"n": book.indices.numel(), "k": 4, "bits": 2, "coding": "packed"})
    metadata = {"format": "kancompress", "format_version": "1", "kind": "clustered",
                "model": json.dumps(model.config.to_dict()), "provenance": "{}", "indices": json.dumps(table)}
    path = tmp_path / "v1.safetensors"
    save_file(state, str(path), metadata=metadata)  # as version-1 writers did: no checksums
    loaded = load_checkpoint(path)
    assert loaded.header.version == 1
    assert all(torch.equal(a.indices, b.indices) for a, b in zip(loaded.model.edges.layers, model.edges.layers))
    assert storage_report(loaded.header).layers[0].entropy is None
    table[0]["coding"] = "rans"  # not a v1 coding
    metadata["indices"] = json.dumps(table)
    save_file(state, str(path), metadata=metadata)  # as version-1 writers did: no checksums
    with pytest.raises(FormatError, match="unknown index coding 'rans'"):
        read_header(path)


def test_reassign_moves_edges_to_nearest_centroid() -> None:
    model = tiny_model("kan", "clustered")
    reference = [torch.randn(book.indices.numel(), 9) for book in model.edges.layers]
    model.edges.reassign(reference)
    for book, points in zip(model.edges.layers, reference):
        assert torch.equal(book.indices, torch.cdist(points, book.codebook).argmin(dim=1))
    assert model.edges.reassign(reference) == 0
