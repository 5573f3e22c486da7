"""What every importer shares: taking tensors by name (and refusing what is left over), finding a library's
layers under any prefix and putting them in forward order, and placing LayerNorms that sit between, before or
after them.

Order comes from, in turn: the file's own module order (`.pt` files, live modules); names that differ only in
their numbers (`layers.0.`, `layers.1.`, ...; `chebykan1.`, `chebykan2.`, natural order); otherwise the one
order in which every layer's inputs match the previous layer's outputs. When none of these decides, the import
is refused with the fix (save the state_dict with `torch.save`, which keeps module order, or use
`kancompress.from_module`), never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from kancompress.errors import FormatError
from kancompress.interop.source import SourceState


@dataclass(frozen=True)
class ImportOptions:
    """What a state_dict does not store, given by the user; None: not given (the library's default is assumed and
    the import says so). Each library takes only the options that apply to it (`USES` of its module); another
    given option is refused, never ignored."""

    base_activation: str | None = None  # efficient-kan, FastKAN, pykan (no config), torch-conv-kan KANConv
    denominator: float | None = None  # FastKAN RBF width
    pykan_config: dict[str, Any] | None = None  # pykan's `{path}_config.yml`
    strides: tuple[int, ...] | None = None  # torch-conv-kan conv layers
    grid_size: int | None = None  # torch-conv-kan KANConv (its grid is not stored)
    spline_order: int | None = None
    grid_range: tuple[float, float] | None = None
    wavelet: str | None = None  # Wav-KAN's wavelet type

    def given(self) -> set[str]:
        return {name for name, value in vars(self).items() if value is not None}


OPTION_FLAGS: dict[str, str] = {"base_activation": "--base-activation", "denominator": "--rbf-denominator",
                                "pykan_config": "--config", "strides": "--strides", "grid_size": "--grid-size",
                                "spline_order": "--spline-order", "grid_range": "--grid-range", "wavelet": "--wavelet"}


@dataclass
class Notes:
    """What an import assumed (defaults for what the file does not store) or decided, in one line each, for
    stderr and the provenance."""

    lines: list[str] = field(default_factory=list)
    assumed: dict[str, Any] = field(default_factory=dict)

    def assume(self, key: str, value: Any, line: str) -> None:
        self.assumed[key] = value
        self.lines.append(line)

    def say(self, line: str) -> None:
        self.lines.append(line)


class StateReader:
    """Takes tensors from a state_dict by name, checking shapes, and remembers which were taken, so that anything
    left over is refused by name (`check_all_used`)."""

    def __init__(self, source: SourceState, library: str):
        self.source = source
        self.state = source.tensors
        self.library = library
        self.used: set[str] = set()
        self._position = {name: index for index, name in enumerate(self.state)}

    def has(self, name: str) -> bool:
        return name in self.state

    def take(self, name: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        if name not in self.state:
            raise FormatError(f"{self.library}: key {name!r} is missing from the state_dict")
        tensor = self.state[name]
        if shape is not None and tuple(tensor.shape) != shape:
            raise FormatError(f"{self.library}: key {name!r} has shape {list(tensor.shape)}, expected {list(shape)}")
        self.used.add(name)
        return tensor

    def take_optional(self, name: str, shape: tuple[int, ...] | None = None) -> torch.Tensor | None:
        return self.take(name, shape) if name in self.state else None

    def position(self, name: str) -> int:
        return self._position[name]

    def check_all_used(self) -> None:
        extra = [name for name in self.state if name not in self.used]
        if extra:
            more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
            raise FormatError(f"{self.library}: unexpected key {extra[0]!r}{more} in the state_dict: it is not part "
                              f"of a {self.library} KAN as kancompress reads it")


def prefixes_with(state: Iterable[str], suffix: str) -> list[str]:
    """Every prefix P (ending in '.' or empty) with a key P + suffix, in key order."""
    found: list[str] = []
    for name in state:
        if name == suffix or name.endswith("." + suffix):
            prefix = name[: len(name) - len(suffix)]
            if prefix not in found:
                found.append(prefix)
    return found


def _skeleton(name: str) -> str:
    return re.sub(r"\d+", "#", name)


def natural_key(name: str) -> list[Any]:
    """Sort key that orders 'layer2' before 'layer10'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def order_layers(reader: StateReader, prefixes: list[str], widths: Callable[[str], tuple[int, int]]) -> list[str]:
    """The layer prefixes in forward order (module order, numbered names, or the one order whose widths chain),
    checked to chain: layer l's outputs are layer l+1's inputs. `widths(prefix)` is a layer's (in, out)."""
    library, origin = reader.library, reader.source.origin
    if not prefixes:
        raise FormatError(f"{library}: no layers found")
    if reader.source.ordered:
        ordered = sorted(prefixes, key=lambda p: min(reader.position(n) for n in reader.state if n.startswith(p)))
    elif len({_skeleton(p) for p in prefixes}) == 1:
        ordered = sorted(prefixes, key=natural_key)
    else:
        chains = _chains(prefixes, widths)
        if len(chains) != 1:
            names = ", ".join(p.rstrip(".") for p in prefixes)
            raise FormatError(f"{origin}: a safetensors file keeps no module order, and the layers {names} "
                              f"{'fit together in ' + str(len(chains)) + ' orders' if chains else 'do not chain'}; "
                              "save the state_dict with torch.save (.pt keeps the order) or use "
                              "kancompress.from_module(model, inputs)")
        ordered = chains[0]
    for first, second in zip(ordered, ordered[1:]):
        if widths(first)[1] != widths(second)[0]:
            raise FormatError(f"{library}: layer {first.rstrip('.') or '(root)'} has {widths(first)[1]} outputs but "
                              f"the next layer, {second.rstrip('.')}, takes {widths(second)[0]} inputs")
    return ordered


def layer_stack(reader: StateReader, prefixes: list[str],
                widths: Callable[[str], tuple[int, int]]) -> tuple[list[str], list[int]]:
    """`order_layers`, and the stack's widths [in, out of layer 0, out of layer 1, ...]."""
    layers = order_layers(reader, prefixes, widths)
    return layers, [widths(layers[0])[0]] + [widths(p)[1] for p in layers]


def _chains(prefixes: list[str], widths: Callable[[str], tuple[int, int]]) -> list[list[str]]:
    """Every order of all layers in which each layer's inputs equal the previous one's outputs (at most 2)."""
    found: list[list[str]] = []

    def extend(path: list[str]) -> None:
        if len(found) > 1:
            return
        if len(path) == len(prefixes):
            found.append(list(path))
            return
        for prefix in prefixes:
            if prefix not in path and (not path or widths(path[-1])[1] == widths(prefix)[0]):
                extend(path + [prefix])

    extend([])
    return found


def place_norms(reader: StateReader, layers: list[str], widths: list[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """LayerNorms outside the layers, by position in the stack (0..L: p < L before layer p, L after the last),
    from module order, numbered names shared with the layers, or the one position whose width fits."""
    library, origin = reader.library, reader.source.origin
    candidates = [p for p in prefixes_with(reader.state, "weight")
                  if not any(p.startswith(layer) for layer in layers) and reader.has(p + "bias")
                  and p + "weight" not in reader.used and reader.state[p + "weight"].dim() == 1]
    placed: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    depth = len(layers)
    for prefix in candidates:
        name = prefix.rstrip(".") or "(root)"
        if reader.has(prefix + "running_mean"):
            raise FormatError(f"{library}: {name} is a BatchNorm between KAN layers, which kancompress does not "
                              "support there (LayerNorms only)")
        size = reader.state[prefix + "weight"].numel()
        if reader.source.ordered:
            first = min(reader.position(n) for n in reader.state if n.startswith(prefix))
            position = sum(1 for layer in layers
                           if min(reader.position(n) for n in reader.state if n.startswith(layer)) < first)
        elif len({_skeleton(p) for p in layers + [prefix]}) == 1:
            position = sorted(layers + [prefix], key=natural_key).index(prefix)
        else:
            fits = [p for p in range(depth + 1) if widths[p] == size]
            if len(fits) != 1:
                where = f"at any of positions {fits}" if fits else "nowhere (no activation has that width)"
                raise FormatError(f"{origin}: a safetensors file keeps no module order, and the LayerNorm {name} "
                                  f"({size} features) fits {where}; save the state_dict with torch.save (.pt keeps "
                                  "the order) or use kancompress.from_module(model, inputs)")
            position = fits[0]
        if widths[position] != size:
            raise FormatError(f"{library}: LayerNorm {name} has {size} features where the model has "
                              f"{widths[position]} values (position {position} of {depth})")
        if position in placed:
            raise FormatError(f"{library}: two LayerNorms at position {position} of the layer stack; unsupported")
        placed[position] = (reader.take(prefix + "weight", (size,)), reader.take(prefix + "bias", (size,)))
    return placed


def norm_config(positions: Iterable[int], depth: int) -> dict[str, Any]:
    """ModelConfig fields for LayerNorms at these stack positions: `norm_between` when they sit exactly between
    every pair of layers (ChebyKAN's README model), else `layer_norms`."""
    positions = sorted(positions)
    if not positions:
        return {}
    if positions == list(range(1, depth)):
        return {"norm_between": True}
    return {"layer_norms": tuple(positions)}


def fill_norms(model: Any, norms: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Copy placed LayerNorms into a model built with `norm_config`."""
    layers = model.fc_layers()
    for position, (weight, bias) in norms.items():
        norm = layers[position].pre_norm if position < len(layers) else layers[-1].final_norm
        assert norm is not None
        norm.weight.data.copy_(weight)
        norm.bias.data.copy_(bias)


def activation_option(options: ImportOptions, notes: Notes, library: str, default: str, what: str) -> str:
    """The base activation: the user's, else the library default, said in a note (no state_dict stores it)."""
    from kancompress.config import ACTIVATIONS

    if options.base_activation is not None:
        if options.base_activation not in ACTIVATIONS:
            raise FormatError(f"unknown --base-activation {options.base_activation!r}; choose from: "
                              f"{', '.join(ACTIVATIONS)}")
        return options.base_activation
    others = ", ".join(a for a in ACTIVATIONS if a != default)
    notes.assume("base_activation", default,
                 f"{library} stores no base activation: assumed {default} ({what}); if the model was built with "
                 f"another, import again with --base-activation ({others}) or check with --check")
    return default


def built(config: Any, library: str) -> Any:
    """A fresh model of an importer's config, which is validated first: a config the checkpoint implies but
    kancompress cannot hold is a FormatError naming the library."""
    from kancompress.errors import ConfigError
    from kancompress.models import build_model

    try:
        config.validate()
    except ConfigError as exc:
        raise FormatError(f"{library}: checkpoint does not fit: {exc}") from None
    return build_model(config)


def edge_vectors(model: Any, layer: int, vectors: torch.Tensor) -> None:
    """Fill a dense model's layer `layer` with (*edge_shape, |w|) vectors."""
    model.dense_edges().vectors[layer].data.copy_(vectors.reshape(-1, vectors.shape[-1]))
