"""Defaults that work on small data: the step floor raises epochs and patience where an epoch is a step or two,
and leaves larger data (and an explicit --epochs) alone."""

from __future__ import annotations

import pytest

from kancompress.cli import DEFAULT_MIN_STEPS, step_floors
from kancompress.config import TrainConfig
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
    assert step_floors(None, epochs_given=False) == {"min_steps": DEFAULT_MIN_STEPS,
                                                     "min_patience_steps": DEFAULT_MIN_STEPS // 7}
    assert step_floors(None, epochs_given=True) == {"min_steps": 0, "min_patience_steps": 0}
    assert step_floors(700, epochs_given=True) == {"min_steps": 700, "min_patience_steps": 100}
    with pytest.raises(ConfigError, match="--min-steps"):
        TrainConfig(min_steps=-1)


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
    assert api._source_split(checkpoint, data).val_x.shape[0] == round(data.train_x.shape[0] * 0.3)
    bad = CliRunner().invoke(app, ["train", "--val-fraction", "1.5", "-o", str(tmp_path / "x.safetensors")])
    assert bad.exit_code == 1 and "--val-fraction 1.5 must be between 0 and 1" in bad.output
