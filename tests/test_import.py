"""Importing upstream state_dicts: fidelity on the fixtures, and refusal of anything else."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import FIXTURES, fixture_json
from kancompress.errors import FormatError
from kancompress.interop import detect_library, import_source, import_state_dict, read_source


@pytest.mark.parametrize("name,library", [("effkan-digits", "efficient-kan"), ("fastkan-digits", "fastkan")])
def test_pt_and_wrapped_keys(tmp_path: Path, name: str, library: str) -> None:
    state = load_file(str(FIXTURES / f"{name}.safetensors"))
    path = tmp_path / "model.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # DataParallel prefix
    loaded = read_source(path)
    assert detect_library(loaded) == library
    model = import_source(loaded).model
    meta = fixture_json(name)
    assert torch.allclose(model(torch.tensor(meta["probe_inputs"])), torch.tensor(meta["probe_logits"]), atol=1e-5)


def test_adapted_efficient_kan_grid_is_kept() -> None:
    state = load_file(str(FIXTURES / "effkan-digits.safetensors"))
    reference = import_state_dict(dict(state))
    state["layers.0.grid"] = state["layers.0.grid"] * 1.1  # as if update_grid() had moved it
    model = import_state_dict(state)
    assert model.config.basis.stored_grid and "layers.0.basis.grid" in model.state_dict()
    assert torch.equal(model.layers[0].basis.grid, state["layers.0.grid"])
    x = torch.rand(3, 64) * 2 - 1
    assert not torch.allclose(model(x), reference(x))


def test_refuses_bad_state_dicts(tmp_path: Path) -> None:
    state = load_file(str(FIXTURES / "effkan-digits.safetensors"))
    with pytest.raises(FormatError, match="unrecognised state_dict"):
        import_state_dict({"conv.weight": torch.zeros(1)})
    with pytest.raises(FormatError, match="'layers.1.base_weight' is missing"):
        import_state_dict({k: v for k, v in state.items() if k != "layers.1.base_weight"})
    with pytest.raises(FormatError, match="unexpected key 'layers.0.extra'"):
        import_state_dict({**state, "layers.0.extra": torch.zeros(1)})
    with pytest.raises(FormatError, match="'layers.1.base_weight' has shape"):
        import_state_dict({**state, "layers.1.base_weight": torch.zeros(10, 17)})


class Exploit:
    def __reduce__(self):  # runs a command if unpickled unsafely
        return (Path.touch, (Path("/tmp/kancompress-pwned"),))


def test_pickle_with_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    with path.open("wb") as handle:
        pickle.dump({"layers.0.grid": Exploit()}, handle)
    with pytest.raises(FormatError, match="weights_only"):
        read_source(path)
    assert not Path("/tmp/kancompress-pwned").exists()


def test_pykan_import_matches_a_real_pykan_model(tmp_path: Path) -> None:
    kan = pytest.importorskip("kan")
    model = kan.KAN(width=[4, 5, 3], grid=5, k=3, seed=1, auto_save=False, symbolic_enabled=False)
    state = model.state_dict()
    generator = torch.Generator().manual_seed(0)
    for name, tensor in state.items():  # non-trivial affine terms, masks and scales
        if name.startswith(("node_", "subnode_")) or name.endswith(("scale_base", "scale_sp")):
            state[name] = tensor + 0.3 * torch.randn(tensor.shape, generator=generator)
    state["act_fun.0.mask"][1, 2] = 0.0
    model.load_state_dict(state)
    x = torch.rand(16, 4) * 2 - 1
    with torch.no_grad():
        expected = model(x)
    path = tmp_path / "pykan_state"  # pykan's saveckpt writes `{path}_state` with torch.save
    torch.save(model.state_dict(), path)
    imported = import_source(read_source(path)).model
    assert torch.allclose(imported(x), expected.float(), atol=1e-5)
    state["symbolic_fun.1.mask"][0, 0] = 1.0
    with pytest.raises(FormatError, match="symbolic_fun.1.mask"):
        import_state_dict(state)


def efficient_kan_reference(state: dict, x: torch.Tensor, order: int = 3) -> torch.Tensor:
    """efficient-kan's KAN forward from its own state_dict keys (formula of `KANLinear.forward`)."""
    for l in range(len({k.split(".")[1] for k in state})):
        grid = state[f"layers.{l}.grid"]
        u = x.unsqueeze(-1)
        bases = ((u >= grid[:, :-1]) & (u < grid[:, 1:])).to(x.dtype)
        for k in range(1, order + 1):
            bases = ((u - grid[:, : -(k + 1)]) / (grid[:, k:-1] - grid[:, : -(k + 1)]) * bases[..., :-1]
                     + (grid[:, k + 1:] - u) / (grid[:, k + 1:] - grid[:, 1:(-k)]) * bases[..., 1:])
        spline = state[f"layers.{l}.spline_weight"] * state[f"layers.{l}.spline_scaler"][..., None]
        x = (torch.nn.functional.linear(torch.nn.functional.silu(x), state[f"layers.{l}.base_weight"])
             + torch.nn.functional.linear(bases.flatten(1), spline.flatten(1)))
    return x


def fastkan_reference(state: dict, x: torch.Tensor) -> torch.Tensor:
    """FastKAN's forward from its own keys: spline_linear(RBF(LayerNorm(x))) + base_linear(SiLU(x))."""
    for l in range(len({k.split(".")[1] for k in state})):
        p = f"layers.{l}."
        grid = state[p + "rbf.grid"]
        h = (grid[-1] - grid[0]) / (grid.numel() - 1)
        normed = torch.nn.functional.layer_norm(x, (x.shape[1],), state[p + "layernorm.weight"], state[p + "layernorm.bias"])
        rbf = torch.exp(-(((normed[..., None] - grid) / h) ** 2)).flatten(1)
        x = (torch.nn.functional.linear(rbf, state[p + "spline_linear.weight"])
             + torch.nn.functional.linear(torch.nn.functional.silu(x), state[p + "base_linear.weight"],
                                          state[p + "base_linear.bias"]))
    return x


@pytest.mark.parametrize("name,library,reference", [
    ("effkan-digits", "efficient-kan", efficient_kan_reference), ("fastkan-digits", "fastkan", fastkan_reference)])
def test_export_of_clustered_model_runs_upstream(tmp_path: Path, name: str, library: str, reference) -> None:
    from typer.testing import CliRunner

    from kancompress.cli import app
    from kancompress.format.checkpoint import load_checkpoint

    runner = CliRunner()
    dense, clustered, exported = tmp_path / "d.safetensors", tmp_path / "c.safetensors", tmp_path / "e.safetensors"
    assert runner.invoke(app, ["import", str(FIXTURES / f"{name}.safetensors"), "-o", str(dense)]).exit_code == 0
    assert runner.invoke(app, ["cluster", str(dense), "-k", "16", "-o", str(clustered)]).exit_code == 0
    result = runner.invoke(app, ["export", str(clustered), "--to", library, "-o", str(exported)])
    assert result.exit_code == 0, result.output
    state = load_file(str(exported))
    original = load_file(str(FIXTURES / f"{name}.safetensors"))
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in original.items()}
    x = torch.tensor(fixture_json(name)["probe_inputs"])
    with torch.no_grad():
        ours = load_checkpoint(clustered).model(x)
    assert torch.allclose(reference(state, x), ours, atol=1e-5)
    wrong = runner.invoke(app, ["export", str(clustered), "--to", "fastkan" if library == "efficient-kan" else
                                "efficient-kan", "-o", str(tmp_path / "w.safetensors")])
    assert wrong.exit_code == 1 and "export to" in wrong.output


def test_chebykan_import_reproduces_accuracy_and_runs_the_pipeline(tmp_path: Path) -> None:
    """The README-shaped ChebyKAN (LayerNorms between layers) imports to the same test accuracy, then clusters,
    fine-tunes and evaluates like any checkpoint."""
    from typer.testing import CliRunner

    from kancompress.cli import app
    from kancompress.format.checkpoint import load_checkpoint
    from kancompress.data import load_dataset
    from kancompress.train import evaluate

    meta = fixture_json("chebykan-digits")
    runner = CliRunner()
    dense, clustered, tuned = (tmp_path / f"{n}.safetensors" for n in ("d", "c", "t"))
    result = runner.invoke(app, ["import", str(FIXTURES / "chebykan-digits.safetensors"), "--from", "chebykan",
                                 "--dataset", "digits", "-o", str(dense)])
    assert result.exit_code == 0, result.output
    model = load_checkpoint(dense).model
    assert model.config.model == "chebykan" and model.config.norm_between
    data = load_dataset("digits")
    accuracy = evaluate(model, data.test_x, data.test_y).accuracy
    assert accuracy == pytest.approx(meta["test_accuracy"], abs=1e-9)
    assert runner.invoke(app, ["cluster", str(dense), "-k", "16", "-o", str(clustered)]).exit_code == 0
    result = runner.invoke(app, ["finetune", str(clustered), "--epochs", "1", "-o", str(tuned)])
    assert result.exit_code == 0, result.output
    assert evaluate(load_checkpoint(tuned).model, data.test_x, data.test_y).accuracy > 0.5


def test_chebykan_import_places_a_single_layernorm_by_its_width() -> None:
    state = load_file(str(FIXTURES / "chebykan-digits.safetensors"))
    del state["ln2.weight"], state["ln2.bias"]
    model = import_state_dict(state, "chebykan")
    assert model.config.layer_norms == (1,) and not model.config.norm_between
