"""torch-conv-kan's fully-connected KANs (`kans.KAGN` of `GRAMLayer`s, `kans.KALN` of `KALNLayer`s, `kans.WavKAN`
of `WavKANLayer`s (`interop.wavkan`, with its base branch); `kans.KACN` is ChebyKAN's layer and imports as
`chebykan`), under any prefix, `nn.Dropout` entries and the `L1` wrapper
(`.module.`) included.

- GRAMLayer: `{P}beta_weights` (D+1,), `{P}grams_basis_weights` (in, out, D+1), `{P}base_weights` (out, in),
  `{P}norm.{weight,bias}` (out,); y = act(LayerNorm(Σ_i Σ_d w[i,o,d]·act(P_d(tanh x_i)) + base·act(x))),
  edge (o, i) -> (w[i,o,:], base[o,i]) in the `gramkan` basis.
- KALNLayer: `{P}base_weight` (out, in), `{P}poly_weight` (out, in·(D+1)) index i·(D+1) + d,
  `{P}layer_norm.{weight,bias}`; y = act(LayerNorm(base·act(x) + Σ poly·P_d(u))), u = x mapped to [-1, 1] by
  the batch's min and max, edge (o, i) -> (poly[o, i·(D+1):(i+1)·(D+1)], base[o,i]) in the `legendrekan` basis.
`act` is the constructor's (nn.SiLU by default; not stored): kancompress runs SiLU there and says so.
"""

from __future__ import annotations

import torch

from kancompress.bases import BasisConfig
from kancompress.config import ModelConfig
from kancompress.errors import FormatError
from kancompress.interop.layout import ImportOptions, Notes, StateReader, built, edge_vectors, layer_stack, prefixes_with
from kancompress.interop import wavkan
from kancompress.layers import KANLinear
from kancompress.models import KANModel

LIBRARY = "torch-conv-kan"
USES = frozenset({"wavelet"})


def detect(names: list[str]) -> bool:
    return any(prefixes_with(names, key) for key in ("grams_basis_weights", "poly_weight", "wavelet_weights"))


def read(reader: StateReader, options: ImportOptions, notes: Notes) -> KANModel:
    state = reader.state
    if prefixes_with(state, "wavelet_weights"):
        return wavkan.read_layers(reader, options, notes, with_base=True)
    if options.wavelet is not None:
        raise FormatError(f"{LIBRARY}: --wavelet applies to WavKAN layers only; drop it")
    gram = prefixes_with(state, "grams_basis_weights")
    legendre = prefixes_with(state, "poly_weight")
    if gram and legendre:
        raise FormatError(f"{LIBRARY}: the state_dict mixes GRAMLayer and KALNLayer layers; one kind per model")

    def widths_of(prefix: str) -> tuple[int, int]:
        if gram:
            in_f, out_f, _ = state[prefix + "grams_basis_weights"].shape
            return in_f, out_f
        out_f, in_f = state[prefix + "base_weight"].shape
        return in_f, out_f

    for prefix in gram:
        if state[prefix + "grams_basis_weights"].dim() != 3:
            raise FormatError(f"{LIBRARY}: '{prefix}grams_basis_weights' must have shape (in, out, degree+1)")
    for prefix in legendre:
        if prefix + "base_weight" not in state or state[prefix + "base_weight"].dim() != 2:
            raise FormatError(f"{LIBRARY}: KALNLayer '{prefix}' needs base_weight (out, in)")
    layers, widths = layer_stack(reader, gram or legendre, widths_of)
    if gram:
        degree = state[layers[0] + "grams_basis_weights"].shape[2] - 1
    else:
        degree = state[layers[0] + "poly_weight"].shape[1] // widths[0] - 1
        notes.say(f"{LIBRARY} KALNLayer maps inputs to [-1, 1] by the min and max of the whole batch; kancompress by "
                  "those of each sample: outputs are equal for one sample at a time")
    notes.assume("base_activation", "silu", f"{LIBRARY} stores no activation: assumed nn.SiLU (the layers' default), "
                                            "which kancompress's gramkan/legendrekan layers run")
    config = ModelConfig(model="gramkan" if gram else "legendrekan", widths=tuple(widths),
                         basis=BasisConfig(degree=degree))
    model: KANModel = built(config, LIBRARY)
    for l, (prefix, layer) in enumerate(zip(layers, model.fc_layers())):
        edge_vectors(model, l, read_layer(reader, layer, prefix, bool(gram)))
    return model


def read_layer(reader: StateReader, layer: KANLinear, prefix: str, gram: bool) -> torch.Tensor:
    """One GRAMLayer (`gram`) or KALNLayer into `layer`'s extras; returns its (out, in, nb + 1) edge vectors."""
    out_f, in_f = layer.edge_shape
    nb = layer.num_basis
    norm = layer.output_norm
    assert norm is not None
    if gram:
        coeffs = reader.take(prefix + "grams_basis_weights", (in_f, out_f, nb)).permute(1, 0, 2)  # (out, in, nb)
        base = reader.take(prefix + "base_weights", (out_f, in_f))
        layer.basis.beta_weights.data.copy_(reader.take(prefix + "beta_weights", (nb,)))
        norm_prefix = prefix + "norm."
    else:
        coeffs = reader.take(prefix + "poly_weight", (out_f, in_f * nb)).view(out_f, in_f, nb)  # i·(D+1) + d
        base = reader.take(prefix + "base_weight", (out_f, in_f))
        norm_prefix = prefix + "layer_norm."
    norm.weight.data.copy_(reader.take(norm_prefix + "weight", (out_f,)))
    norm.bias.data.copy_(reader.take(norm_prefix + "bias", (out_f,)))
    return torch.cat([coeffs, base[..., None]], dim=-1)  # (out, in, nb + 1)
