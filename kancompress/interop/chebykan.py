"""ChebyKAN (SynodicMonth/ChebyKAN) `ChebyKANLayer` stacks, as its README builds them (ChebyKAN -> LayerNorm ->
ChebyKAN -> ...), with LayerNorms anywhere in the stack (before, between, after the layers).

Per layer `{P}cheby_coeffs` (or `cheby1_coeffs`, the README's name) (in, out, D+1) and a persistent int64
`{P}arange` (D+1,) (absent in the older recurrence version). Forward: y[o] = Σ_i Σ_d c[i,o,d]·T_d(tanh x_i); no
base branch and no bias, so edge (o, i) has vector (c[i,o,:], 0).
"""

from __future__ import annotations

import torch

from kancompress.bases import BasisConfig
from kancompress.config import ModelConfig
from kancompress.errors import FormatError
from kancompress.interop.layout import (
    ImportOptions,
    Notes,
    StateReader,
    built,
    edge_vectors,
    fill_norms,
    layer_stack,
    norm_config,
    place_norms,
    prefixes_with,
)
from kancompress.models import KANModel

LIBRARY = "chebykan"
USES: frozenset[str] = frozenset()
KEYS = ("cheby1_coeffs", "cheby_coeffs")


def detect(names: list[str]) -> bool:
    return any(prefixes_with(names, key) for key in KEYS)


def read(reader: StateReader, options: ImportOptions, notes: Notes) -> KANModel:
    state = reader.state
    names = {prefix: prefix + key for key in KEYS for prefix in prefixes_with(state, key)}
    for name in names.values():
        if state[name].dim() != 3:
            raise FormatError(f"{LIBRARY}: key {name!r} has shape {list(state[name].shape)}, expected "
                              "(in, out, degree+1)")

    def widths_of(prefix: str) -> tuple[int, int]:
        in_f, out_f, _ = state[names[prefix]].shape
        return in_f, out_f

    layers, widths = layer_stack(reader, list(names), widths_of)
    degree = state[names[layers[0]]].shape[2] - 1
    norms = place_norms(reader, layers, widths)
    config = ModelConfig(model="chebykan", widths=tuple(widths), basis=BasisConfig(degree=degree),
                         **norm_config(norms, len(layers)))
    model: KANModel = built(config, LIBRARY)
    for l, (prefix, layer) in enumerate(zip(layers, model.fc_layers())):
        out_f, in_f = layer.edge_shape
        coeffs = reader.take(names[prefix], (in_f, out_f, degree + 1))
        reader.take_optional(prefix + "arange", (degree + 1,))
        edge_vectors(model, l, torch.cat([coeffs.permute(1, 0, 2), torch.zeros(out_f, in_f, 1)], dim=-1))
    fill_norms(model, norms)
    return model
