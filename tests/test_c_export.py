"""`export --to c`: the generated C99 compiles warning-free with the system compiler and matches the model to 1e-4
of its output scale, for every basis and kind, every fully-connected golden file (codings, codebook precisions,
stored grids, norms, multiplication nodes, data transforms), and the driver reads and writes float32 rows."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import tiny_model
from kancompress.cli import app
from kancompress.config import MODEL_NAMES
from kancompress.format.checkpoint import load_checkpoint
from kancompress.interop.arrays import model_arrays
from kancompress.interop.c_export import render_c

COMPILER = shutil.which("gcc") or shutil.which("cc")
pytestmark = pytest.mark.skipif(COMPILER is None, reason="no C compiler (gcc or cc) on this machine")
GOLDEN = Path(__file__).parent / "golden"
FC_GOLDEN = sorted(name for name, entry in json.loads((GOLDEN / "manifest.json").read_text()).items()
                   if "-fc-" in name)
FLAGS = ["-O2", "-std=c99", "-Wall", "-Wextra", "-Werror"]


def build(files: dict[str, str], folder: Path, name: str) -> Path:
    for file, text in files.items():
        (folder / file).write_text(text)
    binary = folder / "model"
    result = subprocess.run([COMPILER, *FLAGS, str(folder / f"{name}.c"), str(folder / "main.c"), "-lm", "-o",
                             str(binary)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return binary


def run_driver(binary: Path, x: torch.Tensor, outputs: int) -> np.ndarray:
    result = subprocess.run([str(binary)], input=x.numpy().astype("<f4").tobytes(), capture_output=True)
    assert result.returncode == 0, result.stderr
    return np.frombuffer(result.stdout, dtype="<f4").reshape(x.shape[0], outputs)


def assert_matches(model: torch.nn.Module, binary: Path, x: torch.Tensor) -> None:
    with torch.no_grad():
        expected = model.eval()(x).double().numpy()
    got = run_driver(binary, x, expected.shape[1])
    assert np.abs(got - expected).max() <= 1e-4 * max(np.abs(expected).max(), 1e-6)


@pytest.mark.parametrize("kind", ["dense", "meta", "clustered"])
@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_every_basis_and_kind(tmp_path: Path, model_name: str, kind: str) -> None:
    model = tiny_model(model_name, kind, (6, 5, 3))
    binary = build(render_c(model_arrays(model), "kan").files, tmp_path, "kan")
    assert_matches(model, binary, torch.rand(25, 6) * 2.4 - 1.2)


@pytest.mark.parametrize("name", FC_GOLDEN)
def test_every_fully_connected_golden_file(tmp_path: Path, name: str) -> None:
    """Codings (packed, rANS, context: re-packed), codebook precisions (float32/16, bfloat16, int8), stored and
    shared grids, LayerNorms anywhere, multiplication nodes, wavelets, regression data transforms."""
    entry = json.loads((GOLDEN / "manifest.json").read_text())[name]
    model = load_checkpoint(GOLDEN / entry["file"]).model
    binary = build(render_c(model_arrays(model), "golden").files, tmp_path, "golden")
    assert_matches(model, binary, load_file(str(GOLDEN / "probes.safetensors"))[f"{name}.x"])


@pytest.mark.parametrize("wavelet", ["morlet", "dog", "meyer", "shannon"])
def test_every_wavelet(tmp_path: Path, wavelet: str) -> None:
    import dataclasses

    from kancompress.config import default_config
    from kancompress.models import build_model

    base = default_config("wavkan", (6, 5, 3))
    model = build_model(dataclasses.replace(base, basis=dataclasses.replace(base.basis, wavelet=wavelet)))
    binary = build(render_c(model_arrays(model), "w").files, tmp_path, "w")
    assert_matches(model, binary, torch.rand(25, 6) * 4 - 2)


def test_cli_writes_a_folder_once_and_the_driver_refuses_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    dense, clustered, out = tmp_path / "d.safetensors", tmp_path / "small.safetensors", tmp_path / "c"
    assert runner.invoke(app, ["train", "--hidden", "8", "--epochs", "1", "-o", str(dense)]).exit_code == 0
    assert runner.invoke(app, ["cluster", str(dense), "-k", "8", "--codebook-dtype", "int8", "-o",
                               str(clustered)]).exit_code == 0
    result = runner.invoke(app, ["export", str(clustered), "--to", "c", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["main.c", "small.c", "small.h"]
    assert "#define SMALL_INPUTS 64" in (out / "small.h").read_text()
    again = runner.invoke(app, ["export", str(clustered), "--to", "c", "-o", str(out)])
    assert again.exit_code == 1 and "--force" in again.output
    binary = build({}, out, "small")
    x = torch.rand(3, 64) * 2 - 1
    assert_matches(load_checkpoint(clustered).model, binary, x)
    x[1, 5] = float("nan")
    bad = subprocess.run([str(binary)], input=x.numpy().astype("<f4").tobytes(), capture_output=True)
    assert bad.returncode == 1 and b"not a finite number" in bad.stderr


def test_conv_models_are_refused_in_one_line(tmp_path: Path) -> None:
    golden = GOLDEN / "v2-conv-kan-packed.safetensors"
    result = CliRunner().invoke(app, ["export", str(golden), "--to", "c", "-o", str(tmp_path / "c")])
    assert result.exit_code == 1 and "only fully-connected models" in result.output
    assert not (tmp_path / "c").exists()


ARM_GCC, QEMU_ARM = shutil.which("arm-linux-gnueabihf-gcc"), shutil.which("qemu-arm")


@pytest.mark.skipif(ARM_GCC is None or QEMU_ARM is None,
                    reason="32-bit ARM needs Debian's gcc-arm-linux-gnueabihf (or crossbuild-essential-armhf) and "
                           "qemu-user")
@pytest.mark.parametrize("name", ["v4-fc-kan-context-int8", "v6-fc-kan-multnodes-rans-int8",
                                  "v6-fc-wavkan-smallest-float16"])
def test_the_driver_runs_on_32_bit_arm(tmp_path: Path, name: str) -> None:
    """Cross-compiled for armhf (static), run under qemu-user: the same outputs to 1e-4."""
    entry = json.loads((GOLDEN / "manifest.json").read_text())[name]
    model = load_checkpoint(GOLDEN / entry["file"]).model.eval()
    for file, text in render_c(model_arrays(model), "arm").files.items():
        (tmp_path / file).write_text(text)
    binary = tmp_path / "arm-model"
    built = subprocess.run([str(ARM_GCC), *FLAGS, "-static", str(tmp_path / "arm.c"), str(tmp_path / "main.c"),
                            "-lm", "-o", str(binary)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    x = load_file(str(GOLDEN / "probes.safetensors"))[f"{name}.x"]
    result = subprocess.run([str(QEMU_ARM), str(binary)], input=x.numpy().astype("<f4").tobytes(),
                            capture_output=True)
    assert result.returncode == 0, result.stderr
    with torch.no_grad():
        expected = model(x).double().numpy()
    got = np.frombuffer(result.stdout, dtype="<f4").reshape(expected.shape)
    assert np.abs(got - expected).max() <= 1e-4 * max(np.abs(expected).max(), 1e-6)
