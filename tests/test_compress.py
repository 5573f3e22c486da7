"""`compress`: the smallest clustered file whose validation metric, after fine-tuning, stays within budget."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kancompress import api
from kancompress.cli import app
from kancompress.config import TrainConfig
from kancompress.errors import ConfigError
from kancompress.format.checkpoint import load_checkpoint, payload_bytes, save_checkpoint
from kancompress.tasks import Metrics, within_budget

runner = CliRunner()


@pytest.fixture(scope="module")
def meta_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = api.train(api.TrainOptions.build(model="kan", meta=True, hidden=(8,), train=TrainConfig(epochs=3)))
    return save_checkpoint(result.model, tmp_path_factory.mktemp("compress") / "meta.safetensors", result.provenance)


def quick(max_drop: float, **fields: object) -> api.CompressOptions:
    return api.CompressOptions(max_drop=max_drop, ks=(2, 4, 8), search="thorough", search_epochs=1, epochs=2,
                               **fields)  # type: ignore[arg-type]


def test_compress_keeps_the_smallest_trial_within_budget(meta_checkpoint: Path) -> None:
    source = load_checkpoint(meta_checkpoint)
    model, provenance, trials = api.compress(source, quick(3.0, data_aware=False, methods=("cluster",)))  # one search
    base = Metrics.from_json(provenance["source_val"])
    assert within_budget(Metrics.from_json(provenance["val"]), base, 3.0)
    assert {trial.method for trial in trials} == {"cluster"}  # a meta source is not distilled again
    search = [trial for trial in trials if trial.epochs == 1]
    assert search[0].ks == (8, 8)  # the search starts from the largest candidates
    chosen = tuple(provenance["k"])
    # Nothing tried in the search was smaller and within budget.
    smallest = min((trial for trial in search if trial.within), key=lambda trial: trial.bytes)
    assert smallest.ks == chosen
    finals = [trial for trial in trials if trial.epochs == 2]
    assert [trial.lr for trial in finals] == [1e-3, 1e-4]  # 10x and 1x the B-spline lr_c
    assert provenance["lr"] in (1e-3, 1e-4) and model.kind == "clustered"
    assert [book.k for book in model.edges.books()] == list(chosen)
    assert "test" in provenance and provenance["stage"] == "compress"


def test_compress_of_a_plain_model_also_tries_distilling_it_into_a_metakan() -> None:
    result = api.train(api.TrainOptions.build(model="kan", hidden=(8,), train=TrainConfig(epochs=3)))
    source = load_checkpoint(save_checkpoint(result.model, Path(tempfile.mkdtemp()) / "plain.safetensors",
                                             result.provenance))
    model, provenance, trials = api.compress(source, quick(3.0, distill_epochs=2))
    distilled = [trial for trial in trials if trial.method == "distill" and not trial.ks]
    assert len(distilled) == 1 and distilled[0].epochs == 2
    finals = [trial for trial in trials if trial.epochs == 2 and trial.ks and trial.within]
    best = {method: max((t for t in finals if t.method == method), key=lambda t: t.val.headline)
            for method in {t.method for t in finals}}
    assert provenance["method"] in best
    assert payload_bytes(model) == min(t.bytes for t in best.values())
    with pytest.raises(ConfigError, match="compress method"):
        api.CompressOptions(max_drop=1.0, methods=("prune",))


def test_compress_refuses_what_it_cannot_do(meta_checkpoint: Path, tmp_path: Path) -> None:
    source = load_checkpoint(meta_checkpoint)
    clustered, provenance = api.cluster(source.model, api.ClusterConfig(k=4))
    path = save_checkpoint(clustered, tmp_path / "c.safetensors", provenance)
    with pytest.raises(Exception, match="already clustered"):
        api.compress(load_checkpoint(path), quick(1.0))
    with pytest.raises(ConfigError, match="choose from: auto, float32"):
        api.CompressOptions(max_drop=1.0, codebook_dtype="int4")
    with pytest.raises(ConfigError, match="unknown search 'bogus'; choose from: fast, thorough"):
        api.CompressOptions(max_drop=1.0, search="bogus")
    for bad in ({"max_drop": -1.0}, {"max_drop": 1.0, "ks": (1, 4)}, {"max_drop": 1.0, "lrs": ()},
                {"max_drop": 1.0, "search_steps": 0}):
        with pytest.raises(ConfigError):
            api.CompressOptions(**bad)  # type: ignore[arg-type]


def test_compress_cli_writes_once_and_reports(meta_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "small.safetensors"
    args = ["compress", str(meta_checkpoint), "--max-drop", "3", "--ks", "2,4,8", "--search-epochs", "1",
            "--epochs", "2", "-o", str(out)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["bytes"] == out.stat().st_size and report["trials"] and report["warnings"] == []
    assert load_checkpoint(out).header.provenance == {"dataset": "digits"}  # lean by default
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "--force" in again.output
    table = runner.invoke(app, [*args, "--force", "--full-metadata"])
    assert table.exit_code == 0 and "within" in table.output and "compressed meta (cluster" in table.output
    assert load_checkpoint(out).header.provenance["trials"]


def test_compress_that_fits_nothing_exits_3_and_says_why(meta_checkpoint: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from kancompress.compress import engine

    monkeypatch.setattr(engine._Run, "within", lambda self, val: False)  # no trial within budget, whatever it is
    out = tmp_path / "none.safetensors"
    args = ["compress", str(meta_checkpoint), "--max-drop", "0", "--ks", "2", "--search-steps", "5",
            "--codebook-dtype", "int8", "--methods", "cluster", "-o", str(out)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 3 and not out.exists()
    report = json.loads(result.stdout)
    assert report["passed"] is False and "no codebook keeps" in report["reason"] and report["trials"]
    text = runner.invoke(app, args)
    assert text.exit_code == 3 and text.output.strip().splitlines()[-1].startswith("error: no codebook keeps")


def test_a_validation_split_too_small_for_the_budget_is_said() -> None:
    from kancompress.tasks import Metrics, budget_resolution_warning

    val = Metrics("classification", 0.3, 135, 0.9, None, None)  # digits: one example is 0.74 points
    assert budget_resolution_warning(val, 3.0) is None
    warning = budget_resolution_warning(val, 0.5)
    assert warning is not None and "135 examples" in warning and "0.74 accuracy points" in warning
    assert budget_resolution_warning(Metrics("regression", 0.1, 10, None, 0.1, 0.9), 0.01) is None
