"""Defaults that work on small data: the step floor raises epochs and patience where an epoch is a step or two,
and leaves larger data (and an explicit --epochs) alone."""

from __future__ import annotations

import pytest

from kancompress.cli import step_floors
from kancompress.config import DEFAULT_MIN_STEPS, TrainConfig
from kancompress.errors import ConfigError


def test_the_floor_raises_epochs_and_patience_only_where_steps_are_few() -> None:
    config = TrainConfig(epochs=50, patience=10, min_steps=2000, min_patience_steps=285)
    small = config.for_steps_per_epoch(1)  # 150 rows at batch 128
    assert (small.epochs, small.patience) == (2000, 285)
    assert config.for_steps_per_epoch(3).epochs == 667 and config.for_steps_per_epoch(3).patience == 95
    large = config.for_steps_per_epoch(469)  # 60,000 images
    assert (large.epochs, large.patience) == (50, 10)
    assert TrainConfig(patience=0, min_patience_steps=100).for_steps_per_epoch(1).patience == 0  # still off
    assert TrainConfig().for_steps_per_epoch(1) == TrainConfig()  # no floor by default in the API


def test_the_cli_default_floor_yields_to_an_explicit_epoch_count() -> None:
    assert step_floors(None, epochs_given=False) == {"min_steps": None, "min_patience_steps": 0}  # the task's
    assert step_floors(None, epochs_given=True) == {"min_steps": 0, "min_patience_steps": 0}
    assert step_floors(700, epochs_given=True) == {"min_steps": 700, "min_patience_steps": 100}
    with pytest.raises(ConfigError, match="--min-steps"):
        TrainConfig(min_steps=-1)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_default_floor_is_the_tasks(task: str) -> None:
    config = TrainConfig(min_steps=None).for_task(task)
    assert (config.min_steps, config.min_patience_steps) == (DEFAULT_MIN_STEPS[task], DEFAULT_MIN_STEPS[task] // 7)
    given = TrainConfig(min_steps=300, min_patience_steps=42)
    assert given.for_task(task) == given  # a floor that was given stays
    with pytest.raises(ConfigError, match="for_task"):
        TrainConfig(min_steps=None).for_steps_per_epoch(1)


@pytest.mark.parametrize(("model", "scale"), [("kan", 10.0), ("fastkan", 10.0), ("chebykan", 1.0)])
@pytest.mark.parametrize("meta", [False, True])
def test_regression_defaults_scale_the_basis_rates_and_keep_given_ones(model: str, scale: float, meta: bool) -> None:
    from kancompress.bases import get_spec
    from kancompress.optim import default_learning_rates

    assert get_spec(model).lr.regression == scale

    classification = default_learning_rates(model, False, meta)
    regression = default_learning_rates(model, False, meta, task="regression")
    for plain_rate, scaled in zip(classification, regression):
        assert scaled == (None if plain_rate is None else pytest.approx(scale * plain_rate))
    assert default_learning_rates(model, True, meta, task="regression") == default_learning_rates(model, True, meta)
    given = default_learning_rates(model, False, meta, 0.5, 0.25 if meta else None, 0.125 if meta else None,
                                   task="regression")
    assert given == ((0.5, 0.25, 0.125) if meta else (0.5, None, None))


def test_train_resolves_the_floor_from_the_data_and_records_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from kancompress import api, config
    from kancompress.optim import default_learning_rates

    monkeypatch.setitem(config.DEFAULT_MIN_STEPS, "regression", 30)  # a short floor, still above --epochs 1

    options = api.TrainOptions.build(dataset="feynman:I.6.20a", hidden=(4,), train=TrainConfig(
        epochs=1, min_steps=None, batch_size=1000))
    data = api.load_data("feynman:I.6.20a")
    small = api.dataset_from_arrays(data.train_x[:40], data.train_y[:40], data.test_x[:10], data.test_y[:10])
    result = api.train(options, small)
    recorded = result.provenance["train_config"]
    assert (recorded["min_steps"], recorded["min_patience_steps"]) == (30, 4)
    assert 4 < len(result.history.epochs) <= 30  # one step an epoch: the floor, less early stopping
    assert result.provenance["lrs"][0] == pytest.approx(default_learning_rates("kan", False, False,
                                                                               task="regression")[0])


def test_the_validation_fraction_is_recorded_and_reused_by_later_commands(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from kancompress import api
    from kancompress.cli import app
    from kancompress.data import load_dataset
    from kancompress.format.checkpoint import load_checkpoint

    path = tmp_path / "m.safetensors"
    result = CliRunner().invoke(app, ["train", "--hidden", "8", "--epochs", "1", "--val-fraction", "0.3", "-o",
                                      str(path)])
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(path)
    assert checkpoint.header.provenance["train_config"]["val_fraction"] == 0.3
    data = load_dataset("digits")
    assert api.source_split(checkpoint, data).val_x.shape[0] == round(data.train_x.shape[0] * 0.3)
    bad = CliRunner().invoke(app, ["train", "--val-fraction", "1.5", "-o", str(tmp_path / "x.safetensors")])
    assert bad.exit_code == 1 and "--val-fraction 1.5 must be between 0 and 1" in bad.output


@pytest.mark.parametrize("model", ["gramkan", "legendrekan"])
@pytest.mark.parametrize(("hidden", "where"), [((8,), "the output"), ((1, 8), "hidden layer 1")])
def test_a_layer_norm_basis_refuses_a_single_node_layer(model: str, hidden: tuple[int, ...], where: str) -> None:
    from kancompress import api

    options = api.TrainOptions.build(model=model, dataset="feynman:I.6.20a", hidden=hidden,
                                     train=TrainConfig(epochs=1))
    data = api.load_data("feynman:I.6.20a")
    if where == "hidden layer 1":  # two targets: the output is fine, the one-node hidden layer is not
        data = api.dataset_from_arrays(data.train_x, data.train_y.repeat(1, 2), data.test_x, data.test_y.repeat(1, 2))
    with pytest.raises(ConfigError, match=f"{where} \\(one node\\) would be a constant"):
        api.train(options, data)
