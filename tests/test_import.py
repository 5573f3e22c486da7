"""Importing upstream state_dicts: fidelity on the fixtures, and refusal of anything else."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import FIXTURES, fixture_json
from kancompress.errors import FormatError
from kancompress.importers import detect_library, import_state_dict, read_state_dict


@pytest.mark.parametrize("name,library", [("effkan-digits", "efficient-kan"), ("fastkan-digits", "fastkan")])
def test_pt_and_wrapped_keys(tmp_path: Path, name: str, library: str) -> None:
    state = load_file(str(FIXTURES / f"{name}.safetensors"))
    path = tmp_path / "model.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # DataParallel prefix
    loaded = read_state_dict(path)
    assert detect_library(loaded) == library
    model = import_state_dict(loaded)
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
        read_state_dict(path)
    assert not Path("/tmp/kancompress-pwned").exists()
