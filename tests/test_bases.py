"""Basis oracles: naive Cox–de Boor, partition of unity, RBF peaks, the KAGN Gram recursion."""

from __future__ import annotations

import math

import pytest
import torch

from kancompress.bases import BSplineBasis, GramBasis, RBFBasis


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
    fast, full = basis(x), basis.cox_de_boor(x)
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
    basis = GramBasis(degree).double()
    basis.beta_weights.data.normal_(0, 0.5)
    x = torch.randn(20, 2, dtype=torch.float64) * 2
    values = basis(x)
    beta = basis.beta_weights.tolist()
    for n in range(20):
        for i in range(2):
            assert values[n, i].tolist() == pytest.approx(naive_gram(float(x[n, i]), beta, degree), abs=1e-12)
