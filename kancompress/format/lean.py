"""Format versions 7 and 8: the lean container of clustered checkpoints. No torch.

A small clustered model's file used to be mostly header: a 784-32-10 file spent ~1.6 KB of header on ~7 KB of
model (a tensor-table entry per tensor, a CRC per tensor, rANS symbol counts and a full model config as escaped
JSON). The lean container keeps the file a safetensors file that describes itself, and makes every header byte
earn its place.

Version 8 (written now):

- one tensor, `payload` (U8), holding one after another:
  1. the layout table, unsigned LEB128 varints (`table_bytes`): a flags number (bits 0-1 the codebook dtype,
     `DTYPE_CODES`; bit 2 float16 extras; bit 3 a grid table follows), then per layer its index entry
     `k, coding, part bytes` (+ `row` for context coding; coding 0 = packed, 1 = rANS, 2 = context), then, with
     bit 3, per layer its shared grids' entry the same way, or a single 0 for a grid stored whole;
  2. every layer's codebook, layer by layer: (sum of k_l, |w|) at the codebook dtype;
  3. every other tensor of the version-6 layout (`schema.declared_tensors`) as its raw little-endian bytes, one
     after another in name order (`payload_layout`); a rANS-coded stream is preceded there by its model, the k
     symbol counts as varints;
  4. two CRC-32s, 4 bytes each, little-endian: of the header (the 8-byte length and the JSON, as stored), then of
     every data byte before it. Every byte of the file is covered, and both are verified before anything is
     decoded.
- metadata: `format`, `format_version`, `model` (only the config fields that differ from `CONFIG_DEFAULTS`;
  `model` and `widths` always) and `provenance` only when it is not empty; the header is not padded.

Version 7 (read only):

- two tensors: `codebooks` (sum of k_l, |w|) at the codebook dtype (the safetensors dtype says F32, F16, BF16 or
  I8), and `payload` (U8): parts 3 above;
- metadata `indices`: per layer `[k, coding, part bytes]`, plus `row` for context coding; `grids` (shared adapted
  grids) a list of such entries or null; `extras` "float16" when the extras are half precision; `model` and
  `provenance` as in version 8; `crc`: 16 hex digits, the CRC-32 of the other metadata entries
  (`schema.metadata_checksum`) followed by the CRC-32 of the whole data section.

In both, n and bits follow from the config and k; `extras` float16 means every float tensor outside the edges but
stored grids (norms, biases, Gram β, BatchNorm statistics, the conv head) is stored as F16. Neither has a metadata
`kind`: a lean file is clustered.

Reading gives the same `Header` as older versions: `tensors` holds the version-6 tensors with their byte ranges
inside the data section, so everything downstream (`load_checkpoint`, `inspect`) sees one logical layout.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kancompress.format.schema import (
    CODEBOOK_DTYPES,
    IndexEntry,
    TensorInfo,
    edge_tensor_names,
    grid_tensor_names,
)

LEAN_VERSION = 7  # the first lean version (two tensors, JSON index table)
TABLE_VERSION = 8  # one tensor, the layout table and the CRCs inside it
CODEBOOKS = "codebooks"
PAYLOAD = "payload"
CODINGS: tuple[str, ...] = ("packed", "rans", "context")  # the coding numbers of the index table
DTYPE_CODES: tuple[str, ...] = ("float32", "float16", "bfloat16", "int8")  # v8 flags bits 0-1
EXTRAS_FLAG, GRIDS_FLAG = 4, 8  # v8 flags: float16 extras; a grid table follows the index table
TRAILER_BYTES = 8  # v8: the header's and the data's CRC-32 at the payload's end
STORAGE_DTYPES: dict[str, str] = {stored: name for name, stored in CODEBOOK_DTYPES.items()}  # "I8" -> "int8"

CONFIG_DEFAULTS: dict[str, Any] = {
    "model": "kan", "widths": [64, 32, 10],
    "basis": {"grid_size": 5, "spline_order": 3, "grid_min": -1.0, "grid_max": 1.0, "degree": 3, "denominator": None,
              "stored_grid": False, "wavelet": "mexican_hat"},
    "base_activation": "silu", "meta": None, "arch": "mlp", "conv": None, "output_bias": False, "norm_between": False,
    "layer_norms": None, "basis_norm": None, "mult_nodes": None, "mult_arity": 2, "task": "classification",
    "input_affine": False, "target_affine": False, "grid_ranges": None, "version": 1,
}
"""`ModelConfig()` as JSON when format 7 was introduced; a lean file's `model` holds only what differs from it
(`model` and `widths` always)."""


def compact_config(config: dict[str, Any]) -> dict[str, Any]:
    """The fields of a config's JSON form (`ModelConfig.to_dict`) that a lean file stores."""
    full = expand_config({})
    full.update(copy.deepcopy(config))
    full["basis"] = {**CONFIG_DEFAULTS["basis"], **config.get("basis", {})}
    compact: dict[str, Any] = {}
    for key, value in full.items():
        default = CONFIG_DEFAULTS[key]
        if key == "basis":
            value = {name: v for name, v in value.items() if v != default[name]}
            default = {}
        if key in ("model", "widths") or _json(value) != _json(default):
            compact[key] = value
    return compact


def expand_config(compact: dict[str, Any]) -> dict[str, Any]:
    """A lean file's `model` entry back in the full JSON form `ModelConfig.from_dict` reads."""
    if not isinstance(compact, dict) or not isinstance(compact.get("basis", {}), dict):
        raise ValueError("the model config must be a JSON object")
    unknown = sorted(set(compact) - set(CONFIG_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown model config key {unknown[0]!r}")
    full = copy.deepcopy(CONFIG_DEFAULTS)
    full.update(copy.deepcopy({key: value for key, value in compact.items() if key != "basis"}))
    full["basis"].update(compact.get("basis", {}))
    return full


def _json(value: Any) -> Any:
    """Tuples and lists compare alike (the config holds tuples, its JSON lists)."""
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


def varints(values: tuple[int, ...] | list[int]) -> bytes:
    """Unsigned LEB128: 7 bits a byte, least significant first, high bit set on all but a number's last byte."""
    out = bytearray()
    for value in values:
        while True:
            low, value = value & 0x7F, value >> 7
            out.append(low | (0x80 if value else 0))
            if not value:
                break
    return bytes(out)


def read_varints(data: bytes, count: int) -> tuple[list[int], int]:
    """`count` LEB128 numbers from the start of `data`: (values, bytes read); ValueError if they run past its end
    or a number takes more than 5 bytes (more than 32 bits)."""
    values: list[int] = []
    position = 0
    for _ in range(count):
        value = shift = 0
        while True:
            if position >= len(data) or shift > 28:
                raise ValueError("symbol counts run past their stream or overflow")
            byte = data[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        values.append(value)
    return values, position


def stream_entries(table: list[IndexEntry], grids: list[IndexEntry | None] | None) -> dict[str, IndexEntry]:
    """Every index stream of a clustered file by its version-6 tensor name: each layer's edge indices, then each
    shared grid's index."""
    streams = {edge_tensor_names(layer)[2]: entry for layer, entry in enumerate(table)}
    streams.update({grid_tensor_names(layer)[2]: entry for layer, entry in enumerate(grids or ()) if entry is not None})
    return streams


def model_prefix(entry: IndexEntry) -> bytes:
    """What a lean payload stores before an index stream: a rANS stream's symbol counts (others need none)."""
    if entry.coding != "rans":
        return b""
    assert entry.counts is not None
    return varints(entry.counts)


def compact_entry(entry: IndexEntry) -> list[int]:
    """An index-table entry as a lean file stores it: [k, coding, part bytes] (+ [row] for context coding)."""
    row = [entry.row] if entry.coding == "context" and entry.row is not None else []
    return [entry.k, CODINGS.index(entry.coding), len(model_prefix(entry)) + entry.bytes, *row]


def entry_bytes(entry: IndexEntry) -> int:
    """Bytes an index stream adds to a version-8 file: its part of the payload and its table entry."""
    return compact_entry(entry)[2] + len(varints(compact_entry(entry)))


def table_bytes(codebook_dtype: str, extras_dtype: str, table: list[IndexEntry],
                grids: list[IndexEntry | None] | None) -> bytes:
    """The layout table that opens a version-8 payload (the module docstring)."""
    flags = DTYPE_CODES.index(codebook_dtype) | (EXTRAS_FLAG if extras_dtype == "float16" else 0)
    values = [flags | (GRIDS_FLAG if grids is not None else 0)]
    for entry in table:
        values += compact_entry(entry)
    for grid in grids or ():
        values += compact_entry(grid) if grid is not None else [0]
    return varints(values)


@dataclass(frozen=True)
class LayoutTable:
    """A version-8 layout table as read, its entries not yet checked against the model (`parse_entry` does)."""

    codebook_dtype: str
    extras_dtype: str
    entries: list[list[int]]  # per layer [k, coding, part bytes] (+ [row] for coding 2)
    grids: list[list[int] | None] | None  # per layer its grid entry, None for a grid stored whole
    length: int  # bytes the table takes


def read_table(data: bytes, layers: int) -> LayoutTable:
    """The layout table at the start of a version-8 payload; ValueError naming what is wrong."""
    position = 0

    def number() -> int:
        nonlocal position
        try:
            values, used = read_varints(data[position:position + 5], 1)
        except ValueError as exc:
            raise ValueError(f"the layout table is cut short or malformed ({exc})") from None
        position += used
        return values[0]

    def entry(k: int) -> list[int]:
        values = [k, number(), number()]
        return values + [number()] if values[1] == CODINGS.index("context") else values

    flags = number()
    if flags >= 2 * GRIDS_FLAG:
        raise ValueError(f"unknown layout flags {flags}; the file is damaged or from a newer kancompress")
    entries = [entry(number()) for _ in range(layers)]
    grids: list[list[int] | None] | None = None
    if flags & GRIDS_FLAG:
        grids = []
        for _ in range(layers):
            k = number()
            grids.append(entry(k) if k else None)
    return LayoutTable(DTYPE_CODES[flags & 3], "float16" if flags & EXTRAS_FLAG else "float32", entries, grids,
                       position)


def parse_entry(what: str, entry: Any, n: int, min_k: int, max_k: int) -> tuple[int, str, int, int | None]:
    """A lean table entry checked for shape and ranges: (k, coding, part bytes, row); raises ValueError naming the
    problem (the caller adds the file's path)."""
    if not isinstance(entry, list) or len(entry) not in (3, 4) or not all(_is_int(v) for v in entry):
        raise ValueError(f"{what}: its index entry must be [k, coding, bytes] or [k, 2, bytes, row] integers")
    k, code, part = entry[:3]
    if not min_k <= k <= max_k:
        raise ValueError(f"{what} has invalid codebook size k={k} (expected {min_k}..{max_k})")
    if not 0 <= code < len(CODINGS):
        raise ValueError(f"{what} uses unknown index coding {code} (0 packed, 1 rANS, 2 context)")
    coding = CODINGS[code]
    if (len(entry) == 4) != (coding == "context"):
        raise ValueError(f"{what}: a context-coded entry (and only it) ends with its row")
    row = entry[3] if coding == "context" else None
    if row is not None and not 1 <= row <= n:
        raise ValueError(f"{what}: 'row' must be an integer in 1..{n}, not {row}")
    if not 0 < part <= 4 * n + 5 * k + 64:
        raise ValueError(f"{what}: invalid index stream length {part}")
    return k, coding, part, row


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def codebook_names(layers: int) -> list[str]:
    """The version-6 codebook tensors that a lean file stacks (v7: into `codebooks`), in layer order."""
    return [edge_tensor_names(layer)[0] for layer in range(layers)]


EXTRAS_DTYPES: dict[str, str] = {"float32": "F32", "float16": "F16"}  # a model's extras_dtype -> stored dtype


def rounded_extra(name: str) -> bool:
    """Whether a tensor is an extra that `extras` stores at its precision: any outside the edges but the stored
    B-spline grids (`basis.grid`, `basis.grid_rows`), whose knots stay exact."""
    return not name.startswith("edges.") and ".basis.grid" not in name


def stored_tensors(declared: dict[str, TensorInfo], extras_dtype: str) -> dict[str, TensorInfo]:
    """The version-6 tensors at the dtype a lean payload stores them: float32 extras at `extras_dtype`."""
    dtype = EXTRAS_DTYPES[extras_dtype]
    return {name: TensorInfo(dtype, info.shape) if info.dtype == "F32" and rounded_extra(name) else info
            for name, info in declared.items()}


def payload_layout(declared: dict[str, TensorInfo], prefixes: dict[str, int]) -> list[tuple[str, int, int]]:
    """Where each version-6 tensor but the codebooks lies in the payload: (name, start of its bytes, prefix bytes
    before them), in name order; `prefixes` gives the model bytes (rANS counts) stored before a stream."""
    books = {name for name in declared if name.startswith("edges.layers.") and name.endswith(".codebook")}
    layout: list[tuple[str, int, int]] = []
    position = 0
    for name in sorted(set(declared) - books):
        prefix = prefixes.get(name, 0)
        layout.append((name, position + prefix, prefix))
        position += prefix + declared[name].nbytes
    return layout


def payload_size(declared: dict[str, TensorInfo], prefixes: dict[str, int]) -> int:
    layout = payload_layout(declared, prefixes)
    if not layout:
        return 0
    name, start, _ = layout[-1]
    return start + declared[name].nbytes
