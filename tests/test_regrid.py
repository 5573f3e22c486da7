"""Re-gridding adapted B-spline grids (`kancompress.regrid`), per-layer grid ranges in the config and the file,
and `compress` on a checkpoint with adapted grids."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from conftest import rewrite_checkpoint
from kancompress import api
from kancompress.config import ModelConfig, TrainConfig, default_config
from kancompress.errors import ConfigError, FormatError
from kancompress.format.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from kancompress.format.header import read_header
from kancompress.models import KANModel, build_model
from kancompress.regrid import STAY_RIDGE, has_adapted_grid, regrid
from kancompress.weighting import layer_inputs


def stored_grid_model(widths: tuple[int, ...] = (6, 5, 3), seed: int = 0) -> KANModel:
    config = default_config("kan", widths)
    config = dataclasses.replace(config, basis=dataclasses.replace(config.basis, stored_grid=True))
    torch.manual_seed(seed)
    model = build_model(config)
    with torch.no_grad():
        for vectors in model.dense_edges().vectors:
            vectors.normal_(0, 0.5)
    return model


def samples(n: int = 3000, width: int = 6, seed: int = 0) -> torch.Tensor:
    x = torch.rand(n, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    x[0], x[1] = -1.0, 1.0  # the data span [-1, 1] exactly
    return x


def uniform_knots(lo: float, hi: float, grid_size: int = 5, order: int = 3) -> torch.Tensor:
    step = (hi - lo) / grid_size
    return torch.arange(-order, grid_size + order + 1, dtype=torch.float32) * step + lo  # (G+2k+1,)


@torch.no_grad()
def test_a_grid_that_is_already_uniform_over_the_data_comes_back_unchanged() -> None:
    """Oracle: when every stored grid is the uniform grid over its layer's input range, the new basis is the old
    one, the least squares are exact and the outputs are the same."""
    model = stored_grid_model()
    x = samples()
    first = model.fc_layers()[0]
    first.basis.grid.copy_(uniform_knots(-1.0, 1.0).expand_as(first.basis.grid))
    hidden = layer_inputs(model, x)[1]
    second = model.fc_layers()[1]
    second.basis.grid.copy_(uniform_knots(float(hidden.min()), float(hidden.max())).expand_as(second.basis.grid))
    result = regrid(model, x)
    assert not result.config.basis.stored_grid
    assert result.config.grid_ranges is not None
    assert result.config.grid_ranges[0] == pytest.approx((-1.0, 1.0))
    torch.testing.assert_close(result(x), model(x), rtol=1e-4, atol=1e-4)
    for old, new in zip(model.edge_vectors(), result.edge_vectors()):
        torch.testing.assert_close(new, old, rtol=1e-3, atol=1e-3)


def quantile_knots(x: torch.Tensor, grid_size: int = 5, order: int = 3) -> torch.Tensor:
    """Per input, knots at G+1 evenly spaced quantiles of its samples, extended by k steps each side: the grids
    update_grid leaves (x: (N, in) -> (in, G+2k+1))."""
    inner = torch.quantile(x, torch.linspace(0, 1, grid_size + 1), dim=0)  # (G+1, in)
    step = (inner[-1] - inner[0]) / grid_size
    return torch.cat([inner[:1] - step * torch.arange(order, 0, -1).unsqueeze(1), inner,
                      inner[-1:] + step * torch.arange(1, order + 1).unsqueeze(1)]).T


@torch.no_grad()
def test_adapted_grids_are_refitted_by_least_squares_and_the_file_drops_them(tmp_path: Path) -> None:
    model = stored_grid_model((16, 8, 3))
    x = torch.tanh(1.5 * torch.randn(4000, 16, generator=torch.Generator().manual_seed(2)))  # skewed inputs
    for layer, seen in zip(model.fc_layers(), layer_inputs(model, x)):
        layer.basis.grid.copy_(quantile_knots(seen))
    result = regrid(model, x)
    # Oracle: layer 0's new coefficients solve the normal equations B'ᵀ(B'c' - Bc) + λ(c' - c) = 0 on the samples,
    # λ = STAY_RIDGE · the mean diagonal of B'ᵀB' (the prior points' share of it, 0.1 %, is left out).
    old, new = model.fc_layers()[0], result.fc_layers()[0]
    nb = old.num_basis
    before, after = old.basis(x).double(), new.basis(x).double()  # (N, in, nb)
    c_old = model.edge_vectors()[0].view(8, 16, -1)[..., :nb].double()  # (out, in, nb)
    c_new = result.edge_vectors()[0].view(8, 16, -1)[..., :nb].double()
    residual = torch.einsum("nib,oib->nio", after, c_new) - torch.einsum("nib,oib->nio", before, c_old)
    ridge = STAY_RIDGE * torch.einsum("nia,nia->ia", after, after).mean()
    gradient = torch.einsum("nia,nio->oia", after, residual) + ridge * (c_new - c_old)  # (out, in, nb)
    scale = torch.einsum("nia,nio->oia", after, torch.einsum("nib,oib->nio", before, c_old)).abs().max()
    assert float(gradient.abs().max()) < 1e-4 * float(scale)
    # Much closer than keeping the coefficients and swapping the grid.
    reference = model(x)
    naive = build_model(result.config)
    naive.load_state_dict(model.state_dict(), strict=False)
    assert (result(x) - reference).norm() < 0.5 * (naive(x) - reference).norm()
    dense = save_checkpoint(model, tmp_path / "adapted.safetensors")
    path = save_checkpoint(result, tmp_path / "regridded.safetensors")
    header = read_header(path)
    assert header.version == 4 and header.config.grid_ranges == result.config.grid_ranges
    assert not any(name.endswith(".grid") for name in header.tensors)
    assert dense.stat().st_size - path.stat().st_size >= 4 * (16 + 8) * 12  # two (in, 12) float32 grids gone
    loaded = load_checkpoint(path).model
    assert torch.equal(loaded(x), result(x))
    for layer, (lo, hi) in zip(loaded.fc_layers(), result.config.grid_ranges or ()):
        assert float(layer.basis.grid[0, 3]) == pytest.approx(lo) and float(layer.basis.grid[0, 8]) == pytest.approx(hi)


def test_regrid_refuses_models_without_adapted_grids() -> None:
    plain = build_model(default_config("kan", (6, 5, 3)))
    assert not has_adapted_grid(plain)
    with pytest.raises(ConfigError, match="adapted"):
        regrid(plain, samples())
    with pytest.raises(ConfigError, match="at least 2"):
        regrid(stored_grid_model(), samples()[:1])


@pytest.mark.parametrize("ranges,message", [
    (((-1.0, 1.0),), "one \\[lo, hi\\] per layer"),
    (((-1.0, 1.0), (2.0, 2.0)), "min < max"),
    (((-1.0, 1.0), (0.0, float("inf"))), "finite"),
])
def test_bad_grid_ranges_are_refused(ranges: tuple[tuple[float, float], ...], message: str) -> None:
    config = dataclasses.replace(default_config("kan", (6, 5, 3)), grid_ranges=ranges)
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_grid_ranges_belong_to_fc_bspline_models_and_parse_strictly() -> None:
    ranges = ((-1.0, 1.0), (-3.0, 4.0))
    with pytest.raises(ConfigError, match="grid_ranges is for fully-connected models"):
        dataclasses.replace(default_config("fastkan", (6, 5, 3)), grid_ranges=ranges).validate()
    config = dataclasses.replace(default_config("kan", (6, 5, 3)), grid_ranges=ranges)
    data = config.to_dict()
    assert data["grid_ranges"] == [[-1.0, 1.0], [-3.0, 4.0]] or data["grid_ranges"] == ranges
    assert ModelConfig.from_dict(json.loads(json.dumps(data))) == config
    assert "grid_ranges" not in default_config("kan", (6, 5, 3)).to_dict()  # older files keep their bytes
    for bad in ([[0, 1], "x"], [[0, 1, 2], [0, 1]], [[True, 1.0], [0, 1]], "0,1"):
        with pytest.raises(ConfigError, match="grid_ranges"):
            ModelConfig.from_dict({**data, "grid_ranges": bad})


def test_a_version_3_file_cannot_claim_grid_ranges(tmp_path: Path) -> None:
    from test_codec import _parts

    model = regrid(stored_grid_model(), samples())
    path = save_checkpoint(model, tmp_path / "r.safetensors")
    tensors, metadata = _parts(path)
    assert metadata["format_version"] == "4"
    metadata["format_version"] = "3"
    rewrite_checkpoint(path, tensors, metadata)
    with pytest.raises(FormatError, match="per-layer grid ranges .*needs version 4"):
        read_header(path)


def adapted_checkpoint(adapt: Callable[[KANModel], object]) -> Checkpoint:
    """A briefly trained B-spline KAN on digits, its grids stored and changed by `adapt` (as `update_grid` would),
    saved with its training provenance (so `compress` finds its data and split) and loaded back."""
    result = api.train(api.TrainOptions.build(model="kan", hidden=(8,), train=TrainConfig(epochs=2)))
    model = result.model
    config = dataclasses.replace(model.config, basis=dataclasses.replace(model.config.basis, stored_grid=True))
    adapted = build_model(config)
    adapted.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        adapt(adapted)
    return load_checkpoint(save_checkpoint(adapted, Path(tempfile.mkdtemp()) / "adapted.safetensors",
                                           result.provenance))


def test_compress_regrids_an_adapted_checkpoint_when_asked() -> None:
    source = adapted_checkpoint(lambda model: [layer.basis.grid.mul_(1.05) for layer in model.fc_layers()])
    quick = {"max_drop": 5.0, "ks": (4, 8), "search_epochs": 1, "epochs": 1, "methods": ("cluster",),
             "data_aware": False}
    small, provenance, trials = api.compress(source, api.CompressOptions(**quick, grids="regrid"))  # type: ignore[arg-type]
    assert trials[0].method == "regrid" and not trials[0].ks
    assert provenance["method"] == "regrid+cluster"
    assert small.config.grid_ranges is not None and not small.config.basis.stored_grid
    kept, provenance, trials = api.compress(source, api.CompressOptions(**quick, grids="keep"))  # type: ignore[arg-type]
    assert provenance["method"] == "cluster" and all(trial.method == "cluster" for trial in trials)
    assert kept.config.basis.stored_grid
