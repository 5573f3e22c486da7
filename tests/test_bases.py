"""Basis oracles: naive Cox–de Boor, partition of unity, RBF peaks, the KAGN Gram recursion, Chebyshev as
cos(d·acos t), Legendre against numpy; and the registry itself."""

from __future__ import annotations

import math

import pytest
import torch

from kancompress.bases import BasisConfig, get_spec, model_names
from kancompress.bases.bspline import cox_de_boor
from kancompress.errors import ConfigError
from kancompress.layers import Basis


def BSplineBasis(inputs: int, grid_size: int, order: int, lo: float, hi: float, stored: bool) -> Basis:
    config = BasisConfig(grid_size=grid_size, spline_order=order, grid_min=lo, grid_max=hi, stored_grid=stored)
    return Basis(get_spec("kan"), config, inputs)


def RBFBasis(grid_size: int, lo: float, hi: float, denominator: float | None) -> Basis:
    return Basis(get_spec("fastkan"), BasisConfig(grid_size=grid_size, grid_min=lo, grid_max=hi,
                                                   denominator=denominator), 1)


def polynomial_basis(model: str, degree: int, inputs: int = 2) -> Basis:
    return Basis(get_spec(model), BasisConfig(degree=degree), inputs)


def naive_bspline(x: float, knots: list[float], j: int, order: int) -> float:
    """Textbook Cox–de Boor recursion on half-open intervals, one basis function at a time."""
    if order == 0:
        return 1.0 if knots[j] <= x < knots[j + 1] else 0.0
    left = (x - knots[j]) / (knots[j + order] - knots[j]) * naive_bspline(x, knots, j, order - 1)
    right = (knots[j + order + 1] - x) / (knots[j + order + 1] - knots[j + 1]) * naive_bspline(x, knots, j + 1, order - 1)
    return left + right


@pytest.mark.parametrize("grid_size,order", [(5, 3), (3, 2), (8, 1), (4, 0), (20, 3), (7, 5)])
def test_uniform_bspline_matches_naive_cox_de_boor(grid_size: int, order: int) -> None:
    basis = BSplineBasis(2, grid_size, order, -1.0, 1.0, stored=False).double()
    h = 2.0 / grid_size
    knots = [-1.0 + (j - order) * h for j in range(grid_size + 2 * order + 1)]  # exact uniform knots
    x = torch.rand(50, 2, dtype=torch.float64) * 3 - 1.5  # inside and outside the grid
    x[:4, 0] = torch.tensor(knots[:4], dtype=torch.float64)  # on knots: the half-open intervals decide
    values = basis(x)
    for n in range(x.shape[0]):
        for i in range(2):
            expected = [naive_bspline(float(x[n, i]), knots, j, order) for j in range(grid_size + order)]
            assert values[n, i].tolist() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("grid_size,order", [(5, 3), (3, 2), (8, 1), (20, 3), (7, 5), (4, 10)])
def test_closed_form_bsplines_of_the_onnx_export_match_naive_cox_de_boor(grid_size: int, order: int) -> None:
    from kancompress.bases.bspline import cardinal_bsplines

    basis = BSplineBasis(2, grid_size, order, -1.0, 1.0, stored=False).double()
    h = 2.0 / grid_size
    knots = [-1.0 + (j - order) * h for j in range(grid_size + 2 * order + 1)]
    x = torch.rand(40, 2, dtype=torch.float64) * 3 - 1.5
    x[:4, 0] = torch.tensor(knots[:4], dtype=torch.float64)
    values = cardinal_bsplines(basis, x)  # (N, in, G+k)
    for n in range(x.shape[0]):
        for i in range(2):
            expected = [naive_bspline(float(x[n, i]), knots, j, order) for j in range(grid_size + order)]
            assert values[n, i].tolist() == pytest.approx(expected, abs=1e-11)
    images = x.reshape(5, 4, 2, 2)  # (N, H, W, C) as conv layers pass it
    assert torch.allclose(cardinal_bsplines(basis, images), basis(images), atol=1e-11)


def test_stored_grid_runs_the_full_recursion_on_its_knots() -> None:
    basis = BSplineBasis(2, 5, 3, -1.0, 1.0, stored=True).double()
    basis.grid.add_(torch.rand_like(basis.grid) * 0.05).copy_(basis.grid.sort(dim=1).values)  # adapted, non-uniform
    x = torch.rand(30, 2, dtype=torch.float64) * 3 - 1.5
    values = basis(x)
    for n in range(x.shape[0]):
        for i in range(2):
            knots = basis.grid[i].tolist()
            expected = [naive_bspline(float(x[n, i]), knots, j, 3) for j in range(8)]
            assert values[n, i].tolist() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("grid_size,order", [(5, 3), (20, 3), (4, 1), (7, 5)])
def test_uniform_span_evaluation_equals_full_recursion_in_float32(grid_size: int, order: int) -> None:
    """The fast uniform path against efficient-kan's full recursion on float32 knots: values and gradients."""
    basis = BSplineBasis(16, grid_size, order, -1.0, 1.0, stored=False)
    x = (torch.rand(256, 16) * 3 - 1.5).requires_grad_()
    weights = torch.randn(grid_size + order)
    fast, full = basis(x), cox_de_boor(basis.grid, order, x)
    assert torch.allclose(fast, full, atol=1e-5, rtol=0)
    (grad_fast,) = torch.autograd.grad((fast * weights).sum(), x)
    (grad_full,) = torch.autograd.grad((full * weights).sum(), x)
    assert torch.allclose(grad_fast, grad_full, atol=1e-5 * grad_full.abs().max().item(), rtol=0)
    outside = basis(torch.tensor([[float("inf"), float("-inf"), 5.0, -5.0] + [0.0] * 12]))
    assert outside[0, :4].abs().sum() == 0


def test_bspline_partition_of_unity_inside_grid() -> None:
    basis = BSplineBasis(3, 5, 3, -1.0, 1.0, stored=False).double()
    x = torch.rand(200, 3, dtype=torch.float64) * 2 - 1  # [-1, 1)
    assert torch.allclose(basis(x).sum(-1), torch.ones(200, 3, dtype=torch.float64), atol=1e-12)
    far = basis(torch.full((1, 3), 5.0, dtype=torch.float64))
    assert far.abs().sum() == 0  # outside [grid[0], grid[-1]) every basis is zero


def test_rbf_peaks_at_centres() -> None:
    basis = RBFBasis(8, -2.0, 2.0, None)
    centres = basis.grid.view(1, 8)  # evaluate at each centre, one input per centre
    values = basis(centres)  # (1, 8, 8)
    assert torch.allclose(torch.diagonal(values[0]), torch.ones(8))
    assert basis.denominator == pytest.approx(4 / 7)
    assert values[0, 0, 1].item() == pytest.approx(math.exp(-1.0))  # one width away


def naive_gram(x: float, beta: list[float], degree: int) -> list[float]:
    t = math.tanh(x)
    polys = [1.0, t]
    for m in range(2, degree + 1):
        n = m - 1
        b = ((m + n) * (m - n) * n**2) / (m**2 / (4.0 * n**2 - 1.0)) * beta[n]
        polys.append(t * polys[m - 1] - b * polys[m - 2])
    return [p * 0.5 * (1.0 + math.tanh(p / 2)) for p in polys[: degree + 1]]  # SiLU(p)


@pytest.mark.parametrize("degree", [0, 1, 3, 5])
def test_gram_matches_naive_recursion(degree: int) -> None:
    basis = polynomial_basis("gramkan", degree).double()
    basis.beta_weights.data.normal_(0, 0.5)
    x = torch.randn(20, 2, dtype=torch.float64) * 2
    values = basis(x)
    beta = basis.beta_weights.tolist()
    for n in range(20):
        for i in range(2):
            assert values[n, i].tolist() == pytest.approx(naive_gram(float(x[n, i]), beta, degree), abs=1e-12)


@pytest.mark.parametrize("degree", [0, 1, 4, 7])
def test_chebyshev_equals_cos_of_d_acos_tanh(degree: int) -> None:
    """ChebyKAN writes T_d(t) = cos(d·acos(t)) with t = tanh(x); the recurrence must give the same values."""
    basis = polynomial_basis("chebykan", degree).double()
    x = torch.randn(40, 2, dtype=torch.float64) * 2
    t = torch.tanh(x)
    expected = torch.cos(torch.arange(degree + 1, dtype=torch.float64) * torch.acos(t).unsqueeze(-1))
    assert torch.allclose(basis(x), expected, atol=1e-12)


def test_chebyshev_gradient_stays_finite_where_tanh_saturates() -> None:
    basis = polynomial_basis("chebykan", 4)
    x = torch.tensor([[12.0, -15.0]], requires_grad=True)  # tanh rounds to ±1 in float32
    (grad,) = torch.autograd.grad(basis(x).sum(), x)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("degree", [0, 1, 3, 6])
def test_legendre_matches_numpy_on_range_normalised_inputs(degree: int) -> None:
    np = pytest.importorskip("numpy")
    basis = polynomial_basis("legendrekan", degree, inputs=5).double()
    x = torch.randn(6, 5, dtype=torch.float64) * 3
    values = basis(x)
    for n in range(6):
        row = x[n].numpy()
        u = 2 * (row - row.min()) / (row.max() - row.min()) - 1  # per sample (KALN uses the batch at batch 1)
        expected = np.stack([np.polynomial.legendre.legval(u, [0] * d + [1]) for d in range(degree + 1)], -1)
        assert np.allclose(values[n].numpy(), expected, atol=1e-12)
    # A sample's values do not depend on the rest of its batch.
    assert torch.allclose(basis(x[:1]), values[:1], atol=0)


def test_registry_lists_every_basis_and_refuses_unknown_names() -> None:
    assert model_names() == ("kan", "fastkan", "gramkan", "chebykan", "legendrekan", "fourierkan", "wavkan")
    with pytest.raises(ConfigError, match="unknown model 'jacobikan'; choose from: kan, fastkan"):
        get_spec("jacobikan")
    assert {get_spec(m).basis for m in model_names()} == {"bspline", "rbf", "gram", "chebyshev", "legendre", "fourier",
                                                         "wavelet"}


def test_no_module_outside_the_registry_compares_basis_names() -> None:
    """The registry owns basis names: no other source file branches on one (issue 13's goal)."""
    import re
    from pathlib import Path

    import kancompress

    package = Path(kancompress.__file__).parent
    names = [get_spec(m).basis for m in model_names()] + list(model_names())
    pattern = re.compile(r"""(==|!=|\bin\b)\s*\(?\s*["'](%s)["']|["'](%s)["']\s*(==|!=)""" % ("|".join(names), "|".join(names)))
    offenders = []
    for path in package.rglob("*.py"):
        if path.parent.name == "bases":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(package)}:{number}: {line.strip()}")
    assert offenders == []
