"""Wavelets with a learned scale and translation per edge (Wav-KAN); |w| = 4: weight, scale, translation, base."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from kancompress.bases.spec import CSource, BasisConfig, BasisSpec, FCExtras, LearningRates, register, require

if TYPE_CHECKING:
    import torch

WAVELETS: tuple[str, ...] = ("mexican_hat", "morlet", "dog", "meyer", "shannon")
MEXICAN_HAT_C = 2 / (math.sqrt(3) * math.pi**0.25)


@register
class Wavelet(BasisSpec):
    """Wav-KAN (zavareh1/Wav-KAN `KANLinear`, torch-conv-kan `WavKANLayer`): edge (o, i) computes
    w·ψ((x_i - t)/s) from its own weight w, scale s and translation t, so the edge function is not a weighted
    sum of fixed basis functions: the layer evaluates it per edge (`parametric`), and data-aware clustering, which
    needs that linearity, falls back to plain K-means. The vector is (w, s, t, base weight); layers end in
    BatchNorm1d(out), as upstream. ψ(u), as written upstream (`wavelet` in the config):
      mexican_hat  C·(u² - 1)·exp(-u²/2), C = 2/(√3·π^¼)  (upstream's sign)
      morlet       cos(5u)·exp(-u²/2)
      dog          -u·exp(-u²/2)
      meyer        sin(π|u|)·aux(|u|), aux = 1 below ½, 0 from 1, cos(π/2·ν(2|u| - 1)) between, ν(t) = t⁴(35 - 84t +
                   70t² - 20t³)
      shannon      sinc(u/π) (upstream multiplies by a Hamming window over the input index, which an import
                   folds into w).
    Fully-connected only. No paper learning rates exist for this basis: those of FastKAN are used."""

    model = "wavkan"
    basis = "wavelet"
    title = "wavelets with per-edge scale and translation, Wav-KAN"
    fc_defaults = BasisConfig(wavelet="mexican_hat")
    conv_defaults = BasisConfig(wavelet="mexican_hat")
    lr = LearningRates(plain=1e-3, meta=(1e-3, 1e-2))
    fc = FCExtras(output_batchnorm=True)
    parametric = True
    fc_only = True
    format_version = 6

    def num_basis(self, basis: BasisConfig) -> int:
        return 3

    def check(self, basis: BasisConfig) -> None:
        require(basis.wavelet in WAVELETS, f"unknown wavelet {basis.wavelet!r}; choose from: {', '.join(WAVELETS)}")

    def setup(self, module: Any, basis: BasisConfig, in_features: int) -> None:
        module.num_basis, module.wavelet = 3, basis.wavelet

    def initial_vectors(self, edge_shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
        """w ~ U(±1/√fan_in) (upstream's kaiming_uniform with a = √5), s = 1, t = 0, base weight ~ U(±1/√fan_in)."""
        import torch

        bound = 1.0 / math.sqrt(fan_in)
        vectors = torch.zeros(*edge_shape, 4)
        vectors[..., 0].uniform_(-bound, bound)
        vectors[..., 1] = 1.0
        vectors[..., 3].uniform_(-bound, bound)
        return vectors

    def c_source(self, module: Any) -> CSource:
        """ψ((u - q[2]) / q[1])·q[0], the same formulas as `edge_function`."""
        psi = {"mexican_hat": f"{MEXICAN_HAT_C!r}f * (z * z - 1) * expf(-0.5f * z * z)",
               "morlet": "expf(-0.5f * z * z) * cosf(5.0f * z)",
               "dog": "-z * expf(-0.5f * z * z)",
               "meyer": "meyer(z)",
               "shannon": "(z == 0.0f ? 1.0f : sinf(z) / z)"}[module.wavelet]
        return CSource(edge=f"""{{
    const float z = (u - q[2]) / q[1];
    v = ({psi}) * q[0];
}}""")

    def edge_function(self, module: Any, t: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """w·ψ((t - translation)/scale), broadcasting t (...) against params (..., 3)."""
        import torch

        u = (t - params[..., 2]) / params[..., 1]
        if module.wavelet == "mexican_hat":
            psi = MEXICAN_HAT_C * (u**2 - 1) * torch.exp(-0.5 * u**2)
        elif module.wavelet == "morlet":
            psi = torch.exp(-0.5 * u**2) * torch.cos(5.0 * u)
        elif module.wavelet == "dog":
            psi = -u * torch.exp(-0.5 * u**2)
        elif module.wavelet == "meyer":
            v = torch.abs(u)
            s = 2 * v - 1
            nu = s**4 * (35 - 84 * s + 70 * s**2 - 20 * s**3)
            aux = torch.where(v <= 0.5, torch.ones_like(v),
                              torch.where(v >= 1, torch.zeros_like(v), torch.cos(math.pi / 2 * nu)))
            psi = torch.sin(math.pi * v) * aux
        else:
            psi = torch.sinc(u / math.pi)
        weighted: torch.Tensor = psi * params[..., 0]
        return weighted
