"""ONNX export: parity with kancompress in onnxruntime for every basis, kind, FC and conv; compressed form kept."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config, tiny_model
from kancompress.cli import app
from kancompress.bases import get_spec
from kancompress.config import MODEL_NAMES, ConvConfig, MetaConfig, default_conv_config
from kancompress.format.bits import index_bits, packed_length
from kancompress.format.checkpoint import checkpoint_bytes, save_checkpoint
from kancompress.models import build_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.filterwarnings("ignore")


def exported(model: torch.nn.Module, image_size: int = 8) -> bytes:
    from kancompress.onnx_export import export_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_onnx(model, image_size)


def conv_model(name: str, kind: str) -> torch.nn.Module:
    config = default_conv_config(name, 2, 3, (4, 4), MetaConfig(d_emb=2) if kind == "meta" else None,
                                 ConvConfig(strides=(1, 2), groups=2))
    model = build_model(config, kind, [3, 3] if kind == "clustered" else None)
    if kind == "clustered":
        for book in model.edges.books():
            book.codebook.data.normal_(0, 0.3)
            book.indices.random_(0, book.k)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("kind", ["dense", "meta", "clustered"])
@pytest.mark.parametrize("arch", ["fc", "conv"])
def test_onnxruntime_matches_kancompress(name: str, kind: str, arch: str) -> None:
    if arch == "conv" and get_spec(name).fc_only:
        pytest.skip(f"{name} has no conv layers")
    model = tiny_model(name, kind, (6, 5, 3)).eval() if arch == "fc" else conv_model(name, kind)
    session = ort.InferenceSession(exported(model))
    shapes = [(7, 6), (1, 6)] if arch == "fc" else [(3, 2, 8, 8), (1, 2, 12, 10)]  # batch (and image) sizes vary
    for shape in shapes:
        x = torch.rand(*shape) * 4 - 2
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert np.abs(got - expected).max() <= 1e-4


@pytest.mark.parametrize("order", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("stored", [False, True])
def test_bspline_graph_for_every_order_and_adapted_grids(order: int, stored: bool) -> None:
    """The uniform grid exports in closed form (orders >= 1), a stored per-input grid (here made non-uniform, as
    `update_grid` leaves it) through the full recursion; both equal kancompress to 1e-4, also outside the grid."""
    import dataclasses

    from kancompress.config import default_config

    config = default_config("kan", (5, 4, 3))
    config = dataclasses.replace(config, basis=dataclasses.replace(config.basis, spline_order=order,
                                                                   stored_grid=stored))
    model = build_model(config).eval()
    torch.manual_seed(order)
    for vectors in model.dense_edges().vectors:
        vectors.data.normal_(0, 0.5)
    if stored:
        for layer in model.fc_layers():
            knots = layer.basis.grid
            knots.copy_(knots + torch.rand_like(knots) * 0.05)  # uneven spacing, still increasing
    x = torch.linspace(-3, 3, 60).reshape(12, 5)
    with torch.no_grad():
        expected = model(x).numpy()
    got = ort.InferenceSession(exported(model)).run(None, {"input": x.numpy()})[0]
    assert np.abs(got - expected).max() <= 1e-4


@pytest.mark.parametrize("k", [2, 3, 5, 16, 17])
def test_indices_of_any_width_unpack_in_the_graph(k: int) -> None:
    """The graph reads the checkpoint's own packed bytes (1 to 5 bits per index here), padding bits included."""
    model = build_model(tiny_config("kan", "clustered", (7, 5, 3)), "clustered", [k, min(k, 15)]).eval()
    for book in model.edges.books():
        book.codebook.data.normal_(0, 0.3)
        book.indices.random_(0, book.k)
    data = exported(model)
    graph = onnx.load_from_string(data).graph
    sizes = {init.name: len(init.raw_data) for init in graph.initializer}
    assert sizes["edges.packed_0"] == packed_length(35, index_bits(k))
    x = torch.rand(4, 7) * 4 - 2
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(ort.InferenceSession(data).run(None, {"input": x.numpy()})[0] - expected).max() <= 1e-4


def test_clustered_graph_keeps_codebooks_and_packed_indices() -> None:
    from kancompress.config import default_config

    model = build_model(default_config("kan", (784, 32, 10)), "clustered", [16, 16])  # the paper's shape, k = 16
    for book in model.edges.books():
        book.codebook.data.normal_(0, 0.1)
        book.indices.random_(0, 16)
    data = exported(model)
    graph = onnx.load_from_string(data).graph
    sizes = {init.name: len(init.raw_data) for init in graph.initializer}
    assert sizes["edges.packed_0"] == 784 * 32 // 2  # 4-bit indices, two per byte
    assert max(sizes.values()) < 784 * 32  # no decoded (n, |w|) float tensor anywhere
    assert any(node.op_type == "Gather" for node in graph.node)
    dense = build_model(default_config("kan", (784, 32, 10)), "dense")
    assert len(data) < 0.05 * len(exported(dense))
    assert len(data) <= 1.25 * len(checkpoint_bytes(model, {}, lean=False))  # issue 15's bound (a version-6 file)


def test_export_cli_to_onnx_and_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    path = save_checkpoint(tiny_model("gramkan", "clustered", (64, 8, 10)), tmp_path / "c.safetensors")
    out = tmp_path / "m.onnx"
    result = runner.invoke(app, ["export", str(path), "--to", "onnx", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert ort.InferenceSession(out.read_bytes()).get_inputs()[0].name == "input"
    wrong = runner.invoke(app, ["export", str(path), "--to", "onnx", "-o", str(tmp_path / "m.safetensors")])
    assert wrong.exit_code == 1 and ".onnx" in wrong.output
    again = runner.invoke(app, ["export", str(path), "--to", "onnx", "-o", str(out)])
    assert again.exit_code == 1 and "--force" in again.output


def test_predict_with_a_checkpoint_and_its_onnx_gives_the_same_classes(tmp_path: Path) -> None:
    """predict on .npy/.npz/.csv inputs, from the .safetensors and from its .onnx: same outputs (1e-4), same
    classes on the whole digits test set; wrong widths and foreign .onnx files are one line."""
    import csv

    from kancompress import api
    from kancompress.config import TrainConfig
    from kancompress.data import load_dataset

    runner = CliRunner()
    result = api.train(api.TrainOptions.build(model="kan", meta=True, hidden=(8,), train=TrainConfig(epochs=3)))
    clustered, provenance = api.cluster(result.model, api.ClusterConfig(k=8))
    ckpt = save_checkpoint(clustered, tmp_path / "c.safetensors", provenance)
    graph = tmp_path / "c.onnx"
    assert runner.invoke(app, ["export", str(ckpt), "--to", "onnx", "-o", str(graph)]).exit_code == 0
    test_x = load_dataset("digits").test_x.numpy()
    np.save(tmp_path / "x.npy", test_x)
    np.savez(tmp_path / "x.npz", x=test_x)
    outputs = {}
    for name, model_path, inputs in (("st", ckpt, "x.npy"), ("onnx", graph, "x.npz")):
        out = tmp_path / f"{name}.csv"
        done = runner.invoke(app, ["predict", str(model_path), "--data", str(tmp_path / inputs), "-o", str(out)])
        assert done.exit_code == 0, done.output
        outputs[name] = list(csv.DictReader(out.open()))
    assert [r["class"] for r in outputs["st"]] == [r["class"] for r in outputs["onnx"]]
    assert len(outputs["st"]) == 450
    first = [float(v) for k, v in outputs["st"][0].items() if k.startswith("output")]
    second = [float(v) for k, v in outputs["onnx"][0].items() if k.startswith("output")]
    assert np.allclose(first, second, atol=1e-4)
    npy = tmp_path / "o.npy"
    assert runner.invoke(app, ["predict", str(graph), "--data", str(tmp_path / "x.npy"), "-o", str(npy)]).exit_code == 0
    assert np.load(npy).shape == (450, 10)
    np.save(tmp_path / "wide.npy", np.zeros((2, 65), dtype=np.float32))
    wrong = runner.invoke(app, ["predict", str(graph), "--data", str(tmp_path / "wide.npy")])
    assert wrong.exit_code == 1 and "takes 64 inputs" in wrong.output
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(b"not onnx")
    bad = runner.invoke(app, ["predict", str(foreign), "--data", str(tmp_path / "x.npy")])
    assert bad.exit_code == 1 and "not a readable ONNX model" in bad.output


@pytest.mark.slow
@pytest.mark.parametrize("name", ["kan", "fastkan", "gramkan"])
def test_onnx_gives_the_same_classes_on_the_whole_fashion_mnist_test_set(name: str) -> None:
    """Issue 15's top-1 parity where Fashion-MNIST is installed: a 784-32-10 MetaKAN (2 epochs), clustered at
    k = 16, run by onnxruntime and by kancompress on all 10,000 test images."""
    from kancompress import api
    from kancompress.config import TrainConfig
    from kancompress.errors import DataError

    try:
        data = api.load_data("fashion-mnist")
    except DataError:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    result = api.train(api.TrainOptions.build(model=name, meta=True, hidden=(32,), train=TrainConfig(epochs=2)),
                       data)
    clustered, _ = api.cluster(result.model, api.ClusterConfig(k=16))
    clustered.eval()
    with torch.no_grad():
        expected = clustered(data.test_x).argmax(dim=1).numpy()
    session = ort.InferenceSession(exported(clustered))
    got = session.run(None, {"input": data.test_x.reshape(len(data.test_x), -1).numpy()})[0].argmax(axis=1)
    assert (got == expected).all()
