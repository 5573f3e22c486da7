"""The Python API: options objects own the rules, no hidden side effects, JSON schemas from the library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_model
from kancompress import api
from kancompress.cli import app
from kancompress.config import TrainConfig
from kancompress.errors import ConfigError
from kancompress.format.checkpoint import load_checkpoint, save_checkpoint
from kancompress.format.header import read_header
from kancompress.report import inspect_json

runner = CliRunner()


def test_conv_training_through_the_api_applies_the_stride_rule() -> None:
    """`channels=(4, 8)` gets the paper's strides for two layers (1, 2), as the CLI always did."""
    options = api.TrainOptions.build(model="kan", conv=True, channels=(4, 8), train=TrainConfig(epochs=1))
    assert options.conv is not None and options.conv.strides == (1, 2)
    result = api.train(options)
    assert result.model.config.conv.strides == (1, 2) and result.model.kind == "dense"
    assert api.conv_strides(6) == (1, 2, 2, 1, 1, 1)


@pytest.mark.parametrize("bad,message", [
    ({"lr": 0.0}, "--lr 0.0 must be a positive"), ({"lr_meta": 1e-3}, "need --meta"), ({"model": "jacobikan"}, "unknown model"),
    ({"hidden": ()}, "--hidden"), ({"device": "tpu"}, "device"),
])
def test_train_options_refuse_bad_values(bad: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        api.TrainOptions(**bad)


def test_api_leaves_the_global_rng_and_the_callers_model_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    result = api.train(api.TrainOptions.build(model="kan", meta=True, hidden=(4,), train=TrainConfig(epochs=1)))
    assert torch.equal(torch.get_rng_state(), before)
    clustered, _ = api.cluster(result.model, api.ClusterConfig(k=4))
    path = save_checkpoint(clustered, tmp_path / "c.safetensors", {"dataset": "digits"})
    checkpoint = load_checkpoint(path)
    original = {k: v.clone() for k, v in checkpoint.model.state_dict().items()}
    tuned = api.finetune(checkpoint, api.FinetuneOptions(train=TrainConfig(epochs=1), lr=1e-2))
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(original[k], v) for k, v in checkpoint.model.state_dict().items())
    assert any(not torch.equal(original[k], v) for k, v in tuned.model.state_dict().items())


def test_eval_gives_the_same_numbers_every_run(tmp_path: Path) -> None:
    model = tiny_model("kan", "clustered", (64, 8, 10))
    path = save_checkpoint(model, tmp_path / "c.safetensors", {"dataset": "digits"})
    first = api.evaluation(load_checkpoint(path))
    second = api.evaluation(load_checkpoint(path))
    assert first == second and first["fc_forward"] == {"0": ["decode"], "1": ["decode"]}


def test_inspect_json_names_the_file_format_and_its_own_schema() -> None:
    golden = Path(__file__).parent / "golden"
    for name, version in (("v1-fc-kan-packed", 1), ("v2-fc-kan-packed", 2)):
        data = inspect_json(read_header(golden / f"{name}.safetensors"))
        assert data["format_version"] == version and data["schema_version"] == 1


def _train(path: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["train", "--hidden", "4", "--epochs", "2", "-o", str(path), *extra])
    return result.exit_code, result.output


def test_resume_refuses_conflicting_options_and_applies_more_epochs(tmp_path: Path) -> None:
    from kancompress import runs
    from kancompress.format.state import save_train_state, state_path_for

    path = tmp_path / "m.safetensors"
    states: list[dict] = []
    options = api.TrainOptions.build(model="kan", hidden=(4,), train=TrainConfig(epochs=1))
    api.train(options, on_state=states.append)
    job = runs.Job("train", api.TrainOptions.build(model="kan", hidden=(4,), train=TrainConfig(epochs=2)))
    save_train_state(state_path_for(path), states[-1], job.to_json())
    code, output = _train(path, "--resume", "--model", "gramkan")
    assert code == 1 and "--model gramkan conflicts with the interrupted run (kan)" in output
    code, output = _train(path, "--resume", "--epochs", "3")
    assert code == 0, output
    assert "resuming with the new --epochs" in output
    provenance = read_header(path).provenance
    assert provenance["epochs"] == 3 and provenance["options"]["train"]["epochs"] == 3


def test_resume_without_a_state_starts_afresh_and_finetune_resumes_by_output(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    code, output = _train(path, "--resume")
    assert code == 0 and "starting afresh" in output and path.exists()
    clustered, tuned = tmp_path / "c.safetensors", tmp_path / "t.safetensors"
    assert runner.invoke(app, ["cluster", str(path), "-k", "4", "-o", str(clustered)]).exit_code == 0
    code = runner.invoke(app, ["finetune", str(clustered), "--epochs", "1", "-o", str(tuned), "--resume"]).exit_code
    assert code == 0 and tuned.exists()
    result = runner.invoke(app, ["finetune", "--resume", "-o", str(tmp_path / "none.safetensors")])
    assert result.exit_code == 1 and "give the clustered checkpoint" in result.output


def test_cluster_json_provenance_records_the_real_options(tmp_path: Path) -> None:
    model = tiny_model("kan", "dense", (64, 8, 10))
    dense = save_checkpoint(model, tmp_path / "d.safetensors", {"dataset": "digits"})
    out = tmp_path / "c.safetensors"
    result = runner.invoke(app, ["cluster", str(dense), "--max-drop", "50", "--kmeans", "torch", "--full-metadata", "-o", str(out)])
    assert result.exit_code == 0, result.output
    options = read_header(out).provenance["options"]
    assert options["kmeans"] == "torch" and options["max_drop"] == 50
    result = runner.invoke(app, ["cluster", str(dense), "--max-drop", "1", "-k", "8", "-o", str(tmp_path / "x.st")])
    assert result.exit_code == 1 and "drop -k" in result.output
    assert json.loads(runner.invoke(app, ["inspect", str(out), "--json"]).output)["format_version"] == 8


def test_load_gives_a_ready_module(tmp_path: Path) -> None:
    import kancompress

    model = tiny_model("kan", "clustered", (64, 8, 10))
    path = save_checkpoint(model, tmp_path / "c.safetensors")
    loaded = kancompress.load(path)
    assert isinstance(loaded, torch.nn.Module) and not loaded.training
    x = torch.rand(3, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.eval()(x))
