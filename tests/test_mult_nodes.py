"""Multiplication nodes (pykan's MultKAN, KAN 2.0) as a model feature: the forward against a naive reference, and
train -> cluster -> finetune -> ONNX like any model."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from typer.testing import CliRunner

from kancompress.cli import app
from kancompress.config import MetaConfig, ModelConfig
from kancompress.errors import ConfigError
from kancompress.format.checkpoint import load_checkpoint
from kancompress.models import build_model


def naive(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Sub-node sums edge by edge, + bias, then each multiplication node the product of its `arity` consecutive
    sub-nodes after the sum nodes, then the node affine."""
    config = model.config
    for l, layer in enumerate(model.layers):
        vectors = model.edges(l).view(*layer.edge_shape, -1)
        bases = layer.basis(x)  # (N, in, nb)
        sub = torch.stack([sum(bases[:, i] @ vectors[o, i, :-1] + vectors[o, i, -1] * F.silu(x[:, i])
                                for i in range(layer.in_features)) for o in range(layer.out_features)], dim=1)
        if layer.bias is not None:
            sub = sub + layer.bias
        m, a = config.layer_mult_nodes(l), config.mult_arity
        if m:
            n_sum = sub.shape[1] - a * m
            products = [torch.prod(sub[:, n_sum + a * j: n_sum + a * (j + 1)], dim=1) for j in range(m)]
            sub = torch.cat([sub[:, :n_sum], torch.stack(products, dim=1)], dim=1) * layer.node_scale + layer.node_bias
        x = sub
    return x


@pytest.mark.parametrize("kind", ["dense", "meta", "clustered"])
@pytest.mark.parametrize("arity", [2, 3])
def test_forward_matches_the_naive_reference(kind: str, arity: int) -> None:
    config = ModelConfig(model="kan", widths=(4, 5, 3), mult_nodes=(2, 1), mult_arity=arity, output_bias=True,
                         meta=MetaConfig(d_emb=2) if kind == "meta" else None)
    assert config.layer_shapes == [(5 + 2 * (arity - 1), 4), (3 + (arity - 1), 5)]
    torch.manual_seed(0)
    model = build_model(config, kind, [4, 3] if kind == "clustered" else None).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
        if kind == "clustered":
            for book in model.edges.layers:
                book.indices.copy_(torch.randint(0, book.k, book.indices.shape))
    x = torch.rand(6, 4, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model(x), naive(model, x), atol=1e-10)


def test_bad_multiplication_configs_are_refused() -> None:
    with pytest.raises(ConfigError, match="one count per layer"):
        ModelConfig(model="kan", widths=(4, 5, 3), mult_nodes=(2,)).validate()
    with pytest.raises(ConfigError, match="at most that layer's width"):
        ModelConfig(model="kan", widths=(4, 5, 3), mult_nodes=(6, 0)).validate()


def test_train_cluster_finetune_and_onnx(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    runner = CliRunner()
    paths = {name: tmp_path / f"{name}.safetensors" for name in ("d", "c", "f")}
    result = runner.invoke(app, ["train", "--hidden", "8", "--mult-nodes", "3", "--epochs", "2", "--lr", "1e-2",
                                 "-o", str(paths["d"])])
    assert result.exit_code == 0, result.output
    config = load_checkpoint(paths["d"]).model.config
    assert config.mult_nodes == (3, 0) and config.layer_shapes[0] == (11, 64)
    assert runner.invoke(app, ["cluster", str(paths["d"]), "-k", "8", "-o", str(paths["c"])]).exit_code == 0
    result = runner.invoke(app, ["finetune", str(paths["c"]), "--epochs", "1", "-o", str(paths["f"])])
    assert result.exit_code == 0, result.output
    model = load_checkpoint(paths["f"]).model.eval()
    from kancompress.onnx_export import export_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session = ort.InferenceSession(export_onnx(model, 8))
    x = torch.rand(5, 64) * 2 - 1
    with torch.no_grad():
        expected = model(x).numpy()
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(got - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())
    refused = runner.invoke(app, ["train", "--hidden", "8", "--mult-nodes", "9", "-o", str(tmp_path / "x.safetensors")])
    assert refused.exit_code == 1 and "--mult-nodes" in refused.output
