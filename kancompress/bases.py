"""Basis functions: one small module per basis, all with the same contract.

`forward(x)` maps `x` of shape (..., in) to the basis values of shape (..., in, num_basis). A basis owns no
per-edge weights; layers combine its output with one coefficient tensor. Grids are buffers so they travel in
the state_dict (an imported efficient-kan grid may be per-input and non-uniform).
"""

from __future__ import annotations

import torch
from torch import nn

from kancompress.config import ModelConfig


class BSplineBasis(nn.Module):
    """Cox–de Boor B-splines of order k on a per-input grid, exactly as efficient-kan's `b_splines`.

    Grid: `arange(-k, G+k+1)·h + lo` with `h = (hi - lo)/G`, one row per input (in, G+2k+1). Intervals are
    half-open (`g[j] <= x < g[j+1]`) and the denominators carry no epsilon, so a value outside
    `[grid[0], grid[-1])` gets an all-zero basis.
    """

    def __init__(
        self, in_features: int, grid_size: int, spline_order: int, grid_min: float, grid_max: float, stored: bool
    ):
        super().__init__()
        self.spline_order = spline_order
        self.num_basis = grid_size + spline_order
        h = (grid_max - grid_min) / grid_size
        knots = torch.arange(-spline_order, grid_size + spline_order + 1, dtype=torch.float32) * h + grid_min
        # The uniform grid follows from the config, so it is stored only when it was adapted per input.
        self.register_buffer("grid", knots.expand(in_features, -1).contiguous(), persistent=stored)  # (in, G+2k+1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.grid  # (in, G+2k+1)
        x = x.unsqueeze(-1)  # (..., in, 1)
        bases = ((x >= g[:, :-1]) & (x < g[:, 1:])).to(x.dtype)  # (..., in, G+2k)
        for k in range(1, self.spline_order + 1):
            left = (x - g[:, : -(k + 1)]) / (g[:, k:-1] - g[:, : -(k + 1)]) * bases[..., :-1]
            right = (g[:, k + 1 :] - x) / (g[:, k + 1 :] - g[:, 1:(-k)]) * bases[..., 1:]
            bases = left + right  # (..., in, G+2k-k)
        return bases  # (..., in, G+k)


class RBFBasis(nn.Module):
    """Gaussian radial basis functions, FastKAN's `RadialBasisFunction`: exp(-((x - c_g)/h)^2).

    Centres `linspace(lo, hi, G)`; width `h` defaults to `(hi - lo)/(G - 1)` (not stored upstream).
    """

    def __init__(self, grid_size: int, grid_min: float, grid_max: float, denominator: float | None):
        super().__init__()
        self.num_basis = grid_size
        self.denominator = float(denominator or (grid_max - grid_min) / (grid_size - 1))
        self.register_buffer("grid", torch.linspace(grid_min, grid_max, grid_size), persistent=False)  # (G,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-(((x.unsqueeze(-1) - self.grid) / self.denominator) ** 2))  # (..., in, G)


class GramBasis(nn.Module):
    """Gram polynomials of tanh(x) with a learned per-layer beta, each passed through SiLU (torch-conv-kan KAGN).

    P0 = 1, P1 = t, P_m = t·P_{m-1} - β(m-1, m)·P_{m-2} with t = tanh(x) and
    β(n, m) = ((m+n)(m-n)n² / (m²/(4n²-1)))·beta_weights[n], as written in `GRAMLayer.beta`.
    """

    def __init__(self, degree: int):
        super().__init__()
        self.degree = degree
        self.num_basis = degree + 1
        self.beta_weights = nn.Parameter(torch.zeros(degree + 1))  # (D+1,), shared by every edge of the layer

    def reset_parameters(self, in_features: int) -> None:
        nn.init.normal_(self.beta_weights, mean=0.0, std=1.0 / (in_features * (self.degree + 1.0)))

    def beta(self, n: int, m: int) -> torch.Tensor:
        return ((m + n) * (m - n) * n**2) / (m**2 / (4.0 * n**2 - 1.0)) * self.beta_weights[n]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_tanh(torch.tanh(x))

    def from_tanh(self, t: torch.Tensor) -> torch.Tensor:
        """The basis given t = tanh(x) (conv layers apply dropout to t first, as torch-conv-kan does)."""
        p0 = torch.ones_like(t)
        polys = [p0]
        if self.degree >= 1:
            p1 = t
            polys.append(p1)
            for m in range(2, self.degree + 1):
                p0, p1 = p1, t * p1 - self.beta(m - 1, m) * p0
                polys.append(p1)
        return nn.functional.silu(torch.stack(polys, dim=-1))  # (..., in, D+1)


def build_basis(config: ModelConfig, in_features: int) -> nn.Module:
    """The basis module of one layer with `in_features` inputs."""
    b = config.basis
    if config.basis_name == "bspline":
        return BSplineBasis(in_features, b.grid_size, b.spline_order, b.grid_min, b.grid_max, b.stored_grid)
    if config.basis_name == "rbf":
        return RBFBasis(b.grid_size, b.grid_min, b.grid_max, b.denominator)
    basis = GramBasis(b.degree)
    basis.reset_parameters(in_features)
    return basis
