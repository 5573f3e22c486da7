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

from conftest import tiny_model
from kancompress.format.bits import pack_bits
from kancompress.format.checkpoint import load_checkpoint, save_checkpoint
from kancompress.format.header import read_header
from kancompress.entropy import entropy_bits, quantize_counts, rans_decode, rans_encode
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


def skewed_clustered(model_name: str = "kan") -> torch.nn.Module:
    model = tiny_model(model_name, "clustered", (64, 40, 10))
    for book in model.edges.layers:  # mostly index 0, as dead input pixels give
        book.indices.copy_(torch.where(torch.rand(book.indices.shape) < 0.8, 0, book.indices))
    return model


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int8"])
@pytest.mark.parametrize("coding", ["packed", "rans"])
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
    assert first.index_coding == coding
    if coding == "rans":
        assert first.index_bytes < (first.n * first.bits + 7) // 8
    assert loaded.model.edges.codebook_dtype == dtype


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
