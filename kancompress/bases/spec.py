"""What a basis is to the rest of kancompress: one `BasisSpec` per basis, registered by name.

A spec says everything the tool needs to know about a basis: the number of functions per edge from the config,
its defaults (fully-connected and conv), the learning rates (the paper's where it gives them), the extras a
layer of this basis owns (norms, biases, PReLU) as flags the generic layers read, its meta-learner defaults, the
tensors the basis itself stores, and its math (`prepare` then `evaluate`). Nothing outside a basis's own module
and this registry compares basis names.

This module and the spec modules import no torch at import time (`kancompress inspect` reads headers without
it): the math imports torch inside the functions that run it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from kancompress.errors import ConfigError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class BasisConfig:
    """The per-edge basis. Fields a basis does not use keep their defaults and are ignored by it."""

    grid_size: int = 5  # bspline: number of grid intervals G; rbf: number of centres
    spline_order: int = 3  # bspline: polynomial order k
    grid_min: float = -1.0  # bspline grid range / rbf centre range
    grid_max: float = 1.0
    degree: int = 3  # polynomial bases: highest degree D
    denominator: float | None = None  # rbf width; None means (grid_max - grid_min) / (grid_size - 1)
    stored_grid: bool = False  # bspline: a per-input grid (e.g. efficient-kan after update_grid) is stored
    wavelet: str = "mexican_hat"  # wavelet: the mother wavelet (`bases.wavelet.WAVELETS`)


BASIS_OPTIONAL_FIELDS: dict[str, Any] = {"wavelet": "mexican_hat"}
"""Basis fields added after format version 5, written to a file's config only when they differ from these."""


@dataclass(frozen=True)
class CSource:
    """A basis in C (`kancompress.interop.c_export`), as `string.Template` text: `$name` is a constant of
    `BasisSpec.export_constants` (a `static const float` array), `$nb` the functions per edge, `$n` the layer's
    inputs. `prepare`: statements on `float *t` (the n inputs the basis sees) in place, e.g. tanh. `features`:
    statements setting `f[lo..hi)` from the prepared input `u` of input `i`, where `int lo = 0, hi = nb` on entry
    and the functions outside [lo, hi) are 0 (a basis with local support narrows the range; the caller zeroes `f`
    where it needs every entry). `edge` (parametric bases instead of features): statements setting `float v` from
    `u` and the edge's parameters `const float *q`."""

    prepare: str = ""
    features: str = ""
    edge: str = ""


@dataclass(frozen=True)
class LearningRates:
    """AdamW learning rates. MetaCluster Appendix A.1: Table 4 (plain), Table 5 (meta: lr_h for the meta-learner,
    lr_e for the embeddings), Tables 6-7 (conv), lr_c for fine-tuning the codebooks."""

    plain: float
    meta: tuple[float, float]  # (lr_h, lr_e); the model's other parameters train at `plain`
    conv_plain: float = 1e-3
    conv_meta: tuple[float, float, float] = (1e-4, 5e-3, 5e-3)  # (lr_h, lr_e, lr of norms and head)
    finetune: float = 1e-4
    conv_finetune: float = 1e-5
    # A fully-connected regression model's default rates are all this many times the ones above (which are tuned
    # for image classification); 1 where nobody measured better (`examples/bench_defaults.py`)
    regression: float = 1.0


@dataclass(frozen=True)
class FCExtras:
    """What a fully-connected layer of this basis owns besides its edges (`kancompress.layers.KANLinear`)."""

    basis_norm: bool = False  # LayerNorm(in) on the basis path only (FastKAN)
    bias: bool = False  # a per-output bias (FastKAN's base_linear bias)
    output_norm: bool = False  # y -> SiLU(LayerNorm(y)) (KAGN, KALN)
    output_batchnorm: bool = False  # y -> BatchNorm1d(y) (Wav-KAN)


@dataclass(frozen=True)
class ConvExtras:
    """What a conv layer of this basis owns besides its edges (`kancompress.layers.KANConv2d`)."""

    basis_norm: bool = False  # basis path sees BatchNorm(Dropout2d(x)) (FastKANConv)
    dropout_prepared: bool = False  # Dropout2d on the prepared input (KAGN: tanh x; KALN: normalised x)
    output: str = "none"  # "prelu": Dropout2d(PReLU(BN(y))) (KANConv); "silu": SiLU(BN(y)) (KAGN, KALN)
    base_activation: bool = True  # base conv on act(x); False: on x itself (KALN)


class BasisSpec:
    """One basis. Subclasses set the class attributes and override `num_basis`, `check` and `evaluate`."""

    model: ClassVar[str]  # the model name users pick (`--model`), e.g. "kan"
    basis: ClassVar[str]  # the basis family, e.g. "bspline"
    title: ClassVar[str]  # one line for help texts
    fc_defaults: ClassVar[BasisConfig]
    conv_defaults: ClassVar[BasisConfig]
    lr: ClassVar[LearningRates]
    fc: ClassVar[FCExtras] = FCExtras()
    conv: ClassVar[ConvExtras] = ConvExtras()
    conv_meta_d_emb: ClassVar[int] = 1  # paper Table 7
    norm_between: ClassVar[bool] = False  # default of ModelConfig.norm_between (LayerNorm between FC layers)
    init: ClassVar[str] = "kaiming"  # FC dense init: "uniform-0.1" | "normal-0.1" | "kaiming" (`layers.init_edge_vectors`)
    parametric: ClassVar[bool] = False  # the edge function is not Σ_j w_j·B_j(x): `edge_function` evaluates it
    fc_only: ClassVar[bool] = False  # no conv layers of this basis
    format_version: ClassVar[int] = 2  # the oldest file format that knows this basis
    layer_grid_ranges: ClassVar[bool] = False  # FC layers may each have their own [grid_min, grid_max]
    # (`ModelConfig.grid_ranges`, which `regrid` writes when it replaces stored per-input grids)

    def num_basis(self, basis: BasisConfig) -> int:
        """Basis functions per edge; the edge vector |w| is this plus the base weight."""
        raise NotImplementedError

    def check(self, basis: BasisConfig) -> None:
        """Raise `ConfigError` when a field this basis uses is out of range."""

    def stored_tensors(self, basis: BasisConfig, in_features: int) -> dict[str, tuple[int, ...]]:
        """float32 tensors the basis module keeps in checkpoints, by attribute name, with their shapes."""
        return {}

    def setup(self, module: Any, basis: BasisConfig, in_features: int) -> None:
        """Create the basis module's parameters and buffers (those of `stored_tensors` persistently)."""

    def prepare(self, module: Any, x: torch.Tensor) -> torch.Tensor:
        """The input transform before the basis functions (tanh, range normalisation); conv layers may drop out
        its result (`ConvExtras.dropout_prepared`)."""
        return x

    def evaluate(self, module: Any, t: torch.Tensor) -> torch.Tensor:
        """Basis values of prepared inputs t: (..., in) -> (..., in, num_basis)."""
        raise NotImplementedError

    def edge_function(self, module: Any, t: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Parametric bases: the edge function at prepared inputs t (...) with edge parameters params (..., nb),
        broadcast against each other."""
        raise NotImplementedError

    def export_constants(self, module: Any) -> dict[str, Any]:
        """The basis module's numbers an exporter needs, by name (arrays or scalars, float32)."""
        return {}

    def c_source(self, module: Any) -> CSource:
        """What this basis computes, in C (see `CSource`)."""
        raise ConfigError(f"the {self.model} basis has no C export yet")

    def initial_vectors(self, edge_shape: tuple[int, ...], fan_in: int) -> torch.Tensor | None:
        """A dense layer's initial (*edge_shape, |w|) vectors, or None for `layers.init_edge_vectors`' scheme."""
        return None


class PolynomialSpec(BasisSpec):
    """A basis of polynomials of degree 0..D (the config's `degree`): D + 1 functions per edge, 0 <= D <= 32."""

    def num_basis(self, basis: BasisConfig) -> int:
        return basis.degree + 1

    def check(self, basis: BasisConfig) -> None:
        require(0 <= basis.degree <= 32, f"{self.basis} needs 0 <= degree <= 32")

    def setup(self, module: Any, basis: BasisConfig, in_features: int) -> None:
        module.degree, module.num_basis = basis.degree, basis.degree + 1


_REGISTRY: dict[str, BasisSpec] = {}


def register(spec_class: type[BasisSpec]) -> type[BasisSpec]:
    """Class decorator: make a basis available under its model name."""
    spec = spec_class()
    if spec.model in _REGISTRY:
        raise RuntimeError(f"basis for model {spec.model!r} registered twice")
    _REGISTRY[spec.model] = spec
    return spec_class


def get_spec(model: str) -> BasisSpec:
    """The spec of a model name; an unknown name is a `ConfigError` listing the known ones."""
    try:
        return _REGISTRY[model]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model {model!r}; choose from: {', '.join(_REGISTRY)}") from None


def model_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def with_defaults(defaults: BasisConfig, **changes: Any) -> BasisConfig:
    return dataclasses.replace(defaults, **changes)


def describe(specs: Mapping[str, BasisSpec] | None = None) -> str:
    """'kan (B-spline) | fastkan (RBF) | ...' for help texts."""
    return " | ".join(f"{name} ({spec.title})" for name, spec in (specs or _REGISTRY).items())
