"""Wav-KAN (zavareh1/Wav-KAN `KAN` / `KANLinear`) stacks, and torch-conv-kan's `WavKANLayer` (same keys).

Per layer `{P}scale`, `{P}translation`, `{P}wavelet_weights`, `{P}weight1` (out, in) and `{P}bn.*`
(BatchNorm1d(out)). Forward: y[o] = BN(Σ_i w[o,i]·ψ((x_i - t[o,i])/s[o,i]) + base), where Wav-KAN's own code leaves
the base branch out (`weight1` is created but unused: "combined_output = wavelet_output #+ base_output") and
torch-conv-kan's `WavKANLayer` adds base = SiLU(x)·weight1ᵀ. The two save the same keys, so the state_dict cannot
tell them apart: it is read as Wav-KAN's unless `--from torch-conv-kan` says otherwise (said in a note). Edge
(o, i) -> (w, s, t, base weight) in the `wavkan` basis. The wavelet type is not stored (`--wavelet`, default
mexican_hat, said in a note); for `shannon`, upstream's Hamming window over the input index is folded into w.
"""

from __future__ import annotations

import torch

from kancompress.bases import BasisConfig
from kancompress.bases.wavelet import WAVELETS
from kancompress.config import ModelConfig
from kancompress.errors import FormatError
from kancompress.interop.layout import ImportOptions, Notes, StateReader, built, edge_vectors, layer_stack, prefixes_with
from kancompress.models import KANModel

LIBRARY = "wav-kan"
USES = frozenset({"wavelet"})


def detect(names: list[str]) -> bool:
    return bool(prefixes_with(names, "wavelet_weights"))


def read(reader: StateReader, options: ImportOptions, notes: Notes) -> KANModel:
    notes.say(f"{LIBRARY} and torch-conv-kan's WavKANLayer save the same keys: read as Wav-KAN's forward "
              "(weight1 unused); if this is torch-conv-kan's WavKAN (it adds SiLU(x)·weight1), import again with "
              "--from torch-conv-kan")
    return read_layers(reader, options, notes, with_base=False)


def read_layers(reader: StateReader, options: ImportOptions, notes: Notes, with_base: bool) -> KANModel:
    """A Wav-KAN stack; `with_base`: the base branch SiLU(x)·weight1 is part of the forward (torch-conv-kan)."""
    state, library = reader.state, reader.library
    found = prefixes_with(state, "wavelet_weights")
    for prefix in found:
        if state[prefix + "wavelet_weights"].dim() != 2:
            raise FormatError(f"{library}: key '{prefix}wavelet_weights' must have shape (out, in)")

    def widths_of(prefix: str) -> tuple[int, int]:
        out_f, in_f = state[prefix + "wavelet_weights"].shape
        return in_f, out_f

    layers, widths = layer_stack(reader, found, widths_of)
    wavelet = options.wavelet
    if wavelet is None:
        wavelet = "mexican_hat"
        notes.assume("wavelet", wavelet, f"{library} stores no wavelet type: assumed mexican_hat (its default); pass "
                                         f"--wavelet ({', '.join(WAVELETS[1:])}) if the model used another")
    elif wavelet not in WAVELETS:
        raise FormatError(f"unknown --wavelet {wavelet!r}; choose from: {', '.join(WAVELETS)}")
    config = ModelConfig(model="wavkan", widths=tuple(widths), basis=BasisConfig(wavelet=wavelet))
    model: KANModel = built(config, LIBRARY)
    for l, (prefix, layer) in enumerate(zip(layers, model.fc_layers())):
        out_f, in_f = layer.edge_shape
        weight = reader.take(prefix + "wavelet_weights", (out_f, in_f))
        if wavelet == "shannon":  # upstream's window over the input index, a fixed factor per input
            weight = weight * torch.hamming_window(in_f, periodic=False, dtype=weight.dtype)
        scale = reader.take(prefix + "scale", (out_f, in_f))
        translation = reader.take(prefix + "translation", (out_f, in_f))
        base = reader.take(prefix + "weight1", (out_f, in_f))
        if not with_base:
            base = torch.zeros_like(base)
        norm = layer.output_bn
        assert norm is not None and norm.num_batches_tracked is not None
        for field in ("weight", "bias", "running_mean", "running_var"):
            getattr(norm, field).data.copy_(reader.take(f"{prefix}bn.{field}", (out_f,)))
        norm.num_batches_tracked.copy_(reader.take(f"{prefix}bn.num_batches_tracked", ()))
        edge_vectors(model, l, torch.stack([weight, scale, translation, base], dim=-1))  # (out, in, 4)
    return model
