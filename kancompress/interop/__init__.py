"""Interop with the KAN libraries people use: one module per library (detect its keys, read them, map them onto a
kancompress config and edge vectors, exactly), the layouts they are saved in (`source`, `layout`), the check
against the original's outputs (`check`, `live.from_module`), and the exporters (`state_export`; ONNX in
`kancompress.onnx_export`).

Research notes on every layout: `../shared/research/kan-libraries.md`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from kancompress.errors import FormatError
from kancompress.interop import (
    chebykan,
    efficient_kan,
    fastkan,
    fourierkan,
    pykan,
    torch_conv_kan,
    torch_conv_kan_fc,
    wavkan,
)
from kancompress.interop.layout import OPTION_FLAGS, ImportOptions, Notes, StateReader, prefixes_with
from kancompress.interop.source import SourceState, read_recorded_metadata, read_source, source_from_state_dict
from kancompress.interop.state_export import EXPORT_LIBRARIES, export_state_dict
from kancompress.models import KANModel

READERS: tuple[ModuleType, ...] = (efficient_kan, fastkan, pykan, torch_conv_kan, wavkan, torch_conv_kan_fc, chebykan,
                                   fourierkan)
"""Importers in detection order: the first whose `detect` accepts the keys reads them."""

LIBRARIES: tuple[str, ...] = tuple(dict.fromkeys(reader.LIBRARY for reader in READERS))

UNSUPPORTED: dict[str, str] = {
    "coeffs_a": "a rational (KAT GR-KAN) layer: it has no per-edge vectors to cluster",
}
"""Keys of KAN layers that are recognised but not supported, and the reason given."""


@dataclass
class Imported:
    """An imported model, the library it came from, and what the import assumed (`notes`)."""

    model: KANModel
    library: str
    notes: Notes = field(default_factory=Notes)


def detect_library(source: SourceState) -> str:
    names = list(source.tensors)
    for key, reason in UNSUPPORTED.items():
        if prefixes_with(names, key):
            raise FormatError(f"{source.origin}: {reason}")
    for reader in READERS:
        if reader.detect(names):
            return str(reader.LIBRARY)
    example = next(iter(names), "<empty>")
    raise FormatError(f"{source.origin}: unrecognised state_dict (first key {example!r}): not a KAN from "
                      f"{', '.join(LIBRARIES)}; pass --from to name the library if it is one of them")


def import_source(source: SourceState, library: str | None = None,
                  options: ImportOptions = ImportOptions()) -> Imported:
    """A dense kancompress model reproducing an upstream library's state_dict (library detected if None), with
    notes of every default it assumed for what the file does not store. Options that do not apply to the library
    are refused."""
    library = library or detect_library(source)
    if library not in LIBRARIES:
        raise FormatError(f"unknown library {library!r}; choose from: {', '.join(LIBRARIES)}")
    names = list(source.tensors)
    candidates = [r for r in READERS if r.LIBRARY == library]
    reader = next((r for r in candidates if r.detect(names)), candidates[0])
    unused = sorted(options.given() - reader.USES)
    if unused:
        flags = ", ".join(OPTION_FLAGS[name] for name in unused)
        raise FormatError(f"{flags} does not apply to {library} checkpoints; drop it")
    notes = Notes()
    state = StateReader(source, library)
    model: KANModel = reader.read(state, options, notes)
    state.check_all_used()
    if source.container is not None:
        notes.say(f"read the model's state_dict from the checkpoint's {source.container!r} entry")
    return Imported(model, library, notes)


def import_state_dict(state: dict[str, Any], library: str | None = None,
                      options: ImportOptions = ImportOptions(), ordered: bool = False) -> KANModel:
    """`import_source` on an in-memory state_dict (or training checkpoint dict); the model only. `ordered`: the
    dict's order is the module order (true of `module.state_dict()` and of `torch.load`, not of safetensors'
    `load_file`, which sorts)."""
    return import_source(source_from_state_dict(state, "the state_dict", ordered), library, options).model


__all__ = ["EXPORT_LIBRARIES", "LIBRARIES", "ImportOptions", "Imported", "Notes", "SourceState", "detect_library",
           "export_state_dict", "import_source", "import_state_dict", "read_recorded_metadata", "read_source",
           "source_from_state_dict"]
