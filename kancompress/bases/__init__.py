"""The basis registry. Each basis is one module here with one registered `BasisSpec`; adding a basis is a new
module plus its import line below."""

from kancompress.bases.spec import (
    BasisConfig,
    BasisSpec,
    ConvExtras,
    FCExtras,
    LearningRates,
    describe,
    get_spec,
    model_names,
    register,
)

# Registration order is the order of `model_names()` (help texts, test parametrisation).
from kancompress.bases import bspline, rbf, gram, chebyshev, legendre, fourier, wavelet  # noqa: E402,F401  (each registers itself)

__all__ = ["BasisConfig", "BasisSpec", "ConvExtras", "FCExtras", "LearningRates", "describe", "get_spec",
           "model_names", "register"]
