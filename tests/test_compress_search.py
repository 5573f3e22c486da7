"""The fast search of `compress` (`kancompress.compress`): the proxy, the rate–distortion frontier, the trial
policy, BatchNorm re-estimation, the precision fallback and the progress reports."""

from __future__ import annotations

import dataclasses
import itertools
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import tiny_model
from kancompress import api
from kancompress.cluster import Clusterer, candidate_ks
from kancompress.compress.allocate import frontier
from kancompress.compress import engine
from kancompress.compress.engine import AUTO_DTYPES
from kancompress.compress.policy import CHUNK_STEPS, chunks_for, reestimate_batchnorm
from kancompress.compress import proxy
from kancompress.compress.proxy import LayerChoice, layer_choices
from kancompress.compress.trials import Progress
from kancompress.config import MODEL_NAMES, ConvConfig, TrainConfig, default_conv_config
from kancompress.data import Split
from kancompress.edges import DenseEdges
from kancompress.errors import BudgetError
from kancompress.format.checkpoint import load_checkpoint, payload_bytes, save_checkpoint
from kancompress.models import build_model, with_edges
from kancompress.quant import round_trip
from kancompress.tasks import Metrics, within_budget
from kancompress.optim import parameter_groups
from kancompress.train import batch_stream, evaluate, fit
from kancompress.weighting import input_grams


def choice(layer: int, k: int, size: int, loss: float) -> LayerChoice:
    return LayerChoice(layer, k, False, torch.zeros(k, 1), torch.zeros(1, dtype=torch.int64), size, loss)


def test_the_frontier_is_the_pareto_set_of_every_allocation() -> None:
    generator = torch.Generator().manual_seed(0)
    layers = [[choice(layer, 2 + i, int(torch.randint(10, 1000, (1,), generator=generator)),
                      float(torch.rand(1, generator=generator))) for i in range(5)] for layer in range(3)]
    points = frontier(layers, resolution=1.0)
    # the naive reference: every combination, kept when nothing is at most as large and strictly less lossy
    combos = [(sum(c.bytes for c in combo), sum(c.loss for c in combo), combo)
              for combo in itertools.product(*layers)]
    pareto = sorted({(size, round(loss, 12)) for size, loss, _ in combos
                     if not any(s <= size and l < loss - 1e-12 for s, l, _ in combos)})
    assert [(p.bytes, round(p.loss, 12)) for p in points] == pareto
    assert all(len(p.choices) == 3 and [c.layer for c in p.choices] == [0, 1, 2] for p in points)


def test_thinning_keeps_both_ends_and_the_lower_loss_of_near_sizes() -> None:
    layers = [[choice(0, 2, 100, 5.0), choice(0, 4, 101, 4.0), choice(0, 8, 102, 3.0), choice(0, 16, 200, 1.0),
               choice(0, 32, 203, 0.5)]]
    assert [p.bytes for p in frontier(layers, resolution=1.0)] == [100, 101, 102, 200, 203]
    thinned = frontier(layers, resolution=1.05)
    assert [p.bytes for p in thinned] == [100, 102, 203]  # the smallest alone; 101..102 and 200..203 grouped
    assert thinned[-1].loss == 0.5


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_the_proxy_loss_is_the_loss_of_the_model_with_that_layer_clustered(model_name: str) -> None:
    torch.manual_seed(0)
    model = tiny_model(model_name, "dense").eval()
    x = torch.randn(64, 6)
    y = torch.randint(0, 3, (64,))
    clusterer = Clusterer(model, codebook_dtype="int8", index_coding="context")
    layers = layer_choices(clusterer, (2, 4), "int8", "context", x, y)
    reference = evaluate(model, x, y).loss
    for options in layers:
        assert [c.k for c in options] == [2, 4]
        for option in options:  # the oracle: the whole model evaluated with only this layer replaced
            vectors = [v.clone() for v in model.edge_vectors()]
            vectors[option.layer] = round_trip(option.codebook, "int8")[option.indices]
            replaced = with_edges(model, DenseEdges(vectors), model.config)
            increase = evaluate(replaced, x, y).loss - reference
            assert option.loss == pytest.approx(increase, rel=1e-4, abs=1e-6 * max(1.0, abs(reference)))
            built = clusterer.build([option.k if l == option.layer else 2 for l in range(len(layers))])
            assert option.bytes > 0 and option.indices.shape[0] == model.config.num_edges[option.layer]
            assert payload_bytes(built) > 0


@pytest.mark.parametrize("arch", ["conv", "wavkan"])
def test_the_proxy_of_a_model_run_whole_batches_rows_and_keeps_the_focused_layers_input(
        arch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy, "PROBE_BATCH", 16)  # 40 rows: batches of 16, 16 and 8
    torch.manual_seed(0)
    if arch == "conv":
        model = build_model(default_conv_config("fastkan", 1, 3, (4, 4, 4), conv=ConvConfig(strides=(1, 2, 1)))).eval()
        x = torch.rand(40, 1, 8, 8)
    else:
        model, x = tiny_model("wavkan", "dense").eval(), torch.randn(40, 6)
    y = torch.randint(0, 3, (40,))
    clusterer = Clusterer(model, codebook_dtype="float16", index_coding="packed")
    layers = layer_choices(clusterer, (2, 3), "float16", "packed", x, y)
    reference = evaluate(model, x, y).loss
    assert len(layers) == len(model.config.num_edges)
    for option in itertools.chain(*layers):  # the oracle: the whole model with only this layer replaced
        vectors = [v.clone() for v in model.edge_vectors()]
        vectors[option.layer] = round_trip(option.codebook, "float16")[option.indices]
        increase = evaluate(with_edges(model, DenseEdges(vectors), model.config).eval(), x, y).loss - reference
        assert option.loss == pytest.approx(increase, rel=1e-4, abs=1e-6 * max(1.0, abs(reference)))


def test_data_aware_choices_are_offered_beside_plain_ones() -> None:
    model = tiny_model("kan", "dense").eval()
    x = torch.randn(64, 6)
    clusterer = Clusterer(model, grams=input_grams(model, x))
    layers = layer_choices(clusterer, (2,), "float32", "packed", x, torch.randint(0, 3, (64,)))
    assert [[c.data_aware for c in options] for options in layers] == [[False, True], [False, True]]


def test_a_chunked_fine_tuning_validates_every_chunk_of_a_continuing_stream() -> None:
    stream = batch_stream(10, 4, torch.Generator().manual_seed(0))
    passes = [torch.cat([next(stream) for _ in range(3)]) for _ in range(2)]  # 3 batches of 4, 4, 2 per pass
    assert all(sorted(p.tolist()) == list(range(10)) for p in passes) and not torch.equal(*passes)
    model = tiny_model("kan", "clustered")
    data = Split(torch.randn(200, 6), torch.randint(0, 3, (200,)), torch.randn(20, 6), torch.randint(0, 3, (20,)))
    steps: list[int] = []
    history = fit(model, data, parameter_groups(model, 1e-3), TrainConfig(epochs=3, batch_size=16, patience=0),
                  on_batch=lambda step, total: steps.append(step), chunk_steps=5)
    assert len(history.epochs) == 3 and steps == [1, 2, 3, 4, 5] * 3  # 13 batches a pass: chunks cross passes
    assert chunks_for(400) == 400 // CHUNK_STEPS and chunks_for(1) == 1


def test_batchnorm_statistics_are_re_estimated_from_the_data() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    net.eval()
    x = torch.randn(500, 3) * 2 + 1
    assert reestimate_batchnorm(net, x, batch_size=100)
    norm = net[1]
    batches = net[0](x).detach().split(100)  # the oracle: every batch counts the same, dropout off
    torch.testing.assert_close(norm.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0), rtol=1e-4,
                               atol=1e-5)
    torch.testing.assert_close(norm.running_var, torch.stack([b.var(0) for b in batches]).mean(0), rtol=1e-4,
                               atol=1e-5)
    assert norm.momentum == 0.1 and not net.training  # restored
    assert not reestimate_batchnorm(nn.Sequential(nn.Linear(3, 4)), x)


@pytest.fixture(scope="module")
def meta_source() -> Path:
    result = api.train(api.TrainOptions.build(model="kan", meta=True, hidden=(8,), train=TrainConfig(epochs=6)))
    return save_checkpoint(result.model, Path(tempfile.mkdtemp()) / "meta.safetensors", result.provenance)


def test_the_fast_search_returns_the_smallest_verified_candidate_within_budget(meta_source: Path) -> None:
    reports: list[Progress] = []
    model, provenance, trials = api.compress(load_checkpoint(meta_source),
                                             api.CompressOptions(max_drop=2.0, ks=(2, 4, 8, 16), search_steps=60,
                                                                 methods=("cluster",)),
                                             on_progress=reports.append)
    base = Metrics.from_json(provenance["source_val"])
    val = Metrics.from_json(provenance["val"])
    assert within_budget(val, base, 2.0) and model.kind == "clustered"
    *verified, final = trials
    assert final.ks == tuple(provenance["k"]) and final.val == val and payload_bytes(model) == final.bytes
    accepted = [trial for trial in verified if trial.within]
    rescued = [trial for trial in verified if not trial.within and (trial.ks, trial.bytes) == (final.ks, final.bytes)]
    # the smallest candidate within budget, or a smaller near miss that its final fine-tuning brought within it
    assert min(trial.bytes for trial in accepted) == final.bytes or rescued
    assert verified[0].ks == (16, 16)  # the frontier's largest point is verified first
    assert not any(trial.within and trial.bytes < final.bytes for trial in trials)
    assert [r.done for r in reports] == sorted(r.done for r in reports) and reports[-1].stage == "done"
    assert all(r.done <= r.total for r in reports) and "left" in reports[-1].describe()


def test_a_later_method_searches_only_below_the_smallest_result_so_far(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    result = api.train(api.TrainOptions.build(model="kan", hidden=(8,), train=TrainConfig(epochs=6, min_steps=0)))
    source = save_checkpoint(result.model, tmp_path / "dense.safetensors", result.provenance)
    calls: list[tuple[str, int | None, list[int], object]] = []
    search = engine._fast

    def recorded(clusterer: Clusterer, method: str, run: engine._Run, below: int | None = None,
                 soft: bool = False) -> object:
        before = len(run.trials)
        found = search(clusterer, method, run, below, soft)
        calls.append((method, below, [trial.bytes for trial in run.trials[before:]], found))
        return found

    monkeypatch.setattr(engine, "_fast", recorded)
    options = api.CompressOptions(max_drop=3.0, ks=(2, 4, 8, 16), search_steps=40, distill_epochs=2)
    _, provenance, _ = api.compress(load_checkpoint(source), options)
    (first, unbounded, _, distilled), (second, bound, sizes, _), *_ = calls  # distill first, whatever the order given
    assert (first, unbounded, second) == ("distill", None, "cluster")
    assert distilled is not None and bound == distilled[1].bytes  # type: ignore[index]
    assert all(size < bound for size in sizes), (bound, sizes)  # no candidate that could not win was fine-tuned
    assert provenance["method"].startswith("distill") or min(sizes) < bound


def test_the_thorough_search_is_still_there(meta_source: Path) -> None:
    options = api.CompressOptions(max_drop=2.0, ks=(4, 16), search="thorough", search_epochs=1, epochs=1,
                                  methods=("cluster",), data_aware=False)
    _, provenance, trials = api.compress(load_checkpoint(meta_source), options)
    assert {trial.epochs for trial in trials} == {1} and provenance["method"] == "cluster"
    assert within_budget(Metrics.from_json(provenance["val"]), Metrics.from_json(provenance["source_val"]), 2.0)


def test_auto_precision_moves_up_only_when_nothing_fits(meta_source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[str] = []
    search = engine._fast

    def int8_never_fits(clusterer: Clusterer, method: str, run: engine._Run, below: int | None = None,
                        soft: bool = False) -> object:
        tried.append(clusterer.codebook_dtype)
        return None if clusterer.codebook_dtype == "int8" else search(clusterer, method, run, below, soft)

    monkeypatch.setattr(engine, "_fast", int8_never_fits)
    options = api.CompressOptions(max_drop=5.0, ks=(4,), search_steps=20, methods=("cluster",))
    model, provenance, _ = api.compress(load_checkpoint(meta_source), options)
    assert tried == ["int8", "float16"] and provenance["codebook_dtype"] == "float16"
    assert model.edges.codebook_dtype == "float16"
    tried.clear()
    with pytest.raises(BudgetError):
        api.compress(load_checkpoint(meta_source), dataclasses.replace(options, codebook_dtype="int8"))
    assert tried == ["int8"]  # a dtype the user named is kept


def test_nothing_within_budget_at_any_precision_names_the_closest(meta_source: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine._Run, "within", lambda self, val: False)
    options = api.CompressOptions(max_drop=1.0, ks=(2, 4), search_steps=10, methods=("cluster",))
    with pytest.raises(BudgetError, match="no codebook keeps .* codebooks") as failed:
        api.compress(load_checkpoint(meta_source), options)
    dtypes = [trial["codebook_dtype"] for trial in failed.value.trials]
    assert dtypes == sorted(dtypes, key=AUTO_DTYPES.index) and set(dtypes) == set(AUTO_DTYPES)


def test_a_layer_with_few_edges_may_keep_every_edge_its_own_vector() -> None:
    ks = (2, 4, 8, 16)
    assert candidate_ks(ks, 10) == [2, 4, 8, 10]  # no more edges than the largest k: the edge count is a candidate
    assert candidate_ks(ks, 16) == [2, 4, 8, 16]
    assert candidate_ks(ks, 320) == [2, 4, 8, 16]  # more edges: only the sizes asked for
    assert candidate_ks((4, 8), 3) == [3] and candidate_ks((4,), 2) == [2]


def test_extras_are_stored_at_float16_when_validation_allows(tmp_path: Path) -> None:
    """A FastKAN's LayerNorms, biases and base weights outside the codebooks: float16 when the budget allows
    (`engine._half_extras`), float32 when float32 codebooks are asked for."""
    result = api.train(api.TrainOptions.build(model="fastkan", meta=True, hidden=(8,), train=TrainConfig(epochs=3)))
    source = load_checkpoint(save_checkpoint(result.model, tmp_path / "fastkan.safetensors", result.provenance))
    options = api.CompressOptions(max_drop=5.0, ks=(4, 8), search_steps=50, methods=("cluster",))
    model, provenance, trials = api.compress(source, options)
    assert model.extras_dtype == "float16" and trials[-1].method.endswith(", float16 extras")
    assert trials[-1].bytes == payload_bytes(model) < trials[-2].bytes
    path = save_checkpoint(model, tmp_path / "small.safetensors", provenance)
    loaded = load_checkpoint(path)
    assert loaded.model.extras_dtype == "float16"
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor.cpu()), name
    exact, _, _ = api.compress(source, dataclasses.replace(options, codebook_dtype="float32"))
    assert exact.extras_dtype == "float32"
