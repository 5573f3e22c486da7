"""Fourier series (FourierKAN); |w| = 2G + 1."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kancompress.bases.spec import CSource, BasisConfig, BasisSpec, ConvExtras, FCExtras, LearningRates, register, require

if TYPE_CHECKING:
    import torch


@register
class Fourier(BasisSpec):
    """cos(k·x) and sin(k·x) for k = 1..G (G = `grid_size`, FourierKAN's `gridsize`), GistNoesis/FourierKAN
    `NaiveFourierKANLayer`: y[o] = Σ_i Σ_k a[0,o,i,k]·cos(k·x_i) + a[1,o,i,k]·sin(k·x_i) + bias[o]. An edge's
    vector is (a[0,o,i,1..G], a[1,o,i,1..G], base weight); FourierKAN has no base branch (an imported model has
    base weight 0) and a per-output bias (`addbias=True`, its default). No input transform: x enters the
    trigonometric functions as it is. Conv layers (our own design, as Chebyshev's): SiLU(BatchNorm(y)) after.
    No paper learning rates exist for this basis: those of FastKAN are used."""

    model = "fourierkan"
    basis = "fourier"
    title = "Fourier series, FourierKAN"
    fc_defaults = BasisConfig(grid_size=5)
    conv_defaults = BasisConfig(grid_size=3)
    lr = LearningRates(plain=1e-3, meta=(1e-3, 1e-2))
    fc = FCExtras(bias=True)
    conv = ConvExtras(output="silu")
    format_version = 6

    def num_basis(self, basis: BasisConfig) -> int:
        return 2 * basis.grid_size

    def check(self, basis: BasisConfig) -> None:
        require(1 <= basis.grid_size <= 256, "fourier needs 1 <= grid_size <= 256 frequencies")

    def setup(self, module: Any, basis: BasisConfig, in_features: int) -> None:
        import torch

        module.num_basis = 2 * basis.grid_size
        frequencies = torch.arange(1, basis.grid_size + 1, dtype=torch.float32)  # (G,): k = 1..G
        module.register_buffer("frequencies", frequencies, persistent=False)

    def c_source(self, module: Any) -> CSource:
        half = module.num_basis // 2
        return CSource(features=f"""{{
    int j;
    for (j = 0; j < {half}; ++j) {{ const float a = (float)(j + 1) * u; f[j] = cosf(a); f[{half} + j] = sinf(a); }}
}}""")

    def evaluate(self, module: Any, t: torch.Tensor) -> torch.Tensor:
        import torch

        angles = t.unsqueeze(-1) * module.frequencies.to(t.dtype)  # (..., in, G)
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)  # (..., in, 2G)
