"""All knowledge of the kancompress file format (safetensors, format versions 1 and 2).

Layout
------
`__metadata__` (str -> str):
    format          "kancompress"
    format_version  "2" (readers also take "1")
    kind            "dense" | "meta" | "clustered"
    model           JSON of `ModelConfig`
    provenance      JSON object (dataset, epochs, accuracy, kancompress version, source, ...)
    indices         clustered only: JSON list, one entry per layer:
                    v1: {"n", "k", "bits", "coding": "packed"}
                    v2: {"n", "k", "bits", "coding": "packed" | "rans", "counts": [k symbol counts],
                         "bytes": length of the index stream, "codebook_dtype": float32|float16|bfloat16|int8}
Tensors: the model's state_dict under its own names. For a clustered model, `edges.layers.{l}.codebook` is the
(k, |w|) codebook (float32, float16 or bfloat16; v2 also int8 with an `edges.layers.{l}.codebook_scale` (1,)
float32 scale) and `edges.layers.{l}.indices` (uint8) holds the n indices, bit-packed (see `pack_bits`) or, in
v2, rANS-coded with the layer's counts as the model (see `kancompress.entropy`). Writers write version 2 (it
records the index counts, so `inspect` shows each layer's entropy from the header); version-1 files stay readable.

Reading validates everything a reader relies on before any tensor math: header bounds, format and version,
kind, the model config, every expected tensor with its dtype and shape, packed lengths, indices < k, finite
values, no unexpected tensors. Writing is atomic (temporary file in the same folder, fsync, rename).
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kancompress.config import ModelConfig
from kancompress.edges import KINDS
from kancompress.entropy import rans_decode, rans_encode, rans_size_estimate
from kancompress.quant import from_storage, to_storage
from kancompress.errors import ConfigError, FormatError, OutputExistsError

FORMAT = "kancompress"
FORMAT_VERSION = 2  # the newest version this module reads and writes; v1 files stay readable
INDEX_CODINGS: tuple[str, ...] = ("packed", "entropy")  # what a writer may be asked for, per model
MAX_HEADER_BYTES = 16 << 20  # a header larger than this is refused before parsing
MAX_K = 1 << 16  # largest codebook: indices of at most 16 bits

_DTYPES: dict[str, torch.dtype] = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "U8": torch.uint8,
    "I8": torch.int8,
    "BOOL": torch.bool,
}
_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}
_ITEM_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "I8": 1, "BOOL": 1}
_STORAGE_NAMES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int8": "I8"}


# --------------------------------------------------------------------------------------------------- bits


def index_bits(k: int) -> int:
    """Bits per stored index for a codebook of k entries: max(1, ceil(log2 k))."""
    return max(1, math.ceil(math.log2(k)))


def packed_length(n: int, bits: int) -> int:
    """Bytes taken by n indices of `bits` bits, padded to a whole byte: ceil(n·bits/8)."""
    return (n * bits + 7) // 8


def pack_bits(indices: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack non-negative integers < 2**bits into bytes, least-significant bit first.

    Index j occupies bits j·bits .. j·bits+bits-1 of a little-endian bit stream; bit p of the stream is bit
    p % 8 of byte p // 8; the last byte is zero-padded.

    Example:
        >>> pack_bits(torch.tensor([1, 2, 3]), 2).tolist()  # stream 10 01 11 00 -> 0b00111001
        [57]
    """
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    values = indices.detach().cpu().numpy().astype(np.int64).reshape(-1)
    if values.size and (values.min() < 0 or values.max() >= (1 << bits)):
        raise ValueError(f"indices must lie in [0, {1 << bits}) to be packed in {bits} bits")
    stream = ((values[:, None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(-1)  # (n·bits,)
    return torch.from_numpy(np.packbits(stream, bitorder="little"))


def unpack_bits(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of `pack_bits`: the first n indices, as int64."""
    if packed.numel() != packed_length(n, bits):
        raise ValueError(f"expected {packed_length(n, bits)} packed bytes for {n} indices of {bits} bits")
    stream = np.unpackbits(packed.detach().cpu().numpy().astype(np.uint8), bitorder="little")[: n * bits]
    weights = (1 << np.arange(bits)).astype(np.int64)
    return torch.from_numpy(stream.reshape(n, bits).astype(np.int64) @ weights)  # (n,)


# --------------------------------------------------------------------------------------------------- header


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * _ITEM_BYTES[self.dtype]


@dataclass(frozen=True)
class Header:
    """What a checkpoint says about itself, read without touching tensor data."""

    path: Path
    kind: str
    config: ModelConfig
    provenance: dict[str, Any]
    tensors: dict[str, TensorInfo]
    indices: list[dict[str, Any]] = field(default_factory=list)  # clustered: the index table, one entry a layer
    file_size: int = 0
    version: int = FORMAT_VERSION

    @property
    def ks(self) -> list[int] | None:
        return [entry["k"] for entry in self.indices] if self.kind == "clustered" else None


def _raw_header(path: Path) -> tuple[dict[str, Any], int]:
    """Parse the safetensors header with bounds checks; returns (header JSON, file size)."""
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
                raise FormatError(f"{path}: not a safetensors file or truncated (header claims {header_len} bytes)")
            raw = handle.read(header_len)
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FormatError(f"{path}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise FormatError(f"{path}: not a safetensors file (its header is not a JSON object)")
    data_size = size - 8 - header_len
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        _check_entry(path, name, entry, data_size)
    return header, size


def _check_entry(path: Path, name: str, entry: Any, data_size: int) -> None:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise FormatError(f"{path}: tensor {name!r} has a malformed header entry")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _ITEM_BYTES:
        raise FormatError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
    if not isinstance(shape, list) or not isinstance(offsets, list) or len(offsets) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in [*shape, *offsets]
    ):
        raise FormatError(f"{path}: tensor {name!r} has a malformed shape or offsets")
    begin, end = offsets
    if not begin <= end <= data_size or end - begin != math.prod(shape) * _ITEM_BYTES[dtype]:
        raise FormatError(f"{path}: tensor {name!r} lies outside the file or has the wrong byte size (truncated?)")


def read_header(path: str | os.PathLike[str]) -> Header:
    """Read and validate a checkpoint's header (format, version, kind, config, index table); no tensor data."""
    path = Path(path)
    raw, size = _raw_header(path)
    meta = raw.get("__metadata__")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise FormatError(f"{path}: not a kancompress checkpoint (its metadata must map names to strings)")
    if meta.get("format") != FORMAT:
        raise FormatError(f"{path}: not a kancompress checkpoint (no format={FORMAT!r} in its metadata); "
                          "use `kancompress import` for checkpoints of other libraries")
    version = meta.get("format_version", "")
    if not version.isdigit():
        raise FormatError(f"{path}: invalid format_version {version!r}")
    if int(version) > FORMAT_VERSION:
        raise FormatError(f"{path}: format version {version} is newer than this kancompress reads "
                          f"({FORMAT_VERSION}); upgrade kancompress")
    kind = meta.get("kind")
    if kind not in KINDS:
        raise FormatError(f"{path}: unknown checkpoint kind {kind!r}; expected one of {', '.join(KINDS)}")
    try:
        config = ModelConfig.from_dict(_json_field(path, meta, "model"))
    except ConfigError as exc:
        raise FormatError(f"{path}: invalid model config: {exc}") from None
    provenance = _json_field(path, meta, "provenance") if "provenance" in meta else {}
    if not isinstance(provenance, dict):
        raise FormatError(f"{path}: provenance must be a JSON object")
    if (kind == "meta") != (config.meta is not None):
        raise FormatError(f"{path}: kind {kind!r} does not match the model config's meta-learner setting")
    indices: list[dict[str, Any]] = []
    if kind == "clustered":
        indices = _index_table(path, _json_field(path, meta, "indices"), config, int(version))
    tensors = {name: TensorInfo(e["dtype"], tuple(e["shape"])) for name, e in raw.items() if name != "__metadata__"}
    return Header(path, kind, config, provenance, tensors, indices, size, int(version))


def _json_field(path: Path, meta: dict[str, str], key: str) -> Any:
    if key not in meta:
        raise FormatError(f"{path}: metadata field {key!r} is missing")
    try:
        return json.loads(meta[key])
    except (TypeError, json.JSONDecodeError):
        raise FormatError(f"{path}: metadata field {key!r} is not valid JSON") from None


def _index_table(path: Path, table: Any, config: ModelConfig, version: int) -> list[dict[str, Any]]:
    """Validate the index table; v1 entries are completed to the v2 form (counts None, float32, packed bytes)."""
    edges = config.num_edges
    if not isinstance(table, list) or len(table) != len(edges):
        raise FormatError(f"{path}: metadata 'indices' must list one entry per layer ({len(edges)})")
    keys = {"n", "k", "bits", "coding"} | ({"counts", "bytes", "codebook_dtype"} if version >= 2 else set())
    completed = []
    for layer, (entry, n) in enumerate(zip(table, edges)):
        if not isinstance(entry, dict) or set(entry) != keys:
            raise FormatError(f"{path}: metadata 'indices' entry {layer} must have keys {', '.join(sorted(keys))}")
        k, bits = entry["k"], entry["bits"]
        if entry["n"] != n:
            raise FormatError(f"{path}: layer {layer} has {n} edges but the index table says {entry['n']}")
        if not isinstance(k, int) or isinstance(k, bool) or not 2 <= k <= min(n, MAX_K):
            raise FormatError(f"{path}: layer {layer} has invalid codebook size k={k!r} (expected 2..{min(n, MAX_K)})")
        if bits != index_bits(k):
            raise FormatError(f"{path}: layer {layer}: bits={bits!r} does not match k={k} (expected {index_bits(k)})")
        codings = ("packed", "rans") if version >= 2 else ("packed",)
        if entry["coding"] not in codings:
            raise FormatError(f"{path}: layer {layer} uses unknown index coding {entry['coding']!r}")
        full = {"n": n, "k": k, "bits": bits, "coding": entry["coding"], "counts": None,
                "bytes": packed_length(n, bits), "codebook_dtype": "float32"}
        if version >= 2:
            counts, stream = entry["counts"], entry["bytes"]
            if (not isinstance(counts, list) or len(counts) != k or sum(c for c in counts if isinstance(c, int)) != n
                    or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)):
                raise FormatError(f"{path}: layer {layer}: 'counts' must be {k} non-negative integers summing to {n}")
            if not isinstance(stream, int) or isinstance(stream, bool) or not 0 < stream <= 4 * n + 64:
                raise FormatError(f"{path}: layer {layer}: invalid index stream length {stream!r}")
            if entry["coding"] == "packed" and stream != packed_length(n, bits):
                raise FormatError(f"{path}: layer {layer}: packed indices take {packed_length(n, bits)} bytes, "
                                  f"the table says {stream}")
            if entry["codebook_dtype"] not in _STORAGE_NAMES:
                raise FormatError(f"{path}: layer {layer}: unknown codebook_dtype {entry['codebook_dtype']!r}")
            full.update(counts=counts, bytes=stream, codebook_dtype=entry["codebook_dtype"])
        completed.append(full)
    return completed


# --------------------------------------------------------------------------------------------------- load


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt model and what its header says."""

    model: torch.nn.Module
    header: Header

    @property
    def kind(self) -> str:
        return self.header.kind


def expected_tensors(
    config: ModelConfig, kind: str, ks: list[int] | None, table: list[dict[str, Any]] | None = None
) -> dict[str, TensorInfo]:
    """Names, dtypes and shapes a checkpoint of this config and kind must hold (computed without allocating).

    For a clustered file, `table` (the validated index table) gives each layer's stream length and codebook dtype;
    without it, packed float32 storage is assumed.
    """
    from kancompress.models import build_model

    with torch.device("meta"):
        state = build_model(config, kind, ks).state_dict()
    expected = {name: TensorInfo(_DTYPE_NAMES[t.dtype], tuple(t.shape)) for name, t in state.items()}
    for layer, n in enumerate(config.num_edges if kind == "clustered" else []):
        entry = table[layer] if table else {"bytes": packed_length(n, index_bits(ks[layer])), "codebook_dtype": "float32"}  # type: ignore[index]
        expected[_indices_key(layer)] = TensorInfo("U8", (entry["bytes"],))
        dtype = _STORAGE_NAMES[entry["codebook_dtype"]]
        expected[_codebook_key(layer)] = TensorInfo(dtype, expected[_codebook_key(layer)].shape)
        if dtype == "I8":
            expected[_scale_key(layer)] = TensorInfo("F32", (1,))
    return expected


def _indices_key(layer: int) -> str:
    return f"edges.layers.{layer}.indices"


def _codebook_key(layer: int) -> str:
    return f"edges.layers.{layer}.codebook"


def _scale_key(layer: int) -> str:
    return f"edges.layers.{layer}.codebook_scale"


def _check_tensor_table(header: Header) -> None:
    expected = expected_tensors(header.config, header.kind, header.ks, header.indices)
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


def _decode_indices(path: Path, layer: int, entry: dict[str, Any], stream: torch.Tensor) -> torch.Tensor:
    if entry["coding"] == "packed":
        indices = unpack_bits(stream, entry["bits"], entry["n"])
    else:
        try:
            indices = torch.from_numpy(rans_decode(stream.numpy().tobytes(), entry["counts"], entry["n"]))
        except ValueError as exc:
            raise FormatError(f"{path}: tensor {_indices_key(layer)!r} is not a valid rANS stream ({exc})") from None
    if indices.numel() and int(indices.max()) >= entry["k"]:
        raise FormatError(f"{path}: tensor {_indices_key(layer)!r} holds index {int(indices.max())} >= k={entry['k']}")
    if entry["counts"] is not None and torch.bincount(indices, minlength=entry["k"]).tolist() != entry["counts"]:
        raise FormatError(f"{path}: tensor {_indices_key(layer)!r} does not match the counts in the index table")
    return indices


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read, validate and rebuild a checkpoint of any kind; raises `FormatError` naming what is wrong."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    from kancompress.models import build_model

    header = read_header(path)
    _check_tensor_table(header)
    try:
        tensors = load_bytes(Path(path).read_bytes())
    except (SafetensorError, OSError, ValueError) as exc:
        raise FormatError(f"{path}: cannot read tensors ({exc})") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise FormatError(f"{path}: tensor {name!r} holds NaN or infinite values")
    for layer, entry in enumerate(header.indices):
        tensors[_indices_key(layer)] = _decode_indices(header.path, layer, entry, tensors[_indices_key(layer)])
        scale = tensors.pop(_scale_key(layer), None)
        if scale is not None and not float(scale) > 0:
            raise FormatError(f"{path}: tensor {_scale_key(layer)!r} must be a positive scale")
        tensors[_codebook_key(layer)] = from_storage(tensors[_codebook_key(layer)], scale)
    model = build_model(header.config, header.kind, header.ks)  # on the CPU; callers move it with .to(device)
    model.load_state_dict(tensors, strict=True)
    if header.kind == "clustered":
        dtypes = {entry["codebook_dtype"] for entry in header.indices}
        model.edges.codebook_dtype = dtypes.pop() if len(dtypes) == 1 else "float32"
        model.edges.index_coding = "entropy" if any(e["coding"] == "rans" for e in header.indices) else "packed"
    model.eval()
    return Checkpoint(model, header)


# --------------------------------------------------------------------------------------------------- save


def checkpoint_bytes(model: torch.nn.Module, provenance: dict[str, Any]) -> bytes:
    """The file contents of `model` (a `KANModel`) as a kancompress checkpoint.

    A clustered model is stored as its edge store says: codebooks at `codebook_dtype`, and each layer's indices
    bit-packed, or rANS-coded when its `index_coding` is "entropy" and that is smaller.
    """
    from safetensors.torch import save as save_bytes

    state, table = _file_tensors(model)
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": model.kind,
        "model": _compact_json(model.config.to_dict()),
        "provenance": _compact_json(provenance),
    }
    if table:
        metadata["indices"] = _compact_json(table)
    return save_bytes(state, metadata=metadata)


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def payload_bytes(model: torch.nn.Module) -> int:
    """Tensor bytes the checkpoint of `model` would hold (what `inspect` reports as total_bytes)."""
    state, _ = _file_tensors(model)
    return sum(t.numel() * t.element_size() for t in state.values())


def _file_tensors(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """The tensors and the index table a checkpoint of `model` stores."""
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    table: list[dict[str, Any]] = []
    if model.kind == "clustered":
        edges = model.edges
        for layer, book in enumerate(edges.layers):
            n, k = book.indices.numel(), book.k
            bits = index_bits(k)
            counts = torch.bincount(book.indices, minlength=k).tolist()
            stream = pack_bits(book.indices, bits)
            coding = "packed"
            if edges.index_coding == "entropy" and rans_size_estimate(counts) < stream.numel():
                coded = rans_encode(book.indices.cpu().numpy(), counts)
                if len(coded) < stream.numel():
                    stream, coding = torch.frombuffer(bytearray(coded), dtype=torch.uint8), "rans"
            stored, scale = to_storage(book.codebook, edges.codebook_dtype)
            state[_indices_key(layer)] = stream
            state[_codebook_key(layer)] = stored
            if scale is not None:
                state[_scale_key(layer)] = scale
            table.append({"n": n, "k": k, "bits": bits, "coding": coding, "counts": counts,
                          "bytes": int(stream.numel()), "codebook_dtype": edges.codebook_dtype})
    return state, table


def check_output(path: str | os.PathLike[str], force: bool, inputs: tuple[str | os.PathLike[str], ...] = ()) -> Path:
    """Refuse an output that exists (unless `force`), that is an input, or whose folder is missing."""
    out = Path(path)
    for source in inputs:
        if out.exists() and Path(source).exists() and out.resolve() == Path(source).resolve():
            raise OutputExistsError(f"{out}: output is the input file; choose another output path")
    if out.is_dir():
        raise OutputExistsError(f"{out}: is a folder; give a file path for the output")
    if out.exists() and not force:
        raise OutputExistsError(f"{out}: already exists; pass --force to overwrite it")
    if not out.parent.exists():
        raise OutputExistsError(f"{out.parent}: output folder does not exist; create it first")
    return out


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    model: torch.nn.Module,
    path: str | os.PathLike[str],
    provenance: dict[str, Any] | None = None,
    force: bool = False,
    inputs: tuple[str | os.PathLike[str], ...] = (),
) -> Path:
    """Save `model` as a kancompress checkpoint, atomically; never overwrites without `force`."""
    out = check_output(path, force, inputs)
    write_atomic(out, checkpoint_bytes(model, provenance or {}))
    return out


def save_state_dict(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike[str], force: bool = False,
    inputs: tuple[str | os.PathLike[str], ...] = (), metadata: dict[str, str] | None = None,
) -> Path:
    """Save a plain state_dict (another library's layout) as safetensors, atomically."""
    from safetensors.torch import save as save_bytes

    out = check_output(path, force, inputs)
    write_atomic(out, save_bytes({k: t.detach().cpu().contiguous() for k, t in tensors.items()}, metadata=metadata))
    return out


# --------------------------------------------------------------------------------------------------- train state


def state_path_for(output: str | os.PathLike[str]) -> Path:
    """Where `train`/`finetune` keep the resumable state of a run writing `output`."""
    return Path(f"{output}.state")


def save_train_state(path: str | os.PathLike[str], state: dict[str, Any], job: dict[str, Any]) -> None:
    """Atomically write a resumable training state (tensors, numbers, lists; no pickled code)."""
    import io

    buffer = io.BytesIO()
    torch.save({**state, "format": FORMAT, "job": json.dumps(job)}, buffer)
    write_atomic(path, buffer.getvalue())


def load_train_state(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state, job) of a resumable run, loaded with `torch.load(weights_only=True)`."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no resumable state to continue; run without --resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        job = json.loads(state["job"])
        assert state["format"] == FORMAT and isinstance(job, dict)
    except Exception:
        raise FormatError(f"{path}: not a readable kancompress training state; delete it and start over") from None
    return state, job
