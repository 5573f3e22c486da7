"""Format version 7: the lean container of clustered checkpoints. No torch.

A small clustered model's file used to be mostly header: a 784-32-10 file spent ~1.6 KB of header on ~7 KB of
model (a tensor-table entry per tensor, a CRC per tensor, rANS symbol counts and a full model config as escaped
JSON). Version 7 keeps the file a safetensors file that describes itself, and makes every header byte earn its
place:

- two tensors: `codebooks` (sum of k_l, |w|) at the codebook dtype (every layer's codebook, layer by layer; the
  safetensors dtype says F32, F16, BF16 or I8), and `payload` (U8): every other tensor of the version-6 layout
  (`schema.declared_tensors`) as its raw little-endian bytes, one after another in name order (`payload_layout`);
  a rANS-coded stream is preceded there by its model, the k symbol counts as unsigned LEB128 varints;
- metadata `indices`: per layer `[k, coding, part bytes]`, plus `row` for context coding, coding 0 = packed,
  1 = rANS, 2 = context (n and bits follow from the config and k; the codebook dtype from the `codebooks` tensor);
  `grids` (shared adapted grids) is a list of such entries or null;
- no metadata `kind`: a version-7 file is clustered;
- metadata `model`: only the config fields that differ from `CONFIG_DEFAULTS` (frozen here, so a later change of
  a dataclass default cannot change what a version-7 file means);
- metadata `extras`, only when not float32: "float16", the precision of every float tensor outside the edges
  but stored grids (norms, biases, Gram β, BatchNorm statistics, the conv head), which the payload then holds as
  F16;
- metadata `crc`: 16 hex digits, the CRC-32 of the other metadata entries (`schema.metadata_checksum`) followed by
  the CRC-32 of the whole data section: one check covers every stream, verified before anything is decoded.

Reading gives the same `Header` as older versions: `tensors` holds the version-6 tensors with their byte ranges
inside the data section, so everything downstream (`load_checkpoint`, `inspect`) sees one logical layout.
"""

from __future__ import annotations

import copy
from typing import Any

from kancompress.format.schema import (
    CODEBOOK_DTYPES,
    IndexEntry,
    TensorInfo,
    edge_tensor_names,
    grid_tensor_names,
)

LEAN_VERSION = 7
CODEBOOKS = "codebooks"
PAYLOAD = "payload"
CODINGS: tuple[str, ...] = ("packed", "rans", "context")  # the coding numbers of the v7 index table
STORAGE_DTYPES: dict[str, str] = {stored: name for name, stored in CODEBOOK_DTYPES.items()}  # "I8" -> "int8"

CONFIG_DEFAULTS: dict[str, Any] = {
    "model": "kan", "widths": [64, 32, 10],
    "basis": {"grid_size": 5, "spline_order": 3, "grid_min": -1.0, "grid_max": 1.0, "degree": 3, "denominator": None,
              "stored_grid": False, "wavelet": "mexican_hat"},
    "base_activation": "silu", "meta": None, "arch": "mlp", "conv": None, "output_bias": False, "norm_between": False,
    "layer_norms": None, "basis_norm": None, "mult_nodes": None, "mult_arity": 2, "task": "classification",
    "input_affine": False, "target_affine": False, "grid_ranges": None, "version": 1,
}
"""`ModelConfig()` as JSON when format 7 was introduced; a v7 file's `model` holds only what differs from it
(`model` and `widths` always)."""


def compact_config(config: dict[str, Any]) -> dict[str, Any]:
    """The fields of a config's JSON form (`ModelConfig.to_dict`) that a v7 file stores."""
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
    """A v7 file's `model` entry back in the full JSON form `ModelConfig.from_dict` reads."""
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
    """What a v7 payload stores before an index stream: a rANS stream's symbol counts (others need none)."""
    if entry.coding != "rans":
        return b""
    assert entry.counts is not None
    return varints(entry.counts)


def compact_entry(entry: IndexEntry) -> list[int]:
    """An index-table entry as a v7 file stores it: [k, coding, part bytes] (+ [row] for context coding)."""
    row = [entry.row] if entry.coding == "context" and entry.row is not None else []
    return [entry.k, CODINGS.index(entry.coding), len(model_prefix(entry)) + entry.bytes, *row]


def entry_bytes(entry: IndexEntry) -> int:
    """Bytes an index stream adds to a v7 file: its part of the payload and its table entry (with a comma)."""
    return compact_entry(entry)[2] + len(_canonical(compact_entry(entry))) + 1


def _canonical(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


def parse_entry(what: str, entry: Any, n: int, min_k: int, max_k: int) -> tuple[int, str, int, int | None]:
    """A v7 table entry checked for shape and ranges: (k, coding, part bytes, row); raises ValueError naming the
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
    """The version-6 codebook tensors that v7 stacks into `codebooks`, in layer order."""
    return [edge_tensor_names(layer)[0] for layer in range(layers)]


EXTRAS_DTYPES: dict[str, str] = {"float32": "F32", "float16": "F16"}  # a model's extras_dtype -> stored dtype


def rounded_extra(name: str) -> bool:
    """Whether a tensor is an extra that `extras` stores at its precision: any outside the edges but the stored
    B-spline grids (`basis.grid`, `basis.grid_rows`), whose knots stay exact."""
    return not name.startswith("edges.") and ".basis.grid" not in name


def stored_tensors(declared: dict[str, TensorInfo], extras_dtype: str) -> dict[str, TensorInfo]:
    """The version-6 tensors at the dtype a v7 payload stores them: float32 extras at `extras_dtype`."""
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
