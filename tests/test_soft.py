"""The "soft" compress method (`kancompress.compress.soft`): soft assignment to trained codebooks during a short
retrain, the hard assignment judged and kept."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import torch

from conftest import tiny_model
from kancompress import api
from kancompress.cluster import kmeans
from kancompress.compress import engine
from kancompress.compress.soft import TEMPERATURE_END, TEMPERATURE_START, SoftCodebookEdges, softened
from kancompress.config import MODEL_NAMES, TrainConfig
from kancompress.errors import ConfigError
from kancompress.format.checkpoint import load_checkpoint, save_checkpoint
from kancompress.quant import round_trip
from kancompress.tasks import Metrics, within_budget


def soft_copy(name: str, kind: str, k: int = 3, steps: int = 10) -> tuple[torch.nn.Module, SoftCodebookEdges]:
    source = tiny_model(name, kind)
    codebooks = [kmeans(vectors, k, n_init=1)[0] for vectors in source.edge_vectors()]
    model = softened(source, codebooks, steps, "int8")
    assert isinstance(model.edges, SoftCodebookEdges)
    return model, model.edges


@pytest.mark.parametrize("kind", ["dense", "meta"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_store_gives_attention_weighted_centroids_and_without_gradient_the_nearest(name: str, kind: str) -> None:
    _, store = soft_copy(name, kind)
    for layer in range(store.num_layers()):
        vectors, codebook = store.inner(layer).detach(), store.codebooks[layer].detach()
        tau = float(store.temperature(layer))
        expected = torch.empty_like(vectors)
        for edge, w in enumerate(vectors):  # naive: A_ij = exp(-|w_i - c_j|² / τ) / Σ_j
            weights = torch.tensor([math.exp(-float(((w - c) ** 2).sum()) / tau) for c in codebook.double()])
            expected[edge] = (weights / weights.sum()).float() @ codebook
        torch.testing.assert_close(store(layer), expected, rtol=1e-4, atol=1e-5 * float(codebook.abs().max()))
        with torch.no_grad():
            hard = store(layer)
        nearest = torch.stack([((codebook - w) ** 2).sum(1).argmin() for w in vectors])
        torch.testing.assert_close(hard, round_trip(codebook, "int8")[nearest], rtol=0, atol=0)


def test_the_temperature_falls_geometrically_over_the_training_steps() -> None:
    model, store = soft_copy("kan", "dense", steps=10)
    start = store.temperature(0)
    torch.testing.assert_close(start, store.spread[0] * TEMPERATURE_START)
    model.train()
    for step in range(1, 11):
        model(torch.randn(4, 6))
        if step == 5:
            torch.testing.assert_close(store.temperature(0), store.spread[0] * math.sqrt(TEMPERATURE_START *
                                                                                         TEMPERATURE_END))
    torch.testing.assert_close(store.temperature(1), store.spread[1] * TEMPERATURE_END)
    model.eval()
    with torch.no_grad():
        model(torch.randn(4, 6))
    assert store.taken == 10  # validation does not advance it
    spread = [((vectors[:, None] - codebook[None]) ** 2).sum(-1).min(1).values.mean()
              for vectors, codebook in zip(store.inner.all_vectors(), store.codebooks)]
    torch.testing.assert_close(store.spread, torch.stack(spread).detach(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("kind", ["dense", "meta"])
def test_gradients_reach_the_source_and_the_codebooks_and_the_source_is_left_alone(kind: str) -> None:
    source = tiny_model("kan", kind)
    before = {name: tensor.clone() for name, tensor in source.state_dict().items()}
    model = softened(source, [kmeans(v, 3, n_init=1)[0] for v in source.edge_vectors()], 10, "float32")
    store = model.edges
    assert isinstance(store, SoftCodebookEdges)
    groups = store.parameter_groups(1e-2, 1e-3, 1e-4, 1e-1)
    optimizer = torch.optim.AdamW(groups)
    model(torch.randn(8, 6)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for group in groups for p in group["params"])
    assert sorted(group["lr"] for group in groups) == ([1e-4, 1e-3, 1e-1] if kind == "meta" else [1e-2, 1e-1])
    owned = {id(p) for group in groups for p in group["params"]}
    assert owned == {id(p) for p in store.parameters()}  # every parameter of the store, once
    optimizer.step()
    assert all(torch.equal(before[name], tensor) for name, tensor in source.state_dict().items())
    parts = store.parts()
    assert [codebook.shape[0] for codebook, _ in parts] == [3, 3]
    assert [indices.shape[0] for _, indices in parts] == [30, 15] and all(int(i.max()) < 3 for _, i in parts)


@pytest.fixture(scope="module")
def dense_source() -> Path:
    result = api.train(api.TrainOptions.build(model="kan", hidden=(8,), train=TrainConfig(epochs=6, min_steps=0)))
    return save_checkpoint(result.model, Path(tempfile.mkdtemp()) / "dense.safetensors", result.provenance)


def test_compress_soft_keeps_a_hard_clustered_model_within_budget(dense_source: Path) -> None:
    options = api.CompressOptions(max_drop=3.0, ks=(2, 4, 8, 16), search_steps=40, methods=("soft",),
                                  soft_epochs=2)
    model, provenance, trials = api.compress(load_checkpoint(dense_source), options)
    assert model.kind == "clustered" and provenance["method"].startswith("soft")
    assert within_budget(Metrics.from_json(provenance["val"]), Metrics.from_json(provenance["source_val"]), 3.0)
    assert all(trial.method.startswith("soft") for trial in trials if trial.ks)


def test_soft_runs_last_and_searches_only_below_the_other_methods_results(dense_source: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int | None, bool, list[int]]] = []
    search = engine._fast

    def recorded(clusterer: object, method: str, run: engine._Run, below: int | None = None,
                 soft: bool = False) -> object:
        before = len(run.trials)
        found = search(clusterer, method, run, below, soft)  # type: ignore[arg-type]
        calls.append((method, below, soft, [trial.bytes for trial in run.trials[before:]]))
        return found

    monkeypatch.setattr(engine, "_fast", recorded)
    options = api.CompressOptions(max_drop=3.0, ks=(2, 4, 8, 16), search_steps=40, methods=("soft", "cluster"),
                                  soft_epochs=1)
    api.compress(load_checkpoint(dense_source), options)
    (first, unbounded, soft_first, cluster_sizes), (second, bound, soft_second, sizes) = calls
    assert (first, unbounded, soft_first, second, soft_second) == ("cluster", None, False, "soft", True)
    assert bound is not None and all(size < bound for size in sizes)
    assert bound == min(cluster_sizes[-1:] + [bound])


def test_the_thorough_search_softens_each_trial(dense_source: Path) -> None:
    options = api.CompressOptions(max_drop=3.0, ks=(4, 16), search="thorough", search_epochs=1, epochs=1,
                                  methods=("soft",), data_aware=False, soft_epochs=1)
    _, provenance, trials = api.compress(load_checkpoint(dense_source), options)
    assert provenance["method"] == "soft" and {trial.method for trial in trials if trial.ks} == {"soft"}


def test_soft_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="--soft-epochs"):
        api.CompressOptions(max_drop=1.0, soft_epochs=0)
    with pytest.raises(ConfigError, match="cluster, distill, soft"):
        api.CompressOptions(max_drop=1.0, methods=("hard",))
