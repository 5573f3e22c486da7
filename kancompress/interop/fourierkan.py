"""FourierKAN (GistNoesis/FourierKAN) `NaiveFourierKANLayer` stacks, LayerNorms anywhere in the stack.

Per layer `{P}fouriercoeffs` (2, out, in, G) and, with `addbias=True` (its default), `{P}bias` (1, out).
Forward: y[o] = Σ_i Σ_{k=1..G} a[0,o,i,k]·cos(k·x_i) + a[1,o,i,k]·sin(k·x_i) + bias[o], so edge (o, i) has
vector (a[0,o,i,:], a[1,o,i,:], 0) in the `fourierkan` basis (`bases.fourier`).
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

LIBRARY = "fourierkan"
USES: frozenset[str] = frozenset()


def detect(names: list[str]) -> bool:
    return bool(prefixes_with(names, "fouriercoeffs"))


def read(reader: StateReader, options: ImportOptions, notes: Notes) -> KANModel:
    state = reader.state
    found = prefixes_with(state, "fouriercoeffs")
    for prefix in found:
        shape = state[prefix + "fouriercoeffs"].shape
        if len(shape) != 4 or shape[0] != 2:
            raise FormatError(f"{LIBRARY}: key '{prefix}fouriercoeffs' has shape {list(shape)}, expected "
                              "(2, out, in, gridsize)")

    def widths_of(prefix: str) -> tuple[int, int]:
        _, out_f, in_f, _ = state[prefix + "fouriercoeffs"].shape
        return in_f, out_f

    layers, widths = layer_stack(reader, found, widths_of)
    size = state[layers[0] + "fouriercoeffs"].shape[3]
    norms = place_norms(reader, layers, widths)
    config = ModelConfig(model="fourierkan", widths=tuple(widths), basis=BasisConfig(grid_size=size),
                         **norm_config(norms, len(layers)))
    model: KANModel = built(config, LIBRARY)
    for l, (prefix, layer) in enumerate(zip(layers, model.fc_layers())):
        out_f, in_f = layer.edge_shape
        coeffs = reader.take(prefix + "fouriercoeffs", (2, out_f, in_f, size))
        bias = reader.take_optional(prefix + "bias", (1, out_f))
        assert layer.bias is not None
        layer.bias.data.copy_(bias[0] if bias is not None else torch.zeros(out_f))
        vectors = torch.cat([coeffs[0], coeffs[1], torch.zeros(out_f, in_f, 1)], dim=-1)  # (out, in, 2G+1)
        edge_vectors(model, l, vectors)
    fill_norms(model, norms)
    return model
