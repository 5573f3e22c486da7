"""Storage report: hand-computed figures, the paper's MNIST shape, and agreement with the file's own shapes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from safetensors import safe_open

from conftest import tiny_model
from kancompress.config import MODEL_NAMES
from kancompress.format.checkpoint import save_checkpoint
from kancompress.format.header import read_header
from kancompress.config import default_config
from kancompress.models import build_model
from kancompress.report import storage_report


def test_hand_computed_clustered_report(tmp_path: Path) -> None:
    # kan (6, 5, 3): layers of 30 and 15 edges, |w| = 5 + 3 + 1 = 9, k = 4 -> 2 bits.
    path = save_checkpoint(tiny_model("kan", "clustered"), tmp_path / "c.safetensors")
    report = storage_report(read_header(path))
    first, second = report.layers
    assert (first.n, first.width, first.k, first.bits) == (30, 9, 4, 2)
    assert first.dense_bytes == 30 * 9 * 4 == 1080
    assert first.clustered_bytes == math.ceil(30 * 2 / 8) + 9 * 4 * 4 == 8 + 144
    assert first.ratio == pytest.approx(30 * 9 * 32 / (30 * math.log2(4) + 9 * 4 * 32))
    assert second.clustered_bytes == math.ceil(15 * 2 / 8) + 144 == 148
    assert report.extras_bytes == 0  # B-spline: no bias, grid derived from the config
    assert report.total_bytes == report.edge_bytes == 152 + 148
    assert report.file_bytes == path.stat().st_size


def test_paper_mnist_shape_figures(tmp_path: Path) -> None:
    """784-32-10 B-spline KAN at k = 16 (paper Table 1: dense 1,031.44 KB, clustered 13.84 KB)."""
    config = default_config("kan", (784, 32, 10))
    model = build_model(config, "clustered", [16, 16])
    path = save_checkpoint(model, tmp_path / "mnist.safetensors")
    report = storage_report(read_header(path))
    n = 784 * 32 + 32 * 10
    assert sum(r.n for r in report.layers) == n == 25408
    assert report.dense_bytes == n * 9 * 4 == 914_688
    assert report.clustered_bytes == n * 4 // 8 + 2 * 16 * 9 * 4 == 13_856
    assert report.ratio == pytest.approx(66.01, abs=0.01)


@pytest.mark.parametrize("model_name", MODEL_NAMES)
@pytest.mark.parametrize("kind", ["dense", "meta", "clustered"])
def test_report_agrees_with_independent_reader(tmp_path: Path, model_name: str, kind: str) -> None:
    model = tiny_model(model_name, kind)
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    report = storage_report(read_header(path), k=4)
    with safe_open(str(path), "pt") as handle:  # an independent reader: shapes and metadata only
        metadata = handle.metadata()
        sizes = {name: handle.get_slice(name).get_shape() for name in handle.keys()}
        item = {"U8": 1, "I8": 1, "F16": 2, "BF16": 2, "I64": 8}  # else 4 bytes (F32)
        nbytes = {name: math.prod(s) * item.get(handle.get_slice(name).get_dtype(), 4) for name, s in sizes.items()}
    config = json.loads(metadata["model"])
    widths = config["widths"]
    edges = [o * i for i, o in zip(widths[:-1], widths[1:])]
    assert [r.n for r in report.layers] == edges
    if kind != "clustered":
        assert report.total_bytes == sum(nbytes.values())
        assert report.extras_bytes == sum(v for name, v in nbytes.items() if not name.startswith("edges."))
        return
    # Version 8: one byte tensor, `payload`: a varint layout table (flags 0: float32 codebooks, float32 extras, no
    # grids; then per layer k, coding, bytes: all below 128 here, one byte each), the codebooks, the index streams
    # and the extras, then two CRC-32s.
    assert set(sizes) == {"payload"} and metadata["format_version"] == "8"
    with safe_open(str(path), "pt") as handle:
        payload = handle.get_tensor("payload").tolist()
    layers = len(edges)
    assert payload[0] == 0 and all(value < 128 for value in payload[1:1 + 3 * layers])
    table = [payload[1 + 3 * layer:4 + 3 * layer] for layer in range(layers)]  # per layer [k, coding, bytes]
    width = model.config.edge_width  # |w|, from the model saved
    books = sum(entry[0] for entry in table) * width * 4
    assert report.total_bytes == nbytes["payload"] - (1 + 3 * layers) - 8
    assert report.extras_bytes == report.total_bytes - books - sum(entry[2] for entry in table)  # no int8 scales
    for layer, (entry, n) in enumerate(zip(table, edges)):
        k, coding, part = entry
        assert report.layers[layer].k == k and coding == 0  # packed
        assert part == math.ceil(n * math.ceil(math.log2(k)) / 8)
        assert report.layers[layer].clustered_bytes == part + k * width * 4


@pytest.mark.parametrize("k,dtype,b", [(5, "int8", 8), (5, "float16", 16), (3, "float32", 32), (16, "int8", 8)])
def test_eq10_and_fp32_ratios_by_hand(k: int, dtype: str, b: int) -> None:
    """Eq. 10 with the codebook's own b for dense and codebook, against the ratio of stored bytes to fp32 dense."""
    from kancompress.report import _layer

    n, width = 100, 9
    row = _layer(0, n, width, k, dtype)
    assert row.ratio == pytest.approx(n * width * b / (n * math.log2(k) + width * k * b))
    index_bytes = math.ceil(n * math.ceil(math.log2(k)) / 8)
    stored = index_bytes + width * k * b // 8 + (4 if dtype == "int8" else 0)  # int8: one float32 scale
    assert row.clustered_bytes == stored and row.dense_bytes == n * width * 4
    assert row.stored_ratio == pytest.approx(n * width * 4 / stored)
    if (k, dtype) == (5, "int8"):  # written out: 7200 / (232.19 + 360) and 3600 / (38 + 45 + 4)
        assert row.ratio == pytest.approx(12.1582, abs=1e-4) and row.stored_ratio == pytest.approx(41.3793, abs=1e-4)


@pytest.mark.parametrize("kind", ["dense", "meta"])
def test_projected_report_of_dense_and_meta_files_by_hand(tmp_path: Path, kind: str) -> None:
    """A dense or meta file's report projects clustering at -k: k = 5 (not a power of two: 3-bit indices),
    float32 codebooks; the meta file's own edge bytes are the meta-learner and embeddings."""
    path = save_checkpoint(tiny_model("kan", kind), tmp_path / f"{kind}.safetensors")
    report = storage_report(read_header(path), k=5)
    first, second = report.layers
    assert report.projected and (first.k, first.bits, first.codebook_bits) == (5, 3, 32)
    assert first.clustered_bytes == math.ceil(30 * 3 / 8) + 9 * 5 * 4 == 12 + 180
    assert second.clustered_bytes == math.ceil(15 * 3 / 8) + 180 == 6 + 180
    assert first.ratio == pytest.approx(30 * 9 * 32 / (30 * math.log2(5) + 9 * 5 * 32))
    assert first.stored_ratio == pytest.approx(1080 / 192)
    # Stored edge bytes: dense (30 + 15)·9·4; meta: one learner 1->32->9 (32 + 32 + 288 + 9 floats) + 45 embeddings.
    expected_edges = 45 * 9 * 4 if kind == "dense" else (32 + 32 + 9 * 32 + 9 + 45) * 4
    assert report.edge_bytes == expected_edges
    assert report.clustered_bytes == 192 + 186 and report.dense_bytes == 45 * 9 * 4
