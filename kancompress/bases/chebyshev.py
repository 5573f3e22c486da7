"""Chebyshev polynomials of tanh(x) (ChebyKAN); |w| = D + 2."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kancompress.bases.spec import CSource, BasisConfig, PolynomialSpec, ConvExtras, LearningRates, register

if TYPE_CHECKING:
    import torch


@register
class Chebyshev(PolynomialSpec):
    """T_0..T_D of t = tanh(x), ChebyKAN's `ChebyKANLayer` (SynodicMonth/ChebyKAN):
    y[o] = Σ_i Σ_d c[i,o,d]·T_d(tanh x_i), there written cos(d·acos(t)). Here the three-term recurrence
    T_0 = 1, T_1 = t, T_{d+1} = 2t·T_d - T_{d-1} gives the same values without acos's infinite gradient at
    |t| = 1 (where tanh saturates in float32). ChebyKAN has no base branch (an imported model has base weight 0)
    and its README model puts a LayerNorm between layers, so `norm_between` defaults on. Conv layers (our own
    design, following KAGN): Dropout2d on tanh(x), SiLU(BatchNorm(y)) after. No paper learning rates exist for
    this basis: those of FastKAN are used (ChebyKAN's README trains with Adam at 2e-4)."""

    model = "chebykan"
    basis = "chebyshev"
    title = "Chebyshev polynomials, ChebyKAN"
    fc_defaults = BasisConfig(degree=4)  # ChebyKAN's README example
    conv_defaults = BasisConfig(degree=3)
    # regression stays x1: on Feynman I.12.5 x10 gave the plain ChebyKAN a 3.8x higher validation MSE
    lr = LearningRates(plain=1e-3, meta=(1e-3, 1e-2))
    conv = ConvExtras(dropout_prepared=True, output="silu")
    norm_between = True

    def c_source(self, module: Any) -> CSource:
        return CSource(prepare="for (i = 0; i < $n; ++i) t[i] = tanhf(t[i]);", features="""{
    int d;
    f[0] = 1.0f;
    if ($nb > 1) f[1] = u;
    for (d = 2; d < $nb; ++d) f[d] = 2 * u * f[d - 1] - f[d - 2];
}""")

    def prepare(self, module: Any, x: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.tanh(x)

    def evaluate(self, module: Any, t: torch.Tensor) -> torch.Tensor:
        import torch

        polys = [torch.ones_like(t)]
        if module.degree >= 1:
            polys.append(t)
        for _ in range(2, module.degree + 1):
            polys.append(2 * t * polys[-1] - polys[-2])
        return torch.stack(polys, dim=-1)  # (..., in, D+1)
