"""Data-aware clustering (`kancompress.weighting`): the metric, Lloyd's algorithm in it, and the commands that use it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from conftest import tiny_model
from kancompress import api
from kancompress.cluster import Clusterer, sklearn_kmeans
from kancompress.config import ConvConfig, TrainConfig, default_conv_config
from kancompress.errors import ConfigError
from kancompress.format.checkpoint import load_checkpoint, save_checkpoint
from kancompress.models import build_model
from kancompress.weighting import RIDGE, input_grams, layer_inputs, weighted_kmeans


def objective(vectors: torch.Tensor, grams: torch.Tensor, codebook: torch.Tensor, indices: torch.Tensor) -> float:
    """Σ_e (v_e - c_I(e))ᵀ G_i(e) (v_e - c_I(e)), edge by edge (the naive reference)."""
    inputs = grams.shape[0]
    total = 0.0
    for e in range(vectors.shape[0]):
        difference = (vectors[e] - codebook[indices[e]]).double()
        total += float(difference @ grams[e % inputs] @ difference)
    return total


def random_grams(inputs: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    factors = torch.randn(inputs, width, width, generator=generator, dtype=torch.float64)
    return factors @ factors.transpose(1, 2) + 0.1 * torch.eye(width, dtype=torch.float64)


@pytest.mark.parametrize("k", [2, 5])
def test_weighted_kmeans_reaches_a_fixed_point_of_the_weighted_objective(k: int) -> None:
    generator = torch.Generator().manual_seed(k)
    vectors = torch.randn(7 * 6, 4, generator=generator)  # 7 outputs × 6 inputs
    grams = random_grams(6, 4, k)
    start, start_indices = sklearn_kmeans(vectors, k, 0, 2)
    codebook, indices = weighted_kmeans(vectors, grams, start, iterations=100)
    assert objective(vectors, grams, codebook, indices) <= objective(vectors, grams, start, start_indices) + 1e-6
    for e in range(vectors.shape[0]):  # every edge sits at its nearest centroid in its input's metric
        costs = [objective(vectors[e:e + 1], grams[e % 6:e % 6 + 1], codebook, torch.tensor([c])) for c in range(k)]
        assert costs[int(indices[e])] <= min(costs) + 1e-6
    for c in range(k):  # every used centroid is its members' G-weighted mean
        members = [e for e in range(vectors.shape[0]) if int(indices[e]) == c]
        if members:
            mass = sum(grams[e % 6] for e in members)
            pull = sum(grams[e % 6] @ vectors[e].double() for e in members)
            torch.testing.assert_close(codebook[c].double(), torch.linalg.solve(mass, pull), rtol=1e-4, atol=1e-5)


def test_identity_metric_is_plain_lloyd() -> None:
    vectors = torch.randn(40, 3, generator=torch.Generator().manual_seed(1))
    start, _ = sklearn_kmeans(vectors, 3, 0, 1)
    codebook, indices = weighted_kmeans(vectors, torch.eye(3, dtype=torch.float64).repeat(8, 1, 1), start)
    assert torch.equal(indices, torch.cdist(vectors, codebook).argmin(dim=1))


@torch.no_grad()
def test_input_grams_are_the_second_moments_of_each_inputs_features() -> None:
    model = tiny_model("kan", "dense", (6, 5, 3))
    x = torch.rand(50, 6) * 2 - 1
    grams = input_grams(model, x)
    assert len(grams) == 2
    for layer, raw, gram in zip(model.fc_layers(), layer_inputs(model, x), grams):
        assert gram is not None and gram.shape == (layer.in_features, layer.num_basis + 1, layer.num_basis + 1)
        features = layer.edge_features(raw).double()  # (N, in, |w|)
        i = 2
        expected = features[:, i].T @ features[:, i] / x.shape[0]
        ridge = float(gram.diagonal(dim1=1, dim2=2).mean()) * RIDGE / (1 + RIDGE)
        torch.testing.assert_close(gram[i], expected + ridge * torch.eye(expected.shape[0], dtype=torch.float64),
                                   rtol=1e-3, atol=1e-9)
    conv = build_model(default_conv_config("kan", 1, 3, (2, 2), conv=ConvConfig(strides=(1, 2))))
    assert input_grams(conv, torch.rand(4, 1, 8, 8)) == [None, None]


@torch.no_grad()
def test_data_aware_clustering_ignores_an_input_that_never_varies() -> None:
    """Two inputs: one always at the same value (a background pixel), one spread out. Plain K-means spends its
    centroids on the constant input's spread-out vectors; data-aware K-means on the input that matters, so the
    layer's outputs come out closer."""
    model = tiny_model("kan", "dense", (2, 40, 3))
    generator = torch.Generator().manual_seed(0)
    vectors = model.dense_edges().vectors[0]
    edges = vectors.view(40, 2, -1)
    edges[:, 0] = torch.randn(40, edges.shape[-1], generator=generator) * 5  # big, but only seen at one point
    edges[:, 1] = torch.randn(40, edges.shape[-1], generator=generator) * 0.5
    x = torch.stack([torch.full((400,), -0.3), torch.rand(400, generator=generator) * 2 - 1], dim=1)
    layer = model.fc_layers()[0]

    def output_error(clusterer: Clusterer) -> float:
        clustered = clusterer.build([4, 4])
        decoded = clustered.edge_vectors()[0].view(40, 2, -1)
        return float((layer(x, decoded) - layer(x, edges)).pow(2).mean())

    plain = output_error(Clusterer(model, n_init=2))
    aware = output_error(Clusterer(model, n_init=2, grams=input_grams(model, x)))
    assert aware < 0.5 * plain


def test_cluster_and_compress_use_it_when_asked(tmp_path: Path) -> None:
    result = api.train(api.TrainOptions.build(model="kan", hidden=(8,), train=TrainConfig(epochs=2)))
    path = save_checkpoint(result.model, tmp_path / "plain.safetensors", result.provenance)
    source = load_checkpoint(path)
    plain, _ = api.cluster(source, api.ClusterConfig(k=4))
    aware, provenance = api.cluster(source, api.ClusterConfig(k=4, data_aware=True))
    assert provenance["options"]["data_aware"] is True
    assert not torch.equal(plain.edges.books()[0].codebook, aware.edges.books()[0].codebook)
    with pytest.raises(ConfigError, match="--data-aware needs a loaded checkpoint"):
        api.cluster(source.model, api.ClusterConfig(k=4, data_aware=True))
    quick = {"max_drop": 5.0, "ks": (4, 8), "search": "thorough", "search_epochs": 1, "epochs": 1,
             "methods": ("cluster",)}
    _, provenance, trials = api.compress(source, api.CompressOptions(**quick))  # type: ignore[arg-type]
    assert {trial.method for trial in trials} == {"cluster", "cluster data-aware"}  # two searches
    _, provenance, trials = api.compress(source, api.CompressOptions(**quick, data_aware=False))  # type: ignore[arg-type]
    assert {trial.method for trial in trials} == {"cluster"}


def test_cluster_cli_data_aware(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kancompress.cli import app

    result = api.train(api.TrainOptions.build(model="kan", hidden=(8,), train=TrainConfig(epochs=1)))
    path = save_checkpoint(result.model, Path(tempfile.mkdtemp()) / "m.safetensors", result.provenance)
    out = tmp_path / "c.safetensors"
    run = CliRunner().invoke(app, ["cluster", str(path), "-k", "4", "--data-aware", "--full-metadata", "-o", str(out)])
    assert run.exit_code == 0, run.output
    assert load_checkpoint(out).header.provenance["options"]["data_aware"] is True
