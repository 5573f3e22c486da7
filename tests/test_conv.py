"""Convolutional KAN layers: a naive unfold reference, every kind and basis, groups, the Table 2 shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from kancompress.format.checkpoint import load_checkpoint, save_checkpoint

from kancompress.format.header import read_header
from kancompress.config import CONV_MODEL_NAMES, ConvConfig, MetaConfig, default_conv_config
from kancompress.data import random_crop_flip
from kancompress.models import build_model
from kancompress.report import storage_report

KINDS = ("dense", "meta", "clustered")


def conv_model(model: str, kind: str, groups: int = 1, channels: tuple[int, ...] = (4, 8, 8)):
    conv = ConvConfig(strides=(1, 2, 1)[: len(channels)], groups=groups, dropout=0.25)
    config = default_conv_config(model, 2, 5, channels, MetaConfig(d_emb=2) if kind == "meta" else None, conv)
    built = build_model(config, kind, [3] * len(channels) if kind == "clustered" else None)
    if kind == "clustered":
        for book in built.edges.layers:
            book.codebook.data.normal_(0, 0.3)
            book.indices.random_(0, book.k)
    for module in built.modules():  # non-trivial norm statistics and affine terms
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.normal_(1, 0.1)
    return built.eval()


def naive_conv_layer(layer, x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Unfold the input into patches and apply the fully-connected KAN formula per patch and group:
    y[o] = Σ_{c,kh,kw} (Σ_j w_j B_j(p) + w_base·SiLU(p)), where padded taps contribute nothing (upstream convolves
    zero-padded basis maps)."""
    n, c, h, w = x.shape
    out, cg, k, _ = layer.edge_shape
    og = out // layer.groups
    unfold = dict(kernel_size=k, padding=layer.padding, stride=layer.stride)
    extras = layer.extras
    basis_in = layer.input_norm(x) if extras.basis_norm else x
    prepared = layer.basis.prepare(basis_in)  # tanh / per-sample range normalisation, on whole images
    base_in = F.silu(x) if extras.base_activation else x
    patches = F.unfold(base_in, **unfold)  # (N, C·k·k, L)
    basis_patches = F.unfold(prepared, **unfold)
    inside = F.unfold(torch.ones(1, c, h, w, dtype=x.dtype), **unfold)  # 1 for real taps, 0 for padding
    length = patches.shape[-1]
    y = torch.zeros(n, out, length, dtype=x.dtype)
    for o in range(out):
        g = o // og
        for ci in range(cg):
            channel = g * cg + ci
            for tap in range(k * k):
                row = channel * k * k + tap
                vector = edges[o, ci, tap // k, tap % k]
                bases = layer.basis.evaluate(basis_patches[:, row, :].unsqueeze(-1))[..., 0, :]  # (N, L, nb)
                phi = bases @ vector[:-1] + vector[-1] * patches[:, row, :]
                y[:, o] += phi * inside[0, row]
    h_out = (h + 2 * layer.padding - k) // layer.stride + 1
    y = y.view(n, out, h_out, -1)
    if extras.output == "prelu":
        return layer.prelu(layer.output_norm(y))
    if extras.output == "silu":
        return F.silu(layer.output_norm(y))
    return y


@pytest.mark.parametrize("model_name", CONV_MODEL_NAMES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("groups", [1, 2])
def test_conv_layers_match_unfold_reference(model_name: str, kind: str, groups: int) -> None:
    model = conv_model(model_name, kind, groups).double()
    x = torch.rand(2, 2, 6, 6, dtype=torch.float64) * 4 - 2
    with torch.no_grad():
        for index, layer in enumerate(model.layers):
            edges = model.edges(index).view(*layer.edge_shape, -1)
            expected = naive_conv_layer(layer, x, edges)
            got = layer(x, edges)
            assert torch.allclose(got, expected, atol=1e-10), (index, (got - expected).abs().max())
            x = got


@pytest.mark.parametrize("model_name", CONV_MODEL_NAMES)
@pytest.mark.parametrize("kind", KINDS)
def test_conv_forward_backward_round_trip(tmp_path: Path, model_name: str, kind: str) -> None:
    model = conv_model(model_name, kind).train()
    x = torch.rand(3, 2, 8, 8) * 2 - 1
    logits = model(x)
    assert logits.shape == (3, 5)
    logits.square().sum().backward()
    assert all(p.grad is not None for p in model.edges.parameters())
    path = save_checkpoint(model, tmp_path / "conv.safetensors")
    loaded = load_checkpoint(path)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


def test_paper_cifar10_conv_shape_storage(tmp_path: Path) -> None:
    """KANConv on CIFAR-10, 32-64-128-256, k = 256 (paper Table 2: 13,654 KB -> 435 KB)."""
    config = default_conv_config("kan", 3, 10)
    edges = [3 * 32 * 9, 32 * 64 * 9, 64 * 128 * 9, 128 * 256 * 9]
    assert config.num_edges == edges and sum(edges) == 387_936
    path = save_checkpoint(build_model(config, "clustered", [256] * 4), tmp_path / "c.safetensors")
    report = storage_report(read_header(path))
    extras = 4 * (2 * (32 + 64 + 128 + 256) * 2 + 4) + 8 * 4 + 4 * (256 * 10 + 10)  # BN, PReLU, BN counts, head
    assert report.extras_bytes == extras
    assert report.dense_bytes == sum(edges) * 9 * 4 + extras
    assert report.clustered_bytes == sum(edges) + 4 * 256 * 9 * 4 + extras


def test_crop_flip_keeps_shapes_and_is_seeded() -> None:
    images = torch.rand(6, 3, 8, 8)
    first = random_crop_flip(images, torch.Generator().manual_seed(0))
    second = random_crop_flip(images, torch.Generator().manual_seed(0))
    assert first.shape == images.shape and torch.equal(first, second)
    still = random_crop_flip(images, torch.Generator().manual_seed(0), padding=0)
    assert all(torch.equal(s, i) or torch.equal(s, i.flip(-1)) for s, i in zip(still, images))
