"""`from_module`: import a live upstream model object, reading what its state_dict cannot say (base activation,
RBF width, strides, KANConv grid) from the module itself, then checking the imported model against the module's
own forward before returning it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from kancompress.errors import FormatError
from kancompress.interop import (
    detect_library,
    efficient_kan,
    fastkan,
    import_source,
    pykan,
    torch_conv_kan,
    wavkan,
)
from kancompress.interop.check import DEFAULT_TOLERANCE, compare
from kancompress.interop.layout import ImportOptions
from kancompress.interop.source import source_from_state_dict
from kancompress.layers import _ACTIVATIONS
from kancompress.models import KANModel

_PROBE = torch.linspace(-6.0, 6.0, 241)


def identify_activation(function: Any, where: str) -> str:
    """The name of a base activation (a module instance, a class or a function), found by evaluating it."""
    if isinstance(function, type) and issubclass(function, nn.Module):
        function = function()  # a class, as some layers keep the constructor argument
    with torch.no_grad():
        try:
            values = function(_PROBE.clone())
        except Exception as exc:  # an activation that does not take a tensor
            raise FormatError(f"{where}: cannot evaluate the base activation {function!r} ({exc})") from None
    for name, candidate in _ACTIVATIONS.items():
        if isinstance(values, torch.Tensor) and torch.allclose(values.float(), candidate(_PROBE), atol=1e-6):
            return name
    raise FormatError(f"{where}: base activation {function!r} is none of {', '.join(_ACTIVATIONS)} (GELU must be "
                      "the exact erf form); kancompress cannot reproduce it")


def _modules_with(module: nn.Module, attribute: str) -> Iterator[tuple[str, Any]]:
    for name, sub in module.named_modules():
        value = getattr(sub, attribute, None)
        if value is not None:
            yield name or type(module).__name__, value


def _options(module: nn.Module, library: str) -> ImportOptions:
    """What `library` needs beyond the state_dict, read from the live module."""
    found: dict[str, Any] = {}
    if library in (efficient_kan.LIBRARY, fastkan.LIBRARY, pykan.LIBRARY, torch_conv_kan.LIBRARY):
        attribute = "base_fun" if library == pykan.LIBRARY else "base_activation"
        names = {identify_activation(value, f"{name}.{attribute}") for name, value in _modules_with(module, attribute)
                 if callable(value)}
        if len(names) > 1:
            raise FormatError(f"the module's layers use different base activations ({', '.join(sorted(names))}); "
                              "kancompress needs one per model")
        if names and library != torch_conv_kan.LIBRARY:
            found["base_activation"] = names.pop()
        elif names and any(hasattr(sub, "spline_conv") for sub in module.modules()):
            found["base_activation"] = names.pop()  # only KANConv layers take it
    if library == fastkan.LIBRARY:
        widths = {float(value) for _, value in _modules_with(module, "denominator")}
        if len(widths) > 1:
            raise FormatError(f"the module's RBF layers use different widths {sorted(widths)}; kancompress needs one")
        if widths:
            found["denominator"] = widths.pop()
    wavelets = {str(value) for _, value in _modules_with(module, "wavelet_type")}
    if len(wavelets) > 1:
        raise FormatError(f"the module's layers use different wavelets {sorted(wavelets)}; kancompress needs one")
    if wavelets and library in (wavkan.LIBRARY, torch_conv_kan.LIBRARY):
        found["wavelet"] = wavelets.pop()
    if library == torch_conv_kan.LIBRARY:
        convs: list[Any] = [sub for sub in module.modules() if hasattr(sub, "base_conv") and hasattr(sub, "stride")]
        if convs:
            found["strides"] = tuple(int(c.stride if isinstance(c.stride, int) else c.stride[0]) for c in convs)
        splines = [sub for sub in convs if hasattr(sub, "spline_conv") and hasattr(sub, "spline_order")]
        if splines:
            first = splines[0]
            found.update(grid_size=int(first.grid_size), spline_order=int(first.spline_order),
                         grid_range=tuple(float(v) for v in first.grid_range))
    return ImportOptions(**found)


def from_module(module: nn.Module, example_inputs: torch.Tensor, library: str | None = None, *,
                tolerance: float = DEFAULT_TOLERANCE) -> KANModel:
    """A kancompress model of a live upstream KAN (efficient-kan, FastKAN, pykan, ChebyKAN, FourierKAN,
    torch-conv-kan), checked against `module(example_inputs)`: a FormatError names the deviation when the two
    differ by more than `tolerance` of the output scale. The module order of its state_dict is used, and its
    base activation, RBF width, strides and KANConv grid are read from the module."""
    if not isinstance(module, nn.Module):
        raise FormatError(f"from_module takes a torch.nn.Module, not {type(module).__name__}")
    source = source_from_state_dict(dict(module.state_dict()), f"the {type(module).__name__} module", ordered=True)
    library = library or detect_library(source)
    if library == wavkan.LIBRARY and any(type(sub).__name__ == "WavKANLayer" for sub in module.modules()):
        library = torch_conv_kan.LIBRARY  # torch-conv-kan's layer: the same keys, and a base branch
    imported = import_source(source, library, _options(module, library))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            expected = module(example_inputs)
    finally:
        module.train(was_training)
    if not isinstance(expected, torch.Tensor):
        raise FormatError(f"the module returned a {type(expected).__name__}, not a tensor; pass a module whose "
                          "forward returns the model's outputs")
    result = compare(imported.model, example_inputs, expected.detach(), tolerance)
    if not result.passed:
        raise FormatError(f"the imported {library} model differs from the module: {result.describe()}; "
                          "it is not imported (a layer or option kancompress does not reproduce)")
    return imported.model
