"""`kancompress.from_module`: a live model object imported with what its state_dict cannot say (base activation,
module order) read from the object, and checked against its own forward before it is returned."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import kancompress
from kancompress.errors import FormatError


class EfficientKANLinear(nn.Module):
    """efficient-kan's `KANLinear` state and forward (uniform grid, standalone scaler), written from its formula:
    y = base_weight·act(x) + (spline_weight·spline_scaler)·B(x), B by Cox–de Boor on half-open intervals."""

    def __init__(self, in_f: int, out_f: int, base_activation: type[nn.Module], seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.grid_size, self.spline_order = 5, 3
        h = 2 / self.grid_size
        grid = torch.arange(-3, self.grid_size + 4, dtype=torch.float32) * h - 1
        self.register_buffer("grid", grid.expand(in_f, -1).contiguous())
        self.base_weight = nn.Parameter(torch.randn(out_f, in_f, generator=g) * 0.5)
        self.spline_weight = nn.Parameter(torch.randn(out_f, in_f, 8, generator=g) * 0.5)
        self.spline_scaler = nn.Parameter(1 + 0.3 * torch.randn(out_f, in_f, generator=g))
        self.base_activation = base_activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid, u = self.grid, x.unsqueeze(-1)
        bases = ((u >= grid[:, :-1]) & (u < grid[:, 1:])).to(x.dtype)
        for k in range(1, self.spline_order + 1):
            bases = ((u - grid[:, : -(k + 1)]) / (grid[:, k:-1] - grid[:, : -(k + 1)]) * bases[..., :-1]
                     + (grid[:, k + 1:] - u) / (grid[:, k + 1:] - grid[:, 1:(-k)]) * bases[..., 1:])
        spline = self.spline_weight * self.spline_scaler[..., None]
        return F.linear(self.base_activation(x), self.base_weight) + F.linear(bases.flatten(1), spline.flatten(1))


def stack(activation: type[nn.Module], norm: bool = False) -> nn.Sequential:
    parts = [EfficientKANLinear(4, 6, activation, 0)] + ([nn.LayerNorm(6)] if norm else []) + \
            [EfficientKANLinear(6, 3, activation, 1)]
    return nn.Sequential(*parts)


@pytest.mark.parametrize("activation,name", [(nn.SiLU, "silu"), (nn.GELU, "gelu"), (nn.Identity, "identity")])
def test_the_activation_is_read_from_the_module(activation: type[nn.Module], name: str) -> None:
    module = stack(activation, norm=True)
    x = torch.rand(50, 4) * 2.4 - 1.2
    model = kancompress.from_module(module, x)
    assert model.config.base_activation == name and model.config.has_pre_norm(1)
    with torch.no_grad():
        ours, theirs = model(x), module(x)
    assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max()


def test_an_activation_it_cannot_reproduce_is_refused() -> None:
    module = stack(lambda: nn.GELU(approximate="tanh"))  # type: ignore[arg-type,return-value]
    with pytest.raises(FormatError, match="base activation .* is none of"):
        kancompress.from_module(module, torch.rand(10, 4))


def test_a_forward_it_does_not_reproduce_is_refused_with_the_deviation() -> None:
    class Doubled(nn.Sequential):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    module = Doubled(*stack(nn.SiLU))
    with pytest.raises(FormatError, match=r"differs from the module: max deviation .* of the output scale"):
        kancompress.from_module(module, torch.rand(10, 4) * 2 - 1)


def test_pykan_module_with_identity_base_fun() -> None:
    kan = pytest.importorskip("kan")
    module = kan.KAN(width=[3, 5, 2], grid=5, k=3, seed=3, base_fun="identity", auto_save=False)
    x = torch.rand(40, 3) * 2 - 1
    model = kancompress.from_module(module, x)
    assert model.config.base_activation == "identity"
    module.fix_symbolic(0, 1, 2, "x^2", fit_params_bool=False, verbose=False)
    with pytest.raises(FormatError, match="symbolic"):
        kancompress.from_module(module, x)
