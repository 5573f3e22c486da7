"""B-splines (efficient-kan, the paper's KAN): Cox–de Boor on a grid, order k, G intervals; |w| = G + k + 1."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from kancompress.bases.spec import CSource, BasisConfig, BasisSpec, ConvExtras, LearningRates, register, require

if TYPE_CHECKING:
    import torch


@register
class BSpline(BasisSpec):
    """B-splines of order k on a per-input grid, exactly as efficient-kan's `b_splines`.

    Grid: `arange(-k, G+k+1)·h + lo` with `h = (hi - lo)/G`, one row per input (in, G+2k+1). Intervals are
    half-open (`g[j] <= x < g[j+1]`), so a value outside `[grid[0], grid[-1])` gets an all-zero basis.

    A stored (adapted, non-uniform) grid runs efficient-kan's Cox–de Boor recursion over every basis function
    (`cox_de_boor`). The uniform grid derived from the config runs the recursion on the k+1 functions that are
    non-zero on x's knot span only, then places them (`uniform_bsplines`): the same values to rounding, with far
    less memory traffic. `module.uniform = False` forces the full recursion.
    """

    model = "kan"
    basis = "bspline"
    title = "B-spline, efficient-kan"
    fc_defaults = BasisConfig(grid_size=5, spline_order=3, grid_min=-1.0, grid_max=1.0)
    conv_defaults = BasisConfig(grid_size=5, spline_order=3, grid_min=-3.0, grid_max=3.0)  # paper Table 6
    # regression x10: on Feynman I.8.4 and I.12.5 (10,000 steps) x10 gave the plain KAN 1.8x and 3.1x lower
    # validation MSEs than x3, and MetaKAN 1.8x lower on I.8.4 (2x higher on I.12.5); x30 stopped early or diverged
    lr = LearningRates(plain=1e-4, meta=(5e-4, 5e-3), conv_meta=(1e-4, 5e-3, 1e-3), regression=10.0)
    conv = ConvExtras(output="prelu")
    conv_meta_d_emb = 2
    init = "uniform-0.1"
    layer_grid_ranges = True

    def num_basis(self, basis: BasisConfig) -> int:
        return basis.grid_size + basis.spline_order

    def check(self, basis: BasisConfig) -> None:
        require(1 <= basis.grid_size <= 256 and 0 <= basis.spline_order <= 10,
                "bspline needs 1 <= grid_size <= 256 and 0 <= spline_order <= 10")
        require(math.isfinite(basis.grid_min) and math.isfinite(basis.grid_max) and basis.grid_min < basis.grid_max,
                f"grid range [{basis.grid_min}, {basis.grid_max}] must be finite with min < max")

    def stored_tensors(self, basis: BasisConfig, in_features: int) -> dict[str, tuple[int, ...]]:
        knots = basis.grid_size + 2 * basis.spline_order + 1
        return {"grid": (in_features, knots)} if basis.stored_grid else {}

    def setup(self, module: Any, basis: BasisConfig, in_features: int) -> None:
        import torch

        order, size = basis.spline_order, basis.grid_size
        module.spline_order, module.grid_size, module.num_basis = order, size, size + order
        module.uniform = not basis.stored_grid
        module.step = (basis.grid_max - basis.grid_min) / size
        module.first_knot = basis.grid_min - order * module.step
        knots = torch.arange(-order, size + order + 1, dtype=torch.float32) * module.step + basis.grid_min
        # The uniform grid follows from the config, so it is stored only when it was adapted per input.
        module.register_buffer("grid", knots.expand(in_features, -1).contiguous(),  # (in, G+2k+1)
                               persistent=basis.stored_grid)

    def export_constants(self, module: Any) -> dict[str, Any]:
        grid = module.grid.detach().float().cpu().numpy()  # (in, G+2k+1)
        if module.uniform and module.spline_order > 0:
            return {}  # the recurrence needs only the first knot and the step
        return {"knots": grid[:1] if module.uniform else grid}

    def c_source(self, module: Any) -> CSource:
        """Uniform grids: the local recurrence of `uniform_bsplines` (k+1 non-zero functions, no search); stored
        grids: Cox–de Boor on half-open intervals, as `cox_de_boor` (efficient-kan's recursion)."""
        knots, order = module.grid.shape[1], module.spline_order
        if module.uniform and order > 0:
            first, inverse_step = float(module.first_knot), 1.0 / float(module.step)
            steps = []  # the recurrence unrolled: v{d}_{m} = ((t + d - m)·v{d-1}_{m-1} + (m + 1 - t)·v{d-1}_{m}) / d
            for d in range(1, order + 1):
                for m in range(d + 1):
                    terms = ([f"(frac + {float(d - m)!r}f) * v{d - 1}_{m - 1}"] if m > 0 else []) + \
                            ([f"({float(m + 1)!r}f - frac) * v{d - 1}_{m}"] if m < d else [])
                    steps.append(f"        const float v{d}_{m} = ({' + '.join(terms)}) * {1.0 / d!r}f;")
            stores = "\n".join(f"        if (span + {m - order} >= 0 && span + {m - order} < $nb) "
                                f"f[span + {m - order}] = v{order}_{m};" for m in range(order + 1))
            unrolled = "\n".join(steps)
            return CSource(features=f"""{{
    const float pos = (u - {first!r}f) * {inverse_step!r}f;
    lo = hi = 0;
    if (pos >= 0.0f && pos < {knots - 1}.0f) {{
        const int span = (int)pos;
        const float frac = pos - (float)span;
        const float v0_0 = 1.0f;
{unrolled}
{stores}
        lo = span - {order} > 0 ? span - {order} : 0;
        hi = span + 1 < $nb ? span + 1 : $nb;
    }}
}}""")
        row = "0" if module.uniform else "i"
        return CSource(features=f"""{{
    const float *g = $knots + {row} * {knots};
    float b[{knots - 1}];
    int j, d;
    for (j = 0; j < {knots - 1}; ++j) b[j] = (u >= g[j] && u < g[j + 1]) ? 1.0f : 0.0f;
    for (d = 1; d <= {order}; ++d)
        for (j = 0; j < {knots - 1} - d; ++j)
            b[j] = (u - g[j]) / (g[j + d] - g[j]) * b[j] + (g[j + d + 1] - u) / (g[j + d + 1] - g[j + 1]) * b[j + 1];
    for (j = 0; j < $nb; ++j) f[j] = b[j];
}}""")

    def evaluate(self, module: Any, t: torch.Tensor) -> torch.Tensor:
        import torch

        if not module.uniform or module.spline_order == 0:
            return cox_de_boor(module.grid, module.spline_order, t)
        if torch.onnx.is_in_onnx_export():
            return cardinal_bsplines(module, t)
        return uniform_bsplines(module, t)


def cox_de_boor(grid: torch.Tensor, order: int, x: torch.Tensor) -> torch.Tensor:
    """x: (..., in) -> (..., in, G+k), every basis function through the full recursion on `grid` (in, G+2k+1)."""
    x = x.unsqueeze(-1)  # (..., in, 1)
    bases = ((x >= grid[:, :-1]) & (x < grid[:, 1:])).to(x.dtype)  # (..., in, G+2k)
    for k in range(1, order + 1):
        left = (x - grid[:, : -(k + 1)]) / (grid[:, k:-1] - grid[:, : -(k + 1)]) * bases[..., :-1]
        right = (grid[:, k + 1 :] - x) / (grid[:, k + 1 :] - grid[:, 1:(-k)]) * bases[..., 1:]
        bases = left + right  # (..., in, G+2k-k)
    return bases  # (..., in, G+k)


def uniform_bsplines(module: Any, x: torch.Tensor) -> torch.Tensor:
    """x: (..., in) -> (..., in, G+k) on the uniform grid.

    With u = (x - g_0)/h, span s = floor(u) and t = u - s, the order-d functions non-zero on span s are
    N_{s-d+m} (m = 0..d); on uniform knots Cox–de Boor reads, for their values v^d_m,
        v^d_m = ((t + d - m)·v^{d-1}_{m-1} + (m + 1 - t)·v^{d-1}_m) / d,   v^0_0 = 1, out-of-range terms 0.
    """
    import torch

    order, num_basis = module.spline_order, module.num_basis
    spans = module.grid_size + 2 * order
    u = (x - module.first_knot) / module.step  # (..., in): position in knot spans
    inside = (u >= 0) & (u < spans)  # half-open, as the recursion's first step
    span = torch.where(inside, torch.floor(u), 0.0)  # (..., in)
    t = u - span
    values: list[torch.Tensor] = [torch.ones_like(t)]
    for d in range(1, order + 1):
        nxt = []
        for m in range(d + 1):
            left = (t + (d - m)) * values[m - 1] if m > 0 else None
            right = ((m + 1) - t) * values[m] if m < d else None
            term = right if left is None else left if right is None else left + right
            assert term is not None
            nxt.append(term / d)
        values = nxt
    # Function j = s - k + m; those with j outside [0, G+k) (near the grid's ends) are dropped.
    j = span.long().unsqueeze(-1) + torch.arange(-order, 1, device=x.device)  # (..., in, k+1)
    keep = inside.unsqueeze(-1) & (j >= 0) & (j < num_basis)
    local = torch.where(keep, torch.stack(values, dim=-1), 0.0)  # (..., in, k+1)
    bases = torch.zeros(*x.shape, num_basis, dtype=local.dtype, device=x.device)  # (..., in, G+k)
    return bases.scatter_add_(-1, j.clamp_(0, num_basis - 1), local)


def cardinal_bsplines(module: Any, x: torch.Tensor) -> torch.Tensor:
    """x: (..., in) -> (..., in, G+k) on the uniform grid, in closed form: the ONNX export's form (a dozen
    element-wise operators and one small Gemm; no search, scatter, Pow or data-dependent indexing). Order k >= 1.

    Function j is the cardinal B-spline N_k(u) at u = (x - g_j)/h, supported on [0, k+1] and symmetric about its
    middle; with v = min(u, k+1-u) only the truncated powers below the middle remain:
        N_k(u) = (1/k!) Σ_{m=0}^{⌊k/2⌋} (-1)^m C(k+1, m) max(v - m, 0)^k.
    The constants go inside the powers (c·max(v, 0)^k = max(c^(1/k)·v, 0)^k for c > 0), so each term is one
    affine map, a ReLU and k-1 products. Equal to Cox–de Boor to float rounding (every power is at most
    ((k+1)/2)^k / k!).
    """
    import torch

    order, count = module.spline_order, module.num_basis
    scale = math.factorial(order) ** (-1 / order)  # u is scaled by (1/k!)^(1/k)
    starts = (module.first_knot / module.step + torch.arange(count, dtype=x.dtype)) * scale  # (G+k,): g_j / h
    slope = torch.full((1, count), scale / module.step, dtype=x.dtype)
    u = torch.addmm(-starts, x.reshape(-1, 1), slope)  # (N·in, G+k): one Gemm in the graph
    v = torch.minimum(u, scale * (order + 1) - u)

    def power(r: torch.Tensor) -> torch.Tensor:  # products, not Pow (onnxruntime's Pow is ~100x slower)
        result = r
        for _ in range(order - 1):
            result = result * r
        return result

    total = power(torch.relu(v))
    for m in range(1, order // 2 + 1):
        weight = math.comb(order + 1, m) ** (1 / order)
        term = power(torch.relu(v * weight - scale * m * weight))
        total = total - term if m % 2 else total + term
    if x.dim() == 2:  # constant sizes keep the graph free of shape arithmetic
        return total.view(-1, module.in_features, count)  # (N, in, G+k)
    return total.view(*x.shape, count)  # (..., in, G+k)
