"""The first layer's cached features (`models.FirstLayerFed`, `compress.cache`): the same outputs and the same
fine-tuning as the model on its samples, only for models whose features hold nothing trainable, rebuilt when the
first layer computes them differently."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import KINDS, tiny_model
from kancompress.compress.cache import FeatureCache
from kancompress.compress.policy import finetuner
from kancompress.config import MODEL_NAMES, TrainConfig
from kancompress.data import Split
from kancompress.models import FirstLayerFed, first_features, first_features_fixed
from kancompress.options import FinetuneOptions

FIXED = {"kan", "chebykan", "legendrekan", "fourierkan"}  # FastKAN's basis LayerNorm, Gram's β, wavelets: not


def _split(rows: int = 48, features: int = 6, outputs: int = 3) -> Split:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(rows, features, generator=generator) * 2 - 1
    y = torch.randint(0, outputs, (rows,), generator=generator)
    return Split(x[: rows * 3 // 4], y[: rows * 3 // 4], x[rows * 3 // 4 :], y[rows * 3 // 4 :])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_the_fed_model_gives_the_models_outputs_where_its_features_are_fixed(model_name: str, kind: str) -> None:
    model = tiny_model(model_name, kind)
    assert first_features_fixed(model) == (model_name in FIXED)
    if model_name not in FIXED:
        assert FeatureCache(_split()).split_for(model) is None  # trains on its samples as before
        return
    x = _split().train_x
    expected = model(x)
    fed = FirstLayerFed(model)(first_features(model, x, batch_size=7))  # batches of 7 rows: they split
    torch.testing.assert_close(fed, expected, rtol=1e-4, atol=1e-5 * float(expected.detach().abs().max()))


def _counted_fed_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of every batch the fine-tuner's `FirstLayerFed` (made by `FeatureCache.fitting`) runs from now on
    (patched to count them)."""
    rows: list[int] = []

    class CountedFed(FirstLayerFed):
        def forward(self, features: torch.Tensor) -> torch.Tensor:
            rows.append(features.shape[0])
            return super().forward(features)

    monkeypatch.setattr("kancompress.compress.cache.FirstLayerFed", CountedFed)
    return rows


@pytest.mark.parametrize("model_name", sorted(FIXED))
def test_fine_tuning_on_cached_features_matches_fine_tuning_on_samples(model_name: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # plain SGD for the comparison: Adam's step is ±lr wherever a gradient is near zero, so rounding alone can
    # flip a step there (a FourierKAN bias moved 0.0045 apart); SGD keeps both runs as close as their gradients
    monkeypatch.setattr(torch.optim, "AdamW", torch.optim.SGD)
    split = _split()
    source = tiny_model(model_name, "clustered")
    options = FinetuneOptions(lr=1e-2, train=TrainConfig(epochs=3, batch_size=8, patience=0, seed=0))
    plain = finetuner(options, split)(copy.deepcopy(source))
    cache = FeatureCache(split)
    assert cache.split_for(source, build=False) is None  # a fine-tuning does not build the features ...
    built = cache.split_for(source)  # ... distillation does, and the fine-tunings after it take them
    fed_calls = _counted_fed_rows(monkeypatch)
    cached = finetuner(options, split, cache=cache)(copy.deepcopy(source))
    assert cache.split_for(source, build=False) is built and fed_calls  # it trained on the features
    for (name, want), got in zip(plain.state_dict().items(), cached.state_dict().values()):
        if want.is_floating_point():
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=name)
        else:
            assert torch.equal(got, want), name
    assert not torch.equal(plain.edges.layers[0].codebook, source.edges.layers[0].codebook)  # it did train


@pytest.mark.parametrize("model_name", ["kan", "fastkan"])
def test_a_fine_tuning_without_cached_training_rows_validates_on_the_validation_rows_features(
        model_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.optim, "AdamW", torch.optim.SGD)  # as above: both runs as close as their gradients
    split = _split()
    source = tiny_model(model_name, "clustered")
    options = FinetuneOptions(lr=1e-2, train=TrainConfig(epochs=3, batch_size=8, patience=0, seed=0))
    plain = finetuner(options, split)(copy.deepcopy(source))
    judged = _counted_fed_rows(monkeypatch)
    cache = FeatureCache(split)
    tuned = finetuner(options, split, cache=cache)(copy.deepcopy(source))
    assert cache.split_for(source, build=False) is None  # the training rows' features were not built
    if model_name == "fastkan":  # its basis LayerNorm trains: no features at all
        assert not judged and cache.validation_for(source) is None
    else:
        assert judged == [split.val_x.shape[0]] * 4  # epoch 0 and three epochs, all on the validation features
    for (name, want), got in zip(plain.state_dict().items(), tuned.state_dict().values()):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=name)


def test_the_cache_is_kept_for_the_same_first_layer_and_rebuilt_for_another() -> None:
    split = _split()
    cache = FeatureCache(split)
    first, second = tiny_model("kan", "clustered"), tiny_model("kan", "meta")  # same basis, other edges
    fed = cache.split_for(first)
    assert fed is not None and fed.train_x.shape == (36, 6, first.config.num_basis + 1)
    assert cache.split_for(second) is fed  # clustering changes edges, not features
    with torch.no_grad():
        second.fc_layers()[0].basis.grid.mul_(1.5)  # another grid: other features
    rebuilt = cache.split_for(second)
    assert rebuilt is not None and rebuilt is not fed
    torch.testing.assert_close(rebuilt.val_x, first_features(second, split.val_x))
    assert FeatureCache(split, limit=36 * 6 * 9 * 4).split_for(first) is None  # over the limit (48 rows)
    judged = FeatureCache(split, limit=36 * 6 * 9 * 4).validation_for(first)  # 12 validation rows fit
    assert judged is not None and judged.train_x is split.train_x and judged.val_x.shape == (12, 6, 9)


def test_a_teacher_shares_the_cache_only_when_it_computes_the_same_features() -> None:
    cache = FeatureCache(_split())
    student, teacher = tiny_model("kan", "meta"), tiny_model("kan", "dense")
    assert cache.split_for(student, teacher) is not None
    assert cache.split_for(student, tiny_model("fastkan", "dense")) is None  # its features hold a LayerNorm
    with torch.no_grad():
        teacher.fc_layers()[0].basis.grid.add_(0.25)  # a re-gridded teacher sees other features
    assert cache.split_for(student, teacher) is None
