"""ONNX export: parity with kancompress in onnxruntime for every basis, kind, FC and conv; compressed form kept."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_model
from kancompress.cli import app
from kancompress.config import MODEL_NAMES, ConvConfig, MetaConfig, default_conv_config
from kancompress.format.checkpoint import checkpoint_bytes, save_checkpoint
from kancompress.models import build_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.filterwarnings("ignore")


def exported(model: torch.nn.Module, image_size: int = 8) -> bytes:
    from kancompress.onnx_export import export_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_onnx(model, image_size)


def conv_model(name: str, kind: str) -> torch.nn.Module:
    config = default_conv_config(name, 2, 3, (4, 4), MetaConfig(d_emb=2) if kind == "meta" else None,
                                 ConvConfig(strides=(1, 2), groups=2))
    model = build_model(config, kind, [3, 3] if kind == "clustered" else None)
    if kind == "clustered":
        for book in model.edges.books():
            book.codebook.data.normal_(0, 0.3)
            book.indices.random_(0, book.k)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("kind", ["dense", "meta", "clustered"])
@pytest.mark.parametrize("arch", ["fc", "conv"])
def test_onnxruntime_matches_kancompress(name: str, kind: str, arch: str) -> None:
    model = tiny_model(name, kind, (6, 5, 3)).eval() if arch == "fc" else conv_model(name, kind)
    session = ort.InferenceSession(exported(model))
    shapes = [(7, 6), (1, 6)] if arch == "fc" else [(3, 2, 8, 8), (1, 2, 12, 10)]  # batch (and image) sizes vary
    for shape in shapes:
        x = torch.rand(*shape) * 4 - 2
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert np.abs(got - expected).max() <= 1e-4


def test_clustered_graph_keeps_codebooks_and_packed_indices() -> None:
    from kancompress.config import default_config

    model = build_model(default_config("kan", (784, 32, 10)), "clustered", [16, 16])  # the paper's shape, k = 16
    for book in model.edges.books():
        book.codebook.data.normal_(0, 0.1)
        book.indices.random_(0, 16)
    data = exported(model)
    graph = onnx.load_from_string(data).graph
    sizes = {init.name: len(init.raw_data) for init in graph.initializer}
    assert sizes["edges.packed_0"] == 784 * 32 // 2  # 4-bit indices, two per byte
    assert max(sizes.values()) < 784 * 32  # no decoded (n, |w|) float tensor anywhere
    assert any(node.op_type == "Gather" for node in graph.node)
    dense = build_model(default_config("kan", (784, 32, 10)), "dense")
    assert len(data) < 0.05 * len(exported(dense))
    assert len(data) < 2 * len(checkpoint_bytes(model, {}))


def test_export_cli_to_onnx_and_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    path = save_checkpoint(tiny_model("gramkan", "clustered", (64, 8, 10)), tmp_path / "c.safetensors")
    out = tmp_path / "m.onnx"
    result = runner.invoke(app, ["export", str(path), "--to", "onnx", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert ort.InferenceSession(out.read_bytes()).get_inputs()[0].name == "input"
    wrong = runner.invoke(app, ["export", str(path), "--to", "onnx", "-o", str(tmp_path / "m.safetensors")])
    assert wrong.exit_code == 1 and ".onnx" in wrong.output
    again = runner.invoke(app, ["export", str(path), "--to", "onnx", "-o", str(out)])
    assert again.exit_code == 1 and "--force" in again.output
