"""Layers and models: upstream fidelity (fixture logits), a naive per-edge reference, forward/backward per kind."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from conftest import FIXTURES, all_models_and_kinds, fixture_json, tiny_model
from kancompress.config import MODEL_NAMES, MetaConfig, default_config
from kancompress.interop import import_source, read_source
from kancompress.models import build_model


@pytest.mark.parametrize("name", ["effkan-digits", "fastkan-digits", "chebykan-digits"])
def test_layers_reproduce_upstream_fixture_logits(name: str) -> None:
    meta = fixture_json(name)
    model = import_source(read_source(FIXTURES / f"{name}.safetensors")).model
    logits = model(torch.tensor(meta["probe_inputs"]))
    assert torch.allclose(logits, torch.tensor(meta["probe_logits"]), atol=1e-5, rtol=0)


def naive_forward(model, x: torch.Tensor) -> torch.Tensor:
    """Evaluate every edge's function φ(x) = Σ_j w_j B_j(x) + w_base·SiLU(x) one (o, i) at a time (parametric
    bases: φ(x; w[:-1]) + w_base·SiLU(x))."""
    for index, layer in enumerate(model.layers):
        vectors = model.edges(index).view(*layer.edge_shape, -1)
        if layer.pre_norm is not None:  # norm_between (ChebyKAN's model)
            x = layer.pre_norm(x)
        basis_in = layer.input_norm(x) if layer.input_norm is not None else x
        spec = layer.basis.spec
        bases = None if spec.parametric else layer.basis(basis_in)  # (N, in, nb)
        out = torch.zeros(x.shape[0], layer.out_features, dtype=x.dtype)
        for o in range(layer.out_features):
            for i in range(layer.in_features):
                w = vectors[o, i]
                edge = (spec.edge_function(layer.basis, layer.basis.prepare(basis_in)[:, i], w[:-1]) if bases is None
                        else bases[:, i] @ w[:-1])
                out[:, o] += edge + w[-1] * F.silu(x[:, i])
        if layer.bias is not None:
            out = out + layer.bias
        if layer.output_norm is not None:
            out = F.silu(layer.output_norm(out))
        if layer.output_bn is not None:
            out = layer.output_bn(out)
        if layer.final_norm is not None:
            out = layer.final_norm(out)
        x = out
    return x


@pytest.mark.parametrize("model_name,kind", all_models_and_kinds())
def test_forward_matches_naive_per_edge_reference(model_name: str, kind: str) -> None:
    model = tiny_model(model_name, kind).double()
    x = torch.rand(7, 6, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model(x), naive_forward(model, x), atol=1e-10)


@pytest.mark.parametrize("model_name,kind", all_models_and_kinds())
def test_forward_backward_every_kind(model_name: str, kind: str) -> None:
    model = tiny_model(model_name, kind)
    x = torch.rand(4, 6) * 2 - 1
    out = model(x)
    assert out.shape == (4, 3)
    out.square().sum().backward()
    grads = [p.grad for p in model.edges.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_meta_learner_generates_whole_edge_vectors(model_name: str) -> None:
    config = default_config(model_name, (6, 5, 3), MetaConfig(d_emb=2, sharing="layer"))
    model = build_model(config, "meta")
    assert len(model.edges.learners) == 2
    vectors = model.edge_vectors()
    assert [tuple(v.shape) for v in vectors] == [(30, config.edge_width), (15, config.edge_width)]
    z = model.edges.embeddings[1][3]
    assert torch.allclose(vectors[1][3], model.edges.learners[1](z))


def test_grouped_meta_learners_follow_metakans_rule(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`groups:C`: C meta-learners, layers grouped by 1-D K-means on their output widths; parameters, save/load and
    clustering as for the other sharings."""
    from kancompress import api
    from kancompress.edges import layer_groups
    from kancompress.errors import ConfigError
    from kancompress.format.checkpoint import load_checkpoint, save_checkpoint

    assert layer_groups([64, 64, 64, 10], 2) == [0, 0, 0, 1]
    assert layer_groups([256, 32, 256, 32], 2) == [0, 1, 0, 1]
    assert layer_groups([8, 8, 8], 1) == [0, 0, 0] and layer_groups([8, 4], 2) == [0, 1]
    widths = (12, 16, 16, 16, 4)
    config = default_config("kan", widths, MetaConfig(sharing="groups:2"))
    model = build_model(config, "meta")
    assert len(model.edges.learners) == 2 and model.edges.groups == [0, 0, 0, 1]
    one = sum(p.numel() for p in model.edges.learners[0].parameters())
    assert sum(p.numel() for p in model.edges.learners.parameters()) == 2 * one
    vectors = model.edge_vectors()
    assert torch.allclose(vectors[3][0], model.edges.learners[1](model.edges.embeddings[3][0]))
    path = save_checkpoint(model, tmp_path / "g.safetensors")
    loaded = load_checkpoint(path).model
    x = torch.rand(5, 12)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    clustered, _ = api.cluster(loaded, api.ClusterConfig(k=4))
    assert clustered.kind == "clustered"
    with pytest.raises(ConfigError, match="groups:C"):
        default_config("kan", widths, MetaConfig(sharing="groups:5"))
