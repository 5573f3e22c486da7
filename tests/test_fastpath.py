"""Codebook-space inference of clustered fully-connected layers: every method equals the per-edge reference."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_model
from kancompress.config import MODEL_NAMES, default_config
from kancompress.errors import ConfigError
from kancompress.fastpath import eligible_methods
from kancompress.layers import KANLinear
from kancompress.models import build_model
from test_models import naive_forward


@pytest.mark.parametrize("method", ["decode", "gather", "onehot"])
@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_every_method_matches_the_naive_reference(model_name: str, method: str) -> None:
    model = tiny_model(model_name, "clustered").double()
    model.set_fc_forward(method)
    x = torch.rand(7, 6, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model(x), naive_forward(model, x), atol=1e-10)
    assert model.codebook_forward.chosen() == {0: [method], 1: [method]}


def test_codebook_space_never_decodes_and_follows_new_indices() -> None:
    model = tiny_model("kan", "clustered").double()
    model.set_fc_forward("gather")
    x = torch.rand(5, 6, dtype=torch.float64)
    with torch.no_grad():
        model(x)
        assert model.edges._decoded == {}
        model.edges.layers[0].indices.copy_(torch.randint(0, 4, (30,)))  # as finetune --reassign does
        model.edges.layers[0].codebook.mul_(2.0)  # as a fine-tuning step does
        assert torch.allclose(model(x), naive_forward(model, x), atol=1e-10)


def test_training_always_decodes() -> None:
    model = tiny_model("kan", "clustered")
    model.set_fc_forward("gather")
    model(torch.rand(4, 6)).sum().backward()
    assert model.codebook_forward.chosen() == {}
    assert all(book.codebook.grad is not None for book in model.edges.layers)


def test_auto_keeps_small_layers_decoded_without_timing() -> None:
    model = tiny_model("kan", "clustered")
    with torch.no_grad():
        model(torch.rand(3, 6))
    assert model.codebook_forward.chosen() == {0: ["decode"], 1: ["decode"]}


@pytest.mark.parametrize(
    "shape,k,expected",
    [
        ((256, 512), 16, ["decode", "gather"]),  # k > |w| = 9: the one-hot product does more work than decoding
        ((256, 512), 8, ["decode", "gather", "onehot"]),
        ((8, 16384), 16, ["decode"]),  # k >= out: centroid responses alone cost as much as decoding
        ((128, 512), 4, ["decode"]),  # 0.6 M multiply-adds per sample: too small to be worth timing
    ],
)
def test_auto_candidates_follow_operation_counts(shape: tuple[int, int], k: int, expected: list[str]) -> None:
    out, inp = shape
    layer = KANLinear(default_config("kan", (inp, out)), inp, out)
    assert eligible_methods(layer, k, "auto") == expected
    assert eligible_methods(layer, k, "onehot") == ["onehot"]


def test_auto_picks_a_measured_method_per_batch_size_and_stays_exact() -> None:
    config = default_config("kan", (256, 512, 4))
    model = build_model(config, "clustered", [8, 8])
    for book in model.edges.layers:
        book.codebook.data.normal_(0, 0.3)
        book.indices.random_(0, book.k)
    reference = build_model(config, "clustered", [8, 8])
    reference.load_state_dict(model.state_dict())
    reference.set_fc_forward("decode")
    with torch.no_grad():
        for n in (64, 3):
            x = torch.rand(n, 256) * 2 - 1
            assert torch.allclose(model(x), reference(x), atol=1e-4)
    chosen = model.codebook_forward.chosen()
    assert set(chosen[0]) <= {"decode", "gather", "onehot"} and len(chosen[0]) <= 2
    assert chosen[1] == ["decode"]


def test_forced_codebook_forward_needs_a_clustered_fc_model() -> None:
    with pytest.raises(ConfigError, match="clustered fully-connected"):
        tiny_model("kan", "dense").set_fc_forward("gather")
    with pytest.raises(ConfigError, match="unknown fully-connected forward"):
        tiny_model("kan", "clustered").set_fc_forward("fast")
    tiny_model("kan", "meta").set_fc_forward("auto")  # auto and decode are always allowed
