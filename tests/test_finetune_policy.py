"""Fine-tuning never returns a model worse on validation than its input: the input counts as epoch 0."""

from __future__ import annotations

import pytest
import torch

from kancompress import api
from kancompress.config import TrainConfig
from kancompress.data import load_dataset, split_validation
from kancompress.models import KANModel
from kancompress.train import evaluate


@pytest.fixture(scope="module")
def trained() -> KANModel:
    """A small digits KAN (3 epochs), the source every test here clusters (clustering copies it)."""
    return api.train(api.TrainOptions(hidden=(8,), lr=1e-2, train=TrainConfig(epochs=3, seed=0))).model


def test_finetune_that_only_hurts_returns_its_input(trained: KANModel) -> None:
    data = load_dataset("digits")
    clustered, _ = api.cluster(trained, api.ClusterConfig(k=8))
    split = split_validation(data, seed=0)
    before = evaluate(clustered, split.val_x, split.val_y)
    result = api.finetune(clustered, api.FinetuneOptions(lr=50.0, train=TrainConfig(epochs=2, patience=0)), data)
    assert result.history.best_epoch == 0  # no epoch at lr 50 beat the input
    assert all(not report.improved for report in result.history.epochs) and len(result.history.epochs) == 2
    after = evaluate(result.model, split.val_x, split.val_y)
    assert after.accuracy == before.accuracy
    for old, new in zip(clustered.edges.books(), result.model.edges.books()):
        assert torch.equal(old.codebook, new.codebook) and torch.equal(old.indices, new.indices)


def test_finetune_that_helps_keeps_its_best_epoch(trained: KANModel) -> None:
    data = load_dataset("digits")
    clustered, _ = api.cluster(trained, api.ClusterConfig(k=4))
    split = split_validation(data, seed=0)
    before = evaluate(clustered, split.val_x, split.val_y)
    result = api.finetune(clustered, api.FinetuneOptions(lr=1e-2, train=TrainConfig(epochs=3, patience=0)), data)
    after = evaluate(result.model, split.val_x, split.val_y)
    assert result.history.best_epoch >= 1 and after.accuracy > before.accuracy


def test_a_search_trial_stops_once_it_is_within_budget(trained: KANModel) -> None:
    """`stop_when` is checked on the input (epoch 0) and after every epoch: a trial already within budget trains
    no epoch at all; one that is not trains on."""
    from kancompress.train import fit

    split = split_validation(load_dataset("digits"), seed=0)
    for accept, expected in ((lambda val: True, 0), (lambda val: False, 2)):
        clustered, _ = api.cluster(trained, api.ClusterConfig(k=8))
        history = fit(clustered, split, api.parameter_groups(clustered, 1e-3), TrainConfig(epochs=2, patience=0),
                      keep_start=True, stop_when=accept)
        assert len(history.epochs) == expected


@pytest.mark.parametrize("dtype", ["int8", "float16"])
def test_quantization_aware_codebooks_compute_what_the_file_will_hold(trained: KANModel, dtype: str) -> None:
    from kancompress.quant import round_trip

    clustered, _ = api.cluster(trained, api.ClusterConfig(k=8, codebook_dtype=dtype))
    edges = clustered.edges
    with torch.no_grad():
        edges.book(0).codebook.add_(1e-3 * torch.randn_like(edges.book(0).codebook))  # off the storage grid
    raw = edges.book(0).codebook.detach().clone()
    stored = round_trip(raw, dtype)
    assert not torch.equal(raw, stored)
    with torch.no_grad():
        assert torch.equal(edges(0), raw[edges.book(0).indices])  # off by default: the parameter as it is
    edges.quantization_aware = True
    with torch.no_grad():
        assert torch.equal(edges(0), stored[edges.book(0).indices])  # inference: the stored values
    decoded = edges(0)  # training: the stored values, with the parameter's gradient (straight-through)
    assert torch.equal(decoded.detach(), stored[edges.book(0).indices])
    decoded.sum().backward()
    counts = torch.bincount(edges.book(0).indices, minlength=8).float()
    assert torch.equal(edges.book(0).codebook.grad, counts[:, None].expand_as(raw))
    edges.round_to_storage()
    assert not edges.quantization_aware and torch.equal(edges.book(0).codebook.detach(), stored)
