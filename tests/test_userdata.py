"""Your model, your data: data files of every kind, both tasks, the regression pipeline, bad data refused."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from typer.testing import CliRunner

from kancompress import api, tasks
from kancompress.cli import app
from kancompress.config import TrainConfig
from kancompress.data import load_dataset
from kancompress.errors import DataError
from kancompress.feynman import EQUATIONS, equation, feynman_dataset
from kancompress.format.checkpoint import load_checkpoint
from kancompress.userdata import dataset_from_arrays, load_data_file

runner = CliRunner()


def regression_arrays(n: int = 240, seed: int = 0) -> dict[str, np.ndarray]:
    """y = sin(x0) + x1² (two outputs: y and -y), raw inputs far from [-1, 1]."""
    rng = np.random.default_rng(seed)
    x = rng.uniform([0, -3, 100], [3, 3, 200], size=(n, 3)).astype(np.float32)
    y = (np.sin(x[:, 0]) + x[:, 1] ** 2).astype(np.float32)
    return {"x": x, "y": np.stack([y, -y], axis=1)}


def classification_arrays(n: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return {"x": x, "y": (x[:, 0] + x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0.5).astype(np.int64)}


def write(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    elif path.suffix == ".safetensors":
        save_file(arrays, str(path))
    elif path.suffix == ".pt":
        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, path)
    else:
        x, y = arrays["x"], arrays["y"]
        columns = [f"f{i}" for i in range(x.shape[1])] + ["target"]
        rows = [",".join(columns)] + [",".join(map(str, [*row, label])) for row, label in zip(x.tolist(), y.tolist())]
        path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("suffix", [".npz", ".safetensors", ".pt"])
@pytest.mark.parametrize("layout", ["xy", "splits", "pykan"])
def test_array_files_of_every_layout(tmp_path: Path, suffix: str, layout: str) -> None:
    arrays = regression_arrays()
    if layout == "splits":
        arrays = {"train_x": arrays["x"][:200], "train_y": arrays["y"][:200], "test_x": arrays["x"][200:],
                  "test_y": arrays["y"][200:]}
    elif layout == "pykan":
        arrays = {"train_input": arrays["x"][:200], "train_label": arrays["y"][:200],
                  "test_input": arrays["x"][200:], "test_label": arrays["y"][200:]}
    data = load_data_file(write(tmp_path / f"d{suffix}", arrays))
    assert data.task == "regression" and data.num_outputs == 2 and data.num_features == 3
    assert data.test_x.shape[0] == (48 if layout == "xy" else 40)  # x/y: a seeded 80/20 split
    assert data.train_x.shape[0] + data.test_x.shape[0] == 240 and not data.prescaled


def test_csv_with_target_columns_and_task_inference(tmp_path: Path) -> None:
    classes = load_data_file(write(tmp_path / "c.csv", classification_arrays()), target="target")
    assert classes.task == "classification" and classes.num_classes == 4 and classes.num_features == 4
    forced = load_data_file(tmp_path / "c.csv", target="target", task="regression")
    assert forced.task == "regression" and forced.train_y.dtype == torch.float32
    arrays = regression_arrays()
    reg = load_data_file(write(tmp_path / "r.csv", {"x": arrays["x"], "y": arrays["y"][:, 0]}), target="target")
    assert reg.task == "regression" and reg.num_outputs == 1


def test_images_as_arrays_work_for_conv_models() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(60, 8, 8)).astype(np.float32)  # (N, H, W) -> (N, 1, H, W)
    y = (x.mean(axis=(1, 2)) > 127.5).astype(np.int64)
    data = dataset_from_arrays(x[:40], y[:40], x[40:], y[40:])
    assert data.input_shape == (1, 8, 8)
    options = api.TrainOptions.build(model="gramkan", conv=True, channels=(4, 4), train=TrainConfig(epochs=1))
    result = api.train(options, data)
    assert result.model.config.input_affine and result.model.normalize is not None
    assert result.test.accuracy is not None


@pytest.mark.parametrize("bad,message", [
    ({"x": np.array([[1.0, np.nan]] * 10), "y": np.arange(10) % 2}, "NaN or infinite"),
    ({"x": np.ones((10, 2)), "y": np.arange(9) % 2}, "x has 10 rows but y has 9"),
    ({"x": np.ones((10, 2)), "y": -(np.arange(10) % 2)}, "negative class label"),
    ({"train_x": np.ones((0, 2)), "train_y": np.zeros(0, np.int64), "test_x": np.ones((3, 2)),
      "test_y": np.zeros(3, np.int64)}, "train split is empty"),
    ({"a": np.ones(3)}, "expected arrays train_x"),
])
def test_bad_arrays_are_refused_in_one_line(tmp_path: Path, bad: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_data_file(write(tmp_path / "bad.npz", bad))


def test_bad_csv_and_code_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("a,b,label\n1,2,0\n3,x,1\n")
    with pytest.raises(DataError, match="'x' is not a number"):
        load_data_file(path, target="label")
    with pytest.raises(DataError, match="no column 'y'"):
        load_data_file(path, target="y")
    with pytest.raises(DataError, match="needs --target"):
        load_data_file(path)

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (tmp_path / "ran",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(DataError, match="never run"):
        load_data_file(evil)
    assert not (tmp_path / "ran").exists()
    with pytest.raises(DataError, match="non-integer class labels"):
        dataset_from_arrays(np.ones((4, 2)), np.array([0.5, 1, 0, 1]), np.ones((2, 2)), np.array([0, 1]),
                            task="classification")


def test_feynman_equations_follow_their_formulas_and_ranges() -> None:
    assert len(EQUATIONS) == 120
    for name in ("I.6.20a", "I.8.4", "I.9.18", "I.12.5", "I.15.3x"):
        eq = equation(name)
        train_x, train_y, test_x, test_y = feynman_dataset(name, 300, 100, seed=3)
        assert train_x.shape == (300, len(eq.variables)) and test_y.shape == (100, 1)
        for column, (low, high) in enumerate(eq.ranges):
            assert low <= train_x[:, column].min() and train_x[:, column].max() <= high
        assert np.allclose(train_y[:, 0], eq(train_x.astype(np.float64)), rtol=1e-5, atol=1e-6)
    x = np.array([[0.3, -0.2, 1.0, 0.5]])  # I.15.3x: (x - u·t)/sqrt(1 - u²/c²), hand-computed
    assert equation("I.15.3x")(x)[0] == pytest.approx((0.3 + 0.2 * 1.0) / np.sqrt(1 - 0.04 / 0.25))
    assert equation("1").name == "I.6.20a"
    with pytest.raises(DataError, match="unknown Feynman equation"):
        equation("I.99.99")
    a, b = load_dataset("feynman:I.8.4"), load_dataset("feynman:I.8.4")
    assert torch.equal(a.train_x, b.train_x) and a.task == "regression"


def test_regression_metrics_match_hand_computation() -> None:
    outputs = torch.tensor([[1.0, 2.0], [3.0, 5.0], [2.0, 0.0]])
    targets = torch.tensor([[1.5, 2.0], [2.0, 4.0], [2.5, 1.0]])
    metrics = tasks.metrics_from_sums("regression", tasks.batch_sums("regression", outputs, targets, None))
    residual = (outputs - targets).double()
    assert metrics.mse == pytest.approx(float((residual**2).mean()))
    r2 = [1 - float((residual[:, j] ** 2).sum()) / float(((targets[:, j] - targets[:, j].mean()) ** 2).sum())
          for j in range(2)]
    assert metrics.r2 == pytest.approx(sum(r2) / 2) and metrics.rmse == pytest.approx(metrics.mse**0.5)


def test_regression_pipeline_in_the_users_units(tmp_path: Path) -> None:
    """train -> cluster -> finetune -> eval on a raw-unit regression file; metrics in the data's units."""
    data_path = write(tmp_path / "r.npz", regression_arrays(600))
    paths = {name: tmp_path / f"{name}.safetensors" for name in ("m", "c", "f")}
    result = runner.invoke(app, ["train", "--meta", "--data", str(data_path), "--hidden", "8", "--epochs", "40",
                                 "--lr", "1e-2", "--lr-meta", "1e-2", "--lr-embed", "1e-2", "-o", str(paths["m"])])
    assert result.exit_code == 0, result.output
    trained = json.loads(runner.invoke(app, ["eval", str(paths["m"]), "--json"]).output)
    assert trained["task"] == "regression" and trained["r2"] > 0.8
    variance = float(regression_arrays(600)["y"].var())
    assert trained["mse"] < 0.2 * variance  # in the targets' units (they span ~0..10)
    result = runner.invoke(app, ["cluster", str(paths["m"]), "--max-drop", "0.5", "-o", str(paths["c"])])
    assert result.exit_code == 0, result.output
    assert "validation mse" in result.output
    result = runner.invoke(app, ["finetune", str(paths["c"]), "--epochs", "3", "--lr", "1e-3", "-o", str(paths["f"])])
    assert result.exit_code == 0, result.output
    tuned = json.loads(runner.invoke(app, ["eval", str(paths["f"]), "--json"]).output)
    assert tuned["r2"] > 0.5
    header = load_checkpoint(paths["f"]).header
    assert header.version == 8 and header.provenance["data"]["file"] == str(data_path.resolve())
    # Raw inputs in, user units out: the stored transform is part of the model.
    model = load_checkpoint(paths["m"]).model
    x = torch.from_numpy(regression_arrays(5, seed=9)["x"])
    assert model(x).shape == (5, 2)


def test_task_and_width_mismatches_are_one_line_errors(tmp_path: Path) -> None:
    result = api.train(api.TrainOptions.build(model="kan", hidden=(4,), train=TrainConfig(epochs=1)))
    from kancompress.format.checkpoint import save_checkpoint

    path = save_checkpoint(result.model, tmp_path / "digits.safetensors", result.provenance)
    regression = write(tmp_path / "r.npz", regression_arrays())
    out = runner.invoke(app, ["eval", str(path), "--data", str(regression)])
    assert out.exit_code == 1 and "classification model" in out.output
    classes = write(tmp_path / "c.npz", classification_arrays())
    out = runner.invoke(app, ["eval", str(path), "--data", str(classes)])
    assert out.exit_code == 1 and "takes 64 inputs" in out.output


def test_pykan_round_trip_on_a_feynman_equation(tmp_path: Path) -> None:
    """A KAN trained with pykan on I.12.5 (q2·Ef), saved with pykan's dataset dict, imported as a regression model,
    clustered, fine-tuned with --data and evaluated: fine-tuning recovers what clustering cost."""
    kan = pytest.importorskip("kan")
    train_x, train_y, test_x, test_y = (torch.from_numpy(a) for a in feynman_dataset("I.12.5", 600, 200))
    dataset = {"train_input": train_x, "train_label": train_y, "test_input": test_x, "test_label": test_y}
    data_path = tmp_path / "feynman.pt"
    torch.save(dataset, data_path)
    torch.manual_seed(0)
    model = kan.KAN(width=[2, 6, 1], grid=5, k=3, seed=0, auto_save=False, symbolic_enabled=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = torch.nn.functional.mse_loss(model(train_x), train_y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        pykan_mse = float(torch.nn.functional.mse_loss(model(test_x), test_y))
    state = tmp_path / "model_state"
    torch.save(model.state_dict(), state)
    paths = {name: tmp_path / f"{name}.safetensors" for name in ("i", "c", "f")}
    result = runner.invoke(app, ["import", str(state), "--data", str(data_path), "-o", str(paths["i"])])
    assert result.exit_code == 0, result.output
    imported = json.loads(runner.invoke(app, ["eval", str(paths["i"]), "--json"]).output)
    assert imported["task"] == "regression" and imported["mse"] == pytest.approx(pykan_mse, rel=1e-4)
    assert runner.invoke(app, ["cluster", str(paths["i"]), "-k", "2", "-o", str(paths["c"])]).exit_code == 0
    clustered = json.loads(runner.invoke(app, ["eval", str(paths["c"]), "--json"]).output)
    result = runner.invoke(app, ["finetune", str(paths["c"]), "--data", str(data_path), "--epochs", "20", "--lr",
                                 "1e-2", "-o", str(paths["f"])])
    assert result.exit_code == 0, result.output
    tuned = json.loads(runner.invoke(app, ["eval", str(paths["f"]), "--json"]).output)
    assert tuned["mse"] < clustered["mse"]


def test_image_arrays_map_per_channel_like_the_built_in_scaling() -> None:
    """0..255 images into an FC model: each pixel takes its channel's transform, x/255·2 - 1, as built-in data."""
    from kancompress.config import default_config
    from kancompress.models import build_model

    x = torch.tensor([[[[0.0, 255.0], [51.0, 102.0]]], [[[255.0, 0.0], [204.0, 153.0]]]])  # (2, 1, 2, 2)
    model = build_model(default_config("kan", (4, 3, 2), input_affine=True))
    assert model.normalize is not None
    model.normalize.fit(x, None)
    mapped = model.normalize.inputs(x.flatten(1))
    assert torch.allclose(mapped, x.flatten(1) / 255 * 2 - 1, atol=1e-6)


def test_export_refuses_models_with_a_stored_data_transform(tmp_path: Path) -> None:
    data_path = write(tmp_path / "r.npz", regression_arrays())
    model = tmp_path / "m.safetensors"
    assert runner.invoke(app, ["train", "--data", str(data_path), "--epochs", "1", "-o", str(model)]).exit_code == 0
    result = runner.invoke(app, ["export", str(model), "--to", "efficient-kan", "-o", str(tmp_path / "e.safetensors")])
    assert result.exit_code == 1 and "stored data transform" in result.output
    assert not (tmp_path / "e.safetensors").exists()
