"""Reading a checkpoint's header: bounds, format, version, kind, model config, index table and the tensor table,
all validated against the declared schema before any tensor data is touched. No torch."""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kancompress.config import ModelConfig
from kancompress.entropy import CONTEXT_MAX_K
from kancompress.errors import ConfigError, FormatError
from kancompress.format.bits import index_bits, packed_length
from kancompress.format.files import PathLike
from kancompress.format.lean import (
    CODEBOOKS,
    EXTRAS_DTYPES,
    LEAN_VERSION,
    PAYLOAD,
    STORAGE_DTYPES,
    TABLE_VERSION,
    TRAILER_BYTES,
    expand_config,
    model_prefix,
    parse_entry,
    payload_layout,
    payload_size,
    read_table,
    read_varints,
    stored_tensors,
    stream_entries,
)
from kancompress.format.schema import (
    CODEBOOK_DTYPES,
    FILE_CODINGS,
    FORMAT,
    FORMAT_VERSION,
    ITEM_BYTES,
    KINDS,
    MAX_HEADER_BYTES,
    MAX_JSON_DEPTH,
    MAX_K,
    METADATA_KEYS,
    IndexEntry,
    TensorInfo,
    declared_tensors,
    edge_tensor_names,
    grid_tensor_names,
    metadata_checksum,
    required_version,
    v6_features,
)


_NOT_IN: dict[int, tuple[str, ...]] = {
    **{version: ("crc", "extras") for version in range(1, LEAN_VERSION)}, LEAN_VERSION: ("checksums",),
    TABLE_VERSION: ("checksums", "crc", "extras", "indices", "grids", "kind"),
}
"""Metadata entries that a file of each version cannot hold."""


@dataclass(frozen=True)
class Header:
    """What a checkpoint says about itself, read without touching tensor data."""

    path: Path
    kind: str
    config: ModelConfig
    provenance: dict[str, Any]
    tensors: dict[str, TensorInfo]
    indices: list[IndexEntry] = field(default_factory=list)  # clustered: the index table, one entry a layer
    file_size: int = 0
    version: int = FORMAT_VERSION
    tensor_checksums: dict[str, str] | None = None  # CRC-32 per tensor (None: a file from before checksums)
    data_start: int = 0  # byte offset of the data section in the file
    grids: list[IndexEntry | None] | None = None  # v5: per layer, how its grid is stored as shared rows (or None)
    data_crc: str | None = None  # v7: CRC-32 of the whole data section (v8: of all of it but this CRC), verified on
    # reading and again on loading
    extras_dtype: str = "float32"  # v7: precision of the extras (float tensors outside the edges) in the file
    header_crc: str | None = None  # v8: CRC-32 of the header (its length and JSON, as stored)

    def intact(self, content: bytes) -> bool:
        """Whether `content`, the whole file read again, still matches the CRCs read with this lean header."""
        if self.header_crc is None:
            return f"{zlib.crc32(content[self.data_start:]):08x}" == self.data_crc
        return (f"{zlib.crc32(content[:self.data_start]):08x}" == self.header_crc
                and f"{zlib.crc32(content[self.data_start:-4]):08x}" == self.data_crc)

    @property
    def stream_models(self) -> dict[str, int]:
        """Versions 7 and 8: the bytes of each rANS stream's symbol counts, stored in the payload before the stream
        (named by its tensor); older versions keep them in the header."""
        if self.version < LEAN_VERSION:
            return {}
        return {name: len(model_prefix(entry)) for name, entry in stream_entries(self.indices, self.grids).items()
                if entry.coding == "rans"}

    @property
    def ks(self) -> list[int] | None:
        return [entry.k for entry in self.indices] if self.kind == "clustered" else None


def read_header(path: PathLike, check_tensors: bool = True) -> Header:
    """Read and validate a checkpoint's header (format, version, kind, config, index table and, unless
    `check_tensors` is False, every tensor's name, dtype and shape against the declared schema)."""
    path = Path(path)
    raw, size, header_length = _raw_header(path)
    meta = raw.get("__metadata__")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise FormatError(f"{path}: not a kancompress checkpoint (its metadata must map names to strings)")
    if meta.get("format") != FORMAT:
        raise FormatError(f"{path}: not a kancompress checkpoint (no format={FORMAT!r} in its metadata); "
                          "use `kancompress import` for checkpoints of other libraries")
    unknown = sorted(set(meta) - set(METADATA_KEYS))
    if unknown:
        raise FormatError(f"{path}: unknown metadata entry {unknown[0]!r}; the file is damaged or from a newer "
                          "kancompress")
    text = meta.get("format_version", "")
    if not (text.isascii() and text.isdigit()) or len(text) > 6:
        raise FormatError(f"{path}: invalid format_version {text!r}")
    version = int(text)
    if version > FORMAT_VERSION:
        raise FormatError(f"{path}: format version {version} is newer than this kancompress reads "
                          f"({FORMAT_VERSION}); upgrade kancompress")
    if version < 1:
        raise FormatError(f"{path}: invalid format_version {text!r}")
    for wrong in _NOT_IN[min(version, TABLE_VERSION)]:
        if wrong in meta:
            raise FormatError(f"{path}: unknown metadata entry {wrong!r} for format version {version}; the file is "
                              "damaged")
    content = _verified_content(path, raw, size, 8 + header_length) if version >= TABLE_VERSION else b""
    tensor_checksums = _checksums(path, meta, raw)
    kind = meta.get("kind", "clustered" if version >= LEAN_VERSION else None)  # v7 writes it only if not clustered
    if kind not in KINDS:
        raise FormatError(f"{path}: unknown checkpoint kind {kind!r}; expected one of {', '.join(KINDS)}")
    try:
        model_json = _json_field(path, meta, "model")
        config = ModelConfig.from_dict(expand_config(model_json) if version >= LEAN_VERSION else model_json)
    except (ConfigError, ValueError) as exc:
        raise FormatError(f"{path}: invalid model config: {exc}") from None
    provenance = _json_field(path, meta, "provenance") if "provenance" in meta else {}
    if not isinstance(provenance, dict):
        raise FormatError(f"{path}: provenance must be a JSON object")
    needed = required_version(config)  # (v4's context coding is checked in `_index_table`)
    if version < needed and needed > 2:
        what = (", ".join(v6_features(config)) if needed == 6 else "per-layer grid ranges"
                if config.grid_ranges is not None else f"a {config.task} model with a stored data transform")
        raise FormatError(f"{path}: a format version {version} file cannot hold {what} (that needs version {needed})")
    if (kind == "meta") != (config.meta is not None):
        raise FormatError(f"{path}: kind {kind!r} does not match the model config's meta-learner setting")
    if version >= TABLE_VERSION:
        table, grid_table, logical, extras = _table_layout(path, content, config, 8 + header_length)
        return Header(path, kind, config, provenance, logical, table, size, version, None, 8 + header_length,
                      grid_table, content[-4:][::-1].hex(), extras, content[-8:-4][::-1].hex())
    if version >= LEAN_VERSION:
        if kind != "clustered":
            raise FormatError(f"{path}: a format version {version} file holds a clustered model, not {kind!r}")
        extras = meta.get("extras", "float32")
        if extras not in EXTRAS_DTYPES or "extras" in meta and extras == "float32":
            raise FormatError(f"{path}: metadata 'extras' must be \"float16\" (or absent: float32), not {extras!r}")
        table, grid_table, logical, data_crc = _lean_layout(path, meta, raw, config, 8 + header_length, size, extras)
        return Header(path, kind, config, provenance, logical, table, size, version, None, 8 + header_length,
                      grid_table, data_crc, extras)
    indices: list[IndexEntry] = []
    if kind == "clustered":
        indices = _index_table(path, _json_field(path, meta, "indices"), config, version)
    grids = _grid_table(path, _json_field(path, meta, "grids"), config, version) if "grids" in meta else None
    tensors = {name: TensorInfo(e["dtype"], tuple(e["shape"]), (e["data_offsets"][0], e["data_offsets"][1]))
               for name, e in raw.items() if name != "__metadata__"}
    header = Header(path, kind, config, provenance, tensors, indices, size, version, tensor_checksums,
                    8 + header_length, grids)
    if check_tensors:
        check_tensor_table(header)
    return header


def check_tensor_table(header: Header) -> None:
    """The file holds exactly the declared tensors, each with its declared dtype and shape."""
    expected = declared_tensors(header.config, header.kind, header.indices or None, header.grids)
    path = header.path
    missing = sorted(set(expected) - set(header.tensors))
    if missing:
        raise FormatError(f"{path}: tensor {missing[0]!r} is missing")
    unexpected = sorted(set(header.tensors) - set(expected))
    if unexpected:
        raise FormatError(f"{path}: unexpected tensor {unexpected[0]!r} for a {header.kind} checkpoint")
    for name, want in expected.items():
        got = header.tensors[name]
        if got.shape != want.shape:
            raise FormatError(f"{path}: tensor {name!r} has shape {list(got.shape)}, expected {list(want.shape)}")
        if got.dtype != want.dtype:
            raise FormatError(f"{path}: tensor {name!r} has dtype {got.dtype}, expected {want.dtype}")


def _raw_header(path: Path) -> tuple[dict[str, Any], int, int]:
    """Parse the safetensors header with bounds checks; returns (header JSON, file size, header length)."""
    if not path.exists():
        raise FormatError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise FormatError(f"{path}: is a folder, not a checkpoint file")
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise FormatError(f"{path}: too short to be a safetensors file ({size} bytes)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > MAX_HEADER_BYTES or header_len > size - 8:
                raise FormatError(f"{path}: not a safetensors file or truncated (header claims {header_len} bytes); "
                                  "if it is a PyTorch or upstream checkpoint, run `kancompress import` first")
            raw = handle.read(header_len)
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc.strerror})") from None
    header = _strict_json(path, raw, "its header")
    if not isinstance(header, dict):
        raise FormatError(f"{path}: not a safetensors file (its header is not a JSON object)")
    data_size = size - 8 - header_len
    for name, entry in header.items():
        if name != "__metadata__":
            _check_entry(path, name, entry, data_size)
    return header, size, header_len


def _strict_json(path: Path, text: bytes | str, what: str) -> Any:
    """JSON with duplicate keys and deep nesting refused (either could hide or crash on a crafted file)."""
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            duplicate = next(key for key in keys if keys.count(key) > 1)
            raise FormatError(f"{path}: {what} names {duplicate!r} twice; the file is damaged")
        return dict(pairs)

    try:
        raw = text.decode("utf-8") if isinstance(text, bytes) else text
        if _nesting(raw) > MAX_JSON_DEPTH:
            raise FormatError(f"{path}: {what} is nested deeper than {MAX_JSON_DEPTH} levels; refused")
        return json.loads(raw, object_pairs_hook=unique)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise FormatError(f"{path}: {what} is not valid JSON (not a safetensors file, or damaged)") from None


def _nesting(text: str) -> int:
    """Deepest bracket nesting of a JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _checksums(path: Path, meta: dict[str, str], raw: dict[str, Any]) -> dict[str, str] | None:
    """Verify the metadata checksum now; return the tensors' checksums for `load_checkpoint` (None: no checksums)."""
    if "checksums" not in meta:
        return None
    table = _strict_json(path, meta["checksums"], "metadata field 'checksums'")
    if not isinstance(table, dict) or set(table) != {"metadata", "tensors"} or not isinstance(table["tensors"], dict):
        raise FormatError(f"{path}: metadata field 'checksums' is malformed")
    values = [table["metadata"], *table["tensors"].values()]
    if not all(isinstance(v, str) and len(v) == 8 and all(c in "0123456789abcdef" for c in v) for v in values):
        raise FormatError(f"{path}: metadata field 'checksums' is malformed")
    if table["metadata"] != metadata_checksum(meta):
        raise FormatError(f"{path}: the metadata do not match their checksum; the file is damaged")
    names = {name for name in raw if name != "__metadata__"}
    if set(table["tensors"]) != names:
        raise FormatError(f"{path}: the checksums do not list the file's tensors; the file is damaged")
    return dict(table["tensors"])


def _verified_content(path: Path, raw: dict[str, Any], size: int, data_start: int) -> bytes:
    """A version-8 file read whole, its one tensor checked to cover the data section and both CRCs (of the
    header, of the data) verified, before anything in it is parsed further."""
    physical = {name: entry for name, entry in raw.items() if name != "__metadata__"}
    if set(physical) != {PAYLOAD}:
        raise FormatError(f"{path}: a format version {TABLE_VERSION} file holds exactly one tensor, {PAYLOAD!r}")
    payload = physical[PAYLOAD]
    if payload["dtype"] != "U8" or len(payload["shape"]) != 1:
        raise FormatError(f"{path}: tensor {PAYLOAD!r} must be a 1-D U8 tensor")
    if payload["data_offsets"] != [0, size - data_start] or size - data_start < TRAILER_BYTES:
        raise FormatError(f"{path}: tensor {PAYLOAD!r} must fill the whole data section; the file is damaged")
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc.strerror})") from None
    if len(content) != size:
        raise FormatError(f"{path}: changed while it was read; try again")
    if zlib.crc32(content[:data_start]).to_bytes(4, "little") != content[-8:-4]:
        raise FormatError(f"{path}: the header does not match its checksum; the file is damaged")
    if zlib.crc32(content[data_start:-4]).to_bytes(4, "little") != content[-4:]:
        raise FormatError(f"{path}: the tensor data do not match their checksum; the file is damaged")
    return content


def _table_layout(
    path: Path, content: bytes, config: ModelConfig, data_start: int,
) -> tuple[list[IndexEntry], list[IndexEntry | None] | None, dict[str, TensorInfo], str]:
    """A verified version-8 file (`format.lean`) unfolded: its index table, grid table, the version-6 tensors with
    their byte ranges in the data section, and the extras dtype."""
    data = content[data_start:-TRAILER_BYTES]
    try:
        layout = read_table(data, len(config.num_edges))
        streams = _lean_streams(config, layout.entries, layout.grids)
    except ValueError as exc:
        raise FormatError(f"{path}: {exc}") from None
    books_begin = layout.length
    rows = sum(streams[edge_tensor_names(layer)[2]][1] for layer in range(len(config.num_edges)))  # sum of k_l
    rest_begin = books_begin + rows * config.edge_width * ITEM_BYTES[CODEBOOK_DTYPES[layout.codebook_dtype]]
    entries, logical, rest_size = _unfold(path, config, streams, layout.codebook_dtype, layout.extras_dtype, data,
                                          books_begin, rest_begin)
    if rest_begin + rest_size != len(data):
        raise FormatError(f"{path}: tensor {PAYLOAD!r} holds {len(data) + TRAILER_BYTES} bytes, its layout table "
                          f"needs {rest_begin + rest_size + TRAILER_BYTES}")
    table = [entries[name] for name in entries if name.startswith("edges.")]
    return table, _grid_entries(config, entries) if layout.grids is not None else None, logical, layout.extras_dtype


def _lean_layout(
    path: Path, meta: dict[str, str], raw: dict[str, Any], config: ModelConfig, data_start: int, size: int,
    extras: str,
) -> tuple[list[IndexEntry], list[IndexEntry | None] | None, dict[str, TensorInfo], str]:
    """A version-7 file (`format.lean`) checked and unfolded: its index table, grid table, the version-6 tensors
    with their byte ranges in the data section, and the data CRC. The whole data section is read and checked
    against its CRC first: the rANS symbol counts read here come from verified bytes."""
    crc = meta.get("crc")
    if not isinstance(crc, str) or len(crc) != 16 or not all(c in "0123456789abcdef" for c in crc):
        raise FormatError(f"{path}: metadata field 'crc' is missing or malformed")
    if crc[:8] != metadata_checksum(meta):
        raise FormatError(f"{path}: the metadata do not match their checksum; the file is damaged")
    physical = {name: entry for name, entry in raw.items() if name != "__metadata__"}
    if set(physical) != {CODEBOOKS, PAYLOAD}:
        raise FormatError(f"{path}: a format version 7 file holds exactly the tensors {CODEBOOKS!r} and {PAYLOAD!r}")
    books, payload = physical[CODEBOOKS], physical[PAYLOAD]
    if books["dtype"] not in STORAGE_DTYPES or len(books["shape"]) != 2:
        raise FormatError(f"{path}: tensor {CODEBOOKS!r} must be a 2-D F32, F16, BF16 or I8 tensor")
    if payload["dtype"] != "U8" or len(payload["shape"]) != 1:
        raise FormatError(f"{path}: tensor {PAYLOAD!r} must be a 1-D U8 tensor")
    try:
        with path.open("rb") as handle:
            handle.seek(data_start)
            data = handle.read(size - data_start)
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc.strerror})") from None
    if f"{zlib.crc32(data):08x}" != crc[8:]:
        raise FormatError(f"{path}: the tensor data do not match their checksum; the file is damaged")
    begin, end = payload["data_offsets"]
    try:
        grids = _json_field(path, meta, "grids") if "grids" in meta else None
        if "grids" in meta and not isinstance(grids, list):
            raise ValueError("metadata 'grids' must list one entry (or null) per layer")
        streams = _lean_streams(config, _json_field(path, meta, "indices"), grids)
    except ValueError as exc:
        raise FormatError(f"{path}: {exc}") from None
    entries, logical, rest_size = _unfold(path, config, streams, STORAGE_DTYPES[books["dtype"]], extras, data,
                                          books["data_offsets"][0], begin)
    if end - begin != rest_size:
        raise FormatError(f"{path}: tensor {PAYLOAD!r} holds {end - begin} bytes, its layout needs {rest_size}")
    table = [entries[name] for name in entries if name.startswith("edges.")]
    rows = sum(entry.k for entry in table)
    if books["shape"] != [rows, config.edge_width]:
        raise FormatError(f"{path}: tensor {CODEBOOKS!r} has shape {books['shape']}, expected "
                          f"{[rows, config.edge_width]}")
    return table, _grid_entries(config, entries) if "grids" in meta else None, logical, crc[8:]


def _unfold(
    path: Path, config: ModelConfig, streams: dict[str, tuple[int, int, str, int, int | None]], dtype: str,
    extras: str, data: bytes, books_begin: int, rest_begin: int,
) -> tuple[dict[str, IndexEntry], dict[str, TensorInfo], int]:
    """A lean file's streams made index entries (a rANS stream's symbol counts read from `data`, the data section)
    and its version-6 tensors placed: the codebooks one after another from `books_begin`, every other tensor
    (`payload_layout`) from `rest_begin`. Returns (entries by stream tensor, tensors, bytes the rest needs)."""
    # The part sizes place every stream; a rANS part starts with its k symbol counts, which give the stream's size.
    provisional = {name: IndexEntry(n, k, index_bits(k), coding, None, part, dtype, row)
                   for name, (n, k, coding, part, row) in streams.items()}
    starts = {name: start for name, start, _ in payload_layout(_lean_declared(config, provisional, extras), {})}
    entries: dict[str, IndexEntry] = {}
    prefixes: dict[str, int] = {}
    for name, (n, k, coding, part, row) in streams.items():
        counts: tuple[int, ...] | None = None
        stream = part
        if coding == "rans":
            begin = rest_begin + starts[name]
            try:
                values, used = read_varints(data[begin:begin + part], k)
            except ValueError as exc:
                raise FormatError(f"{path}: {name}: {exc}") from None
            if sum(values) != n or used >= part:
                raise FormatError(f"{path}: {name}: 'counts' must be {k} non-negative integers summing to {n}")
            counts, stream, prefixes[name] = tuple(values), part - used, used
        elif coding == "packed" and part != packed_length(n, index_bits(k)):
            raise FormatError(f"{path}: {name}: packed indices take {packed_length(n, index_bits(k))} bytes, the table "
                              f"says {part}")
        entries[name] = IndexEntry(n, k, index_bits(k), coding, counts, stream,
                                   dtype if name.startswith("edges.") else "float32", row)
    declared = _lean_declared(config, entries, extras)
    logical: dict[str, TensorInfo] = {}
    first = books_begin
    for layer in range(len(config.num_edges)):
        name = edge_tensor_names(layer)[0]
        logical[name] = TensorInfo(declared[name].dtype, declared[name].shape, (first, first + declared[name].nbytes))
        first += declared[name].nbytes
    for name, start, _ in payload_layout(declared, prefixes):
        info = declared[name]
        logical[name] = TensorInfo(info.dtype, info.shape, (rest_begin + start, rest_begin + start + info.nbytes))
    return entries, logical, payload_size(declared, prefixes)


def _lean_streams(config: ModelConfig, table: Any, grids: Any) -> dict[str, tuple[int, int, str, int, int | None]]:
    """A lean file's index table and grid table (None: absent) checked against the config: per stream tensor,
    (n, k, coding, part bytes, row); ValueError naming the problem."""
    edges = config.num_edges
    if not isinstance(table, list) or len(table) != len(edges):
        raise ValueError(f"metadata 'indices' must list one entry per layer ({len(edges)})")
    streams: dict[str, tuple[int, int, str, int, int | None]] = {}
    for layer, (entry, n) in enumerate(zip(table, edges)):
        streams[edge_tensor_names(layer)[2]] = _lean_entry(f"layer {layer}", entry, n, 2)
    if grids is not None:
        shapes = config.layer_shapes
        if all(entry is None for entry in grids):
            raise ValueError("the grid table has no shared grids")
        if not config.basis.stored_grid:
            raise ValueError("a grid table is only for models with stored (adapted) grids")
        if len(grids) != len(shapes):
            raise ValueError(f"the grid table must list one entry (or null) per layer ({len(shapes)})")
        for layer, (entry, (_, inputs)) in enumerate(zip(grids, shapes)):
            if entry is not None:
                streams[grid_tensor_names(layer)[2]] = _lean_entry(f"layer {layer}'s grid index", entry, inputs, 1)
    return streams


def _lean_entry(what: str, entry: Any, n: int, min_k: int) -> tuple[int, int, str, int, int | None]:
    k, coding, part, row = parse_entry(what, entry, n, min_k, min(n, MAX_K))
    if coding == "context" and not 2 <= k <= CONTEXT_MAX_K:
        raise ValueError(f"{what}: context coding holds 2 <= k <= {CONTEXT_MAX_K}, not {k}")
    return n, k, coding, part, row


def _lean_declared(config: ModelConfig, entries: dict[str, IndexEntry], extras: str) -> dict[str, TensorInfo]:
    """The version-6 tensors of a clustered file with these index (and grid-index) entries, at the dtypes the
    payload stores them (extras at `extras`)."""
    table = [entry for name, entry in entries.items() if name.startswith("edges.")]
    grids = _grid_entries(config, entries) if any(not name.startswith("edges.") for name in entries) else None
    return stored_tensors(declared_tensors(config, "clustered", table, grids), extras)


def _grid_entries(config: ModelConfig, entries: dict[str, IndexEntry]) -> list[IndexEntry | None]:
    """The grid table (per layer its shared grids' index entry, or None) among a lean file's stream entries."""
    return [entries.get(grid_tensor_names(layer)[2]) for layer in range(len(config.layer_shapes))]


def _check_entry(path: Path, name: str, entry: Any, data_size: int) -> None:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise FormatError(f"{path}: tensor {name!r} has a malformed header entry")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in ITEM_BYTES:
        raise FormatError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
    if not isinstance(shape, list) or not isinstance(offsets, list) or len(offsets) != 2 or not all(
        _is_int(v) and v >= 0 for v in [*shape, *offsets]
    ):
        raise FormatError(f"{path}: tensor {name!r} has a malformed shape or offsets")
    begin, end = offsets
    if not begin <= end <= data_size or end - begin != math.prod(shape) * ITEM_BYTES[dtype]:
        raise FormatError(f"{path}: tensor {name!r} lies outside the file or has the wrong byte size (truncated?)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_field(path: Path, meta: dict[str, str], key: str) -> Any:
    if key not in meta:
        raise FormatError(f"{path}: metadata field {key!r} is missing")
    return _strict_json(path, meta[key], f"metadata field {key!r}")


def _index_table(path: Path, table: Any, config: ModelConfig, version: int) -> list[IndexEntry]:
    """Validate the index table; v1 entries become packed, float32 entries without counts."""
    edges = config.num_edges
    if not isinstance(table, list) or len(table) != len(edges):
        raise FormatError(f"{path}: metadata 'indices' must list one entry per layer ({len(edges)})")
    return [_index_entry(path, f"layer {layer}", entry, n, version, 2) for layer, (entry, n) in
            enumerate(zip(table, edges))]


def _grid_table(path: Path, table: Any, config: ModelConfig, version: int) -> list[IndexEntry | None]:
    """Validate the v5 grid table: per layer null (grid stored whole) or the index entry of its shared grid rows."""
    if version < 5:
        raise FormatError(f"{path}: a format version {version} file cannot hold shared grids (metadata 'grids' "
                          "needs version 5)")
    if not config.basis.stored_grid:
        raise FormatError(f"{path}: metadata 'grids' is only for models with stored (adapted) grids")
    shapes = config.layer_shapes
    if not isinstance(table, list) or len(table) != len(shapes):
        raise FormatError(f"{path}: metadata 'grids' must list one entry (or null) per layer ({len(shapes)})")
    return [None if entry is None else _index_entry(path, f"layer {layer}'s grid index", entry, inputs, version, 1)
            for layer, (entry, (_, inputs)) in enumerate(zip(table, shapes))]


def _index_entry(path: Path, what: str, entry: Any, n: int, version: int, min_k: int) -> IndexEntry:
    """One validated index entry (of `what`, over n items, at least `min_k` symbols)."""
    base_keys = {"n", "k", "bits", "coding"} | ({"counts", "bytes", "codebook_dtype"} if version >= 2 else set())
    context = isinstance(entry, dict) and entry.get("coding") == "context"
    keys = base_keys | ({"row"} if context else set())
    if not isinstance(entry, dict) or set(entry) != keys:
        raise FormatError(f"{path}: {what}: its index entry must have keys {', '.join(sorted(keys))}")
    k, bits, coding = entry["k"], entry["bits"], entry["coding"]
    if entry["n"] != n or not _is_int(entry["n"]):
        raise FormatError(f"{path}: {what} covers {n} items but the index table says {entry['n']!r}")
    if not _is_int(k) or not min_k <= k <= min(n, MAX_K):
        raise FormatError(f"{path}: {what} has invalid codebook size k={k!r} (expected {min_k}..{min(n, MAX_K)})")
    if not _is_int(bits) or bits != index_bits(k):
        raise FormatError(f"{path}: {what}: bits={bits!r} does not match k={k} (expected {index_bits(k)})")
    if coding not in FILE_CODINGS[version]:
        newer = " (it needs format version 4)" if coding == "context" else ""
        raise FormatError(f"{path}: {what} uses unknown index coding {coding!r}{newer}")
    if version < 2:
        return IndexEntry.packed(n, k)
    counts, stream, dtype = entry["counts"], entry["bytes"], entry["codebook_dtype"]
    row: Any = entry.get("row")
    if context:
        if counts is not None:
            raise FormatError(f"{path}: {what}: a context-coded layer stores no counts (null)")
        if not _is_int(row) or not 1 <= row <= n:
            raise FormatError(f"{path}: {what}: 'row' must be an integer in 1..{n}, not {row!r}")
        if not 2 <= k <= CONTEXT_MAX_K:
            raise FormatError(f"{path}: {what}: context coding holds 2 <= k <= {CONTEXT_MAX_K}, not {k}")
    elif (not isinstance(counts, list) or len(counts) != k or not all(_is_int(c) and c >= 0 for c in counts)
            or sum(counts) != n):
        raise FormatError(f"{path}: {what}: 'counts' must be {k} non-negative integers summing to {n}")
    if not _is_int(stream) or not 0 < stream <= 4 * n + 64:
        raise FormatError(f"{path}: {what}: invalid index stream length {stream!r}")
    if coding == "packed" and stream != packed_length(n, bits):
        raise FormatError(f"{path}: {what}: packed indices take {packed_length(n, bits)} bytes, the table says {stream}")
    if dtype not in CODEBOOK_DTYPES:
        raise FormatError(f"{path}: {what}: unknown codebook_dtype {dtype!r}")
    return IndexEntry(n, k, bits, coding, tuple(counts) if counts is not None else None, stream, dtype, row)
