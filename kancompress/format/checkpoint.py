"""Loading and saving whole checkpoints: a model maps to the declared tensors (`schema.declared_tensors`) and
back, with every value checked (finite floats, valid index streams, positive int8 scales) before it is used."""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from kancompress.entropy import (
    CONTEXT_MAX_K,
    context_decode,
    context_encode,
    rans_decode,
    rans_encode,
    rans_size_estimate,
)
from kancompress.errors import FormatError
from kancompress.format.bits import index_bits, pack_bits, packed_length, unpack_bits
from kancompress.format.files import PathLike, check_output, write_atomic
from kancompress.format.header import Header, read_header
from kancompress.format.schema import (
    FORMAT,
    IndexEntry,
    declared_tensors,
    edge_tensor_names,
    file_version,
    grid_tensor_names,
    metadata_checksum,
)
from kancompress.quant import from_storage, to_storage

if TYPE_CHECKING:
    from kancompress.models import KANModel


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt model and what its header says."""

    model: KANModel
    header: Header

    @property
    def kind(self) -> str:
        return self.header.kind


MAX_DECODED_BYTES = 8 << 30
"""Default cap on the memory a checkpoint may ask for when decoded (its edge vectors as float32); a file declaring
more is refused before anything is allocated (`load_checkpoint(max_decoded_bytes=...)`, `--max-decoded-bytes`)."""


def decoded_bytes(header: Header) -> int:
    """Bytes the decoded model takes at least: float32 edge vectors plus the int64 indices of a clustered model."""
    config = header.config
    edges = sum(config.num_edges)
    return edges * config.edge_width * 4 + (edges * 8 if header.kind == "clustered" else 0)


def load_checkpoint(path: PathLike, max_decoded_bytes: int | None = None) -> Checkpoint:
    """Read, validate and rebuild a checkpoint of any kind; raises `FormatError` naming what is wrong. A file whose
    decoded model would take more than `max_decoded_bytes` (default `MAX_DECODED_BYTES`) is refused first."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    from kancompress.edges import CodebookEdges
    from kancompress.models import build_model

    header = read_header(path)
    cap = MAX_DECODED_BYTES if max_decoded_bytes is None else max_decoded_bytes
    if decoded_bytes(header) > cap:
        raise FormatError(f"{path}: its model takes {decoded_bytes(header) / 2**30:.1f} GiB decoded, above the limit of "
                          f"{cap / 2**30:.1f} GiB; raise it with --max-decoded-bytes if this is expected")
    try:
        content = Path(path).read_bytes()
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc.strerror})") from None
    if header.tensor_checksums is not None:  # before any tensor is built from the bytes
        for name, info in sorted(header.tensors.items()):
            begin, end = (header.data_start + offset for offset in info.offsets)
            if f"{zlib.crc32(content[begin:end]):08x}" != header.tensor_checksums[name]:
                raise FormatError(f"{path}: tensor {name!r} does not match its checksum; the file is damaged")
    if header.data_crc is not None:  # v7 and v8: the file may have changed since its header was read
        if not header.intact(content):
            raise FormatError(f"{path}: the tensor data do not match their checksum; the file is damaged")
        tensors = _logical_tensors(header, content)
    else:
        try:
            tensors = load_bytes(content)
        except (SafetensorError, ValueError) as exc:
            raise FormatError(f"{path}: cannot read tensors ({exc})") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise FormatError(f"{path}: tensor {name!r} holds NaN or infinite values")
    for layer, entry in enumerate(header.indices):
        codebook, scale_name, indices = edge_tensor_names(layer)
        tensors[indices] = _decode_indices(header.path, indices, entry, tensors[indices])
        scale = tensors.pop(scale_name, None)
        if scale is not None and not float(scale) > 0:
            raise FormatError(f"{path}: tensor {scale_name!r} must be a positive scale")
        tensors[codebook] = from_storage(tensors[codebook], scale)
    for layer, shared in enumerate(header.grids or ()):
        if shared is not None:
            whole, rows, index = grid_tensor_names(layer)
            tensors[whole] = tensors.pop(rows)[_decode_indices(header.path, index, shared, tensors.pop(index))]
    model = build_model(header.config, header.kind, header.ks)  # on the CPU; callers move it with .to(device)
    missing, unexpected = _mismatch(set(model.state_dict()), set(tensors))
    if missing or unexpected:
        raise FormatError(f"{path}: this kancompress's model does not match the declared format "
                          f"(missing {missing[:1]}, unexpected {unexpected[:1]}); this is a bug, please report it")
    model.load_state_dict(tensors, strict=True)  # (float16 extras of a lean file are copied into float32 tensors)
    model.extras_dtype = header.extras_dtype
    if isinstance(model.edges, CodebookEdges):
        dtypes = {entry.codebook_dtype for entry in header.indices}
        model.edges.codebook_dtype = dtypes.pop() if len(dtypes) == 1 else "float32"
        codings = {entry.coding for entry in header.indices}
        model.edges.index_coding = "context" if "context" in codings else "rans" if "rans" in codings else "packed"
    model.eval()
    return Checkpoint(model, header)


def _logical_tensors(header: Header, content: bytes) -> dict[str, torch.Tensor]:
    """A lean file's tensors in the version-6 layout, cut from the byte ranges its header worked out."""
    tensors: dict[str, torch.Tensor] = {}
    for name, info in header.tensors.items():
        begin, end = (header.data_start + offset for offset in info.offsets)
        flat = torch.frombuffer(bytearray(content[begin:end]), dtype=_TORCH_DTYPES[info.dtype])  # (numel,)
        tensors[name] = flat.reshape(info.shape)
    return tensors


def _mismatch(model_names: set[str], file_names: set[str]) -> tuple[list[str], list[str]]:
    return sorted(model_names - file_names), sorted(file_names - model_names)


def _decode_indices(path: Path, name: str, entry: IndexEntry, stream: torch.Tensor) -> torch.Tensor:
    if entry.coding == "packed":
        indices = unpack_bits(stream, entry.bits, entry.n)
    elif entry.coding == "context":
        assert entry.row is not None
        try:
            indices = torch.from_numpy(context_decode(stream.numpy().tobytes(), entry.k, entry.row, entry.n))
        except ValueError as exc:
            raise FormatError(f"{path}: tensor {name!r} is not a valid context-coded stream ({exc})") from None
    else:
        assert entry.counts is not None
        try:
            indices = torch.from_numpy(rans_decode(stream.numpy().tobytes(), list(entry.counts), entry.n))
        except ValueError as exc:
            raise FormatError(f"{path}: tensor {name!r} is not a valid rANS stream ({exc})") from None
    if indices.numel() and int(indices.max()) >= entry.k:
        raise FormatError(f"{path}: tensor {name!r} holds index {int(indices.max())} >= k={entry.k}")
    if entry.counts is not None and tuple(torch.bincount(indices, minlength=entry.k).tolist()) != entry.counts:
        raise FormatError(f"{path}: tensor {name!r} does not match the counts in the index table")
    return indices


_SAFETENSORS_DTYPES: dict[torch.dtype, str] = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64", torch.int64: "I64",
    torch.int32: "I32", torch.uint8: "U8", torch.int8: "I8", torch.bool: "BOOL",
}
_TORCH_DTYPES: dict[str, torch.dtype] = {name: dtype for dtype, name in _SAFETENSORS_DTYPES.items()}


def safetensors_bytes(
    tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None, checksums: bool = False,
    padded: bool = True,
) -> bytes:
    """A safetensors file in one canonical layout: metadata first with sorted keys, tensors in name order, the
    header padded with spaces to 8 bytes unless not `padded` (a file of byte tensors needs no alignment). (The
    safetensors library writes its header in hash-map order, so equal inputs gave different bytes.) Readable by any
    safetensors reader. With `checksums`, the metadata gains the `checksums` entry (`schema`): CRC-32 of the other
    metadata and of each tensor's bytes, computed from the same bytes the file holds."""
    raws = {name: tensor_bytes(tensors[name]) for name in sorted(tensors)}
    if checksums:
        metadata = {key: value for key, value in (metadata or {}).items() if key != "checksums"}
        crcs = {name: f"{zlib.crc32(raw):08x}" for name, raw in raws.items()}
        metadata["checksums"] = canonical_json({"metadata": metadata_checksum(metadata), "tensors": crcs})
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    offset = 0
    for name, raw in raws.items():
        tensor = tensors[name]
        header[name] = {"dtype": _SAFETENSORS_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8 if padded else 0)
    return len(text).to_bytes(8, "little") + text + b"".join(raws.values())


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """A tensor's bytes as safetensors stores them (row-major, little-endian)."""
    tensor = tensor.detach().cpu().contiguous()
    return tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values give equal bytes."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def checkpoint_bytes(model: KANModel, provenance: dict[str, Any], lean: bool = True) -> bytes:
    """The file contents of `model` as a kancompress checkpoint.

    A clustered model is stored as its edge store says: codebooks at `codebook_dtype`, and each layer's indices
    bit-packed, or coded as `index_coding` allows where that is smaller (`index_stream`); in the version-8 lean
    container unless `lean` is False (then a tensor per layer and part, as versions 2 to 6 store it, for readers
    older than version 7).
    """
    state, table, grids = file_tensors(model)
    if table and lean:
        return lean_checkpoint_bytes(model, state, table, grids, provenance)
    metadata = {
        "format": FORMAT,
        "format_version": str(file_version(model.config, table, grids)),
        "kind": model.kind,
        "model": canonical_json(model.config.to_dict()),
        "provenance": canonical_json(provenance),
    }
    if table:
        metadata["indices"] = canonical_json([entry.to_json() for entry in table])
    if grids is not None:
        metadata["grids"] = canonical_json([entry.to_json() if entry is not None else None for entry in grids])
    return safetensors_bytes(state, metadata, checksums=True)


def lean_checkpoint_bytes(
    model: KANModel, state: dict[str, torch.Tensor], table: list[IndexEntry], grids: list[IndexEntry | None] | None,
    provenance: dict[str, Any],
) -> bytes:
    """A clustered model's file in the version-8 lean container (`format.lean`): one byte payload holding the
    layout table, every layer's codebook, every other tensor's bytes (a rANS stream after its symbol counts) and
    the CRC-32s of the header and of the data; metadata only the format, a compact config and the provenance."""
    from kancompress.format import lean

    layers = len(table)
    books = [state[name] for name in lean.codebook_names(layers)]
    if len({book.dtype for book in books}) != 1:
        raise RuntimeError("a lean file holds one codebook dtype for all layers")
    prefixes = {name: lean.model_prefix(entry) for name, entry in lean.stream_entries(table, grids).items()}
    declared = lean.stored_tensors(declared_tensors(model.config, model.kind, table, grids), model.extras_dtype)
    stored = {name: state[name].to(_TORCH_DTYPES[info.dtype]) for name, info in declared.items()}
    if not all(bool(torch.isfinite(stored[name]).all()) for name in stored if stored[name].is_floating_point()):
        raise ValueError(f"the model's extras do not fit extras_dtype {model.extras_dtype}; keep them at float32")
    payload = lean.table_bytes(table[0].codebook_dtype, model.extras_dtype, table, grids)
    payload += b"".join(tensor_bytes(book) for book in books)
    payload += b"".join(prefixes.get(name, b"") + tensor_bytes(stored[name])
                        for name, _, _ in lean.payload_layout(declared, {n: len(p) for n, p in prefixes.items()}))
    metadata = {
        "format": FORMAT,
        "format_version": str(lean.TABLE_VERSION),  # (no "kind": a lean file is clustered)
        "model": canonical_json(lean.compact_config(model.config.to_dict())),
    }
    if provenance:
        metadata["provenance"] = canonical_json(provenance)
    body = bytearray(payload + bytes(lean.TRAILER_BYTES))
    file = bytearray(safetensors_bytes({lean.PAYLOAD: torch.frombuffer(body, dtype=torch.uint8)}, metadata,
                                       padded=False))
    data_start = len(file) - len(body)
    file[-8:-4] = zlib.crc32(file[:data_start]).to_bytes(4, "little")  # the header, as stored
    file[-4:] = zlib.crc32(file[data_start:-4]).to_bytes(4, "little")  # every data byte before this CRC
    return bytes(file)


def payload_bytes(model: KANModel) -> int:
    """Bytes of tensors the checkpoint of `model` would hold: its tensors, and in a (lean) clustered file the rANS
    streams' symbol counts stored beside them (what `inspect` reports as total_bytes; a lean file's layout table
    and CRCs are container, as its header is)."""
    from kancompress.format.lean import model_prefix, stored_tensors, stream_entries

    state, table, grids = file_tensors(model)
    if not table:
        return sum(t.numel() * t.element_size() for t in state.values())
    models = sum(len(model_prefix(entry)) for entry in stream_entries(table, grids).values())
    stored = stored_tensors(declared_tensors(model.config, model.kind, table, grids), model.extras_dtype)
    return sum(info.nbytes for info in stored.values()) + models


def file_tensors(model: KANModel) -> tuple[dict[str, torch.Tensor], list[IndexEntry], list[IndexEntry | None] | None]:
    """The tensors, the index table and the grid table (None: no layer shares grids) a checkpoint of `model`
    stores, checked against the declared schema."""
    from kancompress.edges import CodebookEdges

    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    table: list[IndexEntry] = []
    if isinstance(model.edges, CodebookEdges):
        edges = model.edges
        for layer, (book, shape) in enumerate(zip(edges.books(), model.config.edge_shapes)):
            stream, entry, stored, scale = layer_streams(book.codebook, book.indices, book.k, edges.codebook_dtype,
                                                         edges.index_coding, shape)
            codebook_name, scale_name, indices_name = edge_tensor_names(layer)
            state[indices_name] = torch.frombuffer(bytearray(stream), dtype=torch.uint8)
            state[codebook_name] = stored
            if scale is not None:
                state[scale_name] = scale
            table.append(entry)
    grids = _store_repeated_grids(state, len(model.config.layer_shapes)) if model.config.basis.stored_grid else None
    declared = declared_tensors(model.config, model.kind, table or None, grids)
    missing, unexpected = _mismatch(set(declared), set(state))
    if missing or unexpected:
        raise RuntimeError(f"the model does not map to the declared file format: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]} (kancompress.format.schema)")
    return state, table, grids


def layer_streams(
    codebook: torch.Tensor, indices: torch.Tensor, k: int, codebook_dtype: str, index_coding: str,
    edge_shape: tuple[int, ...],
) -> tuple[bytes, IndexEntry, torch.Tensor, torch.Tensor | None]:
    """What a file stores for one clustered layer: the index stream, its table entry, the stored codebook and its
    int8 scale (None for other dtypes)."""
    stream, entry = index_stream(indices, k, index_coding, edge_shape)
    stored, scale = to_storage(codebook, codebook_dtype)
    return stream, dataclasses.replace(entry, codebook_dtype=codebook_dtype), stored, scale


def layer_bytes(
    codebook: torch.Tensor, indices: torch.Tensor, k: int, codebook_dtype: str, index_coding: str,
    edge_shape: tuple[int, ...],
) -> int:
    """Bytes one clustered layer adds to a (version-8) file: its codebook and int8 scale, its index stream with its
    model and its index-table entry (`layer_streams`)."""
    from kancompress.format.lean import entry_bytes

    _, entry, stored, scale = layer_streams(codebook, indices, k, codebook_dtype, index_coding, edge_shape)
    tensors = stored.numel() * stored.element_size() + (scale.numel() * scale.element_size() if scale is not None
                                                        else 0)
    return tensors + entry_bytes(entry)


def _store_repeated_grids(state: dict[str, torch.Tensor], layers: int) -> list[IndexEntry | None] | None:
    """Each layer whose stored grid has repeated rows, stored as its distinct rows and an index per input where
    that is smaller (in `state`, in place); the grid table, None when no layer gains (the file then keeps the
    version it would have without shared grids)."""
    from kancompress.format.lean import entry_bytes

    grids: list[IndexEntry | None] = []
    for layer in range(layers):
        whole, rows_name, index_name = grid_tensor_names(layer)
        grid = state[whole]  # (in, G+2k+1)
        rows, index = torch.unique(grid, dim=0, return_inverse=True)  # (m, G+2k+1), (in,)
        if rows.shape[0] == grid.shape[0]:  # every input its own grid: nothing to share
            grids.append(None)
            continue
        stream, entry = index_stream(index, rows.shape[0], "context", (1, grid.shape[0]))
        if rows.numel() * 4 + entry_bytes(entry) >= grid.numel() * 4:
            grids.append(None)
            continue
        del state[whole]
        state[rows_name] = rows.contiguous()
        state[index_name] = torch.frombuffer(bytearray(stream), dtype=torch.uint8)
        grids.append(entry)
    return grids if any(entry is not None for entry in grids) else None


def context_rows(edge_shape: tuple[int, ...]) -> list[int]:
    """Candidate distances to a context-coded edge's neighbour "above" (`entropy.context_encode`): every trailing
    block of the layer's edge shape (the next output's row of edges; for a conv layer also a kernel row and a
    kernel), and for a square number of inputs its side (an image's pixel row: 28 for 784 inputs)."""
    rows = {math.prod(edge_shape[j:]) for j in range(1, len(edge_shape))}
    side = math.isqrt(edge_shape[-1])
    if len(edge_shape) == 2 and side >= 2 and side * side == edge_shape[-1]:
        rows.add(side)
    return sorted(rows)


def index_stream(indices: torch.Tensor, k: int, coding: str, edge_shape: tuple[int, ...]) -> tuple[bytes, IndexEntry]:
    """One layer's index stream and its table entry (codebook dtype left at float32 for the caller to set).

    "packed": fixed-width bits. "rans": rANS where that is smaller. "context": the smallest of packed, rANS and
    context coding at each of `context_rows`, counting what the version-8 file adds besides the stream (a rANS
    stream's k symbol counts, the table entry; `lean.entry_bytes`)."""
    from kancompress.format.lean import entry_bytes

    n = indices.numel()
    counts = tuple(torch.bincount(indices, minlength=k).tolist())
    options = [(pack_bits(indices, index_bits(k)).numpy().tobytes(), IndexEntry.packed(n, k, counts))]
    symbols = indices.cpu().numpy()
    if coding in ("rans", "context") and rans_size_estimate(list(counts)) < len(options[0][0]):
        coded = rans_encode(symbols, list(counts))
        options.append((coded, IndexEntry(n, k, index_bits(k), "rans", counts, len(coded))))
    if coding == "context" and 2 <= k <= CONTEXT_MAX_K:
        for row in context_rows(edge_shape):
            coded = context_encode(symbols, k, row)
            options.append((coded, IndexEntry(n, k, index_bits(k), "context", None, len(coded), row=row)))

    return min(options, key=lambda option: entry_bytes(option[1]))


def save_checkpoint(
    model: KANModel,
    path: PathLike,
    provenance: dict[str, Any] | None = None,
    force: bool = False,
    inputs: tuple[PathLike, ...] = (),
    lean: bool = True,
) -> Path:
    """Save `model` as a kancompress checkpoint, atomically; never overwrites without `force` (`lean`:
    `checkpoint_bytes`)."""
    out = check_output(path, force, inputs)
    write_atomic(out, checkpoint_bytes(model, provenance or {}, lean))
    return out


def save_state_dict(
    tensors: dict[str, torch.Tensor], path: PathLike, force: bool = False, inputs: tuple[PathLike, ...] = (),
    metadata: dict[str, str] | None = None,
) -> Path:
    """Save a plain state_dict (another library's layout) atomically: safetensors (with `metadata`), or for a .pt/.pth
    path `torch.save` of the state_dict, which `torch.load` reads (metadata is not kept there)."""
    out = check_output(path, force, inputs)
    if out.suffix in (".pt", ".pth"):
        import io

        buffer = io.BytesIO()
        torch.save({name: tensor.detach().cpu().contiguous() for name, tensor in sorted(tensors.items())}, buffer)
        write_atomic(out, buffer.getvalue())
    else:
        write_atomic(out, safetensors_bytes(tensors, metadata))
    return out


__all__ = ["Checkpoint", "checkpoint_bytes", "file_tensors", "layer_bytes", "layer_streams", "load_checkpoint",
           "packed_length", "payload_bytes", "save_checkpoint", "save_state_dict"]
