"""`kancompress predict`: run a checkpoint (.safetensors) or an exported graph (.onnx) on the user's inputs.

Inputs: `.npy` (the array), `.npz` (its `x`, `test_x` or only array), or `.csv` (a header row and numeric columns,
all of them features unless `--target` names columns to leave out). Outputs: the model's outputs (logits, or
regression outputs in the user's units), and for classification the predicted classes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kancompress.errors import DataError, FormatError


@dataclass(frozen=True)
class Prediction:
    outputs: np.ndarray  # (N, outputs) float32
    classes: np.ndarray | None  # (N,) int64 for classification models


def read_inputs(path: str | os.PathLike[str], drop: str | None = None) -> np.ndarray:
    """The inputs in `path` as float32 (N, ...)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such input file; check the path")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            values = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                key = next((k for k in ("x", "test_x", "inputs") if k in archive.files), None)
                if key is None and len(archive.files) == 1:
                    key = archive.files[0]
                if key is None:
                    raise DataError(f"{path}: holds {', '.join(archive.files)}; name the inputs x")
                values = archive[key]
        elif suffix == ".csv":
            from kancompress.userdata import read_csv_table

            dropped = [name.strip() for name in drop.split(",") if name.strip()] if drop else []
            header, table = read_csv_table(path, dropped)
            values = table[:, [i for i, name in enumerate(header) if name not in dropped]]
        else:
            raise DataError(f"{path}: unsupported input type {suffix!r}; use .npy, .npz or .csv")
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: not a readable array of numbers ({type(exc).__name__})") from None
    if values.dtype.kind not in "biuf":
        raise DataError(f"{path}: inputs must be numbers, not {values.dtype}")
    values = np.asarray(values, dtype=np.float32)
    if values.ndim < 2 or values.shape[0] == 0:
        raise DataError(f"{path}: inputs must be (N, features) or images (N, [C,] H, W); got {list(values.shape)}")
    if not np.isfinite(values).all():
        raise DataError(f"{path}: inputs hold NaN or infinite values")
    return values


def predict(model_path: str | os.PathLike[str], inputs: np.ndarray, batch_size: int = 1024) -> Prediction:
    """Outputs of a kancompress checkpoint or of an .onnx graph that `kancompress export --to onnx` wrote."""
    path = Path(model_path)
    if path.suffix == ".onnx":
        return _predict_onnx(path, inputs)
    import torch

    from kancompress.format.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path)
    config = checkpoint.header.config
    x = _shaped(inputs, config.widths[0], config.conv is not None)
    model = checkpoint.model.eval()
    with torch.no_grad():
        outputs = torch.cat([model(torch.from_numpy(x[i : i + batch_size])) for i in range(0, len(x), batch_size)])
    values = outputs.numpy().astype(np.float32)
    return Prediction(values, values.argmax(axis=1) if config.task == "classification" else None)


def _shaped(inputs: np.ndarray, width: int, conv: bool) -> np.ndarray:
    """Inputs as the model takes them, or a one-line error naming the mismatch."""
    if conv:
        images = inputs[:, None] if inputs.ndim == 3 else inputs
        if images.ndim != 4 or images.shape[1] != width:
            raise DataError(f"the model takes {width}-channel images (N, {width}, H, W); the inputs are "
                            f"{list(inputs.shape)}")
        return np.ascontiguousarray(images)
    flat = inputs.reshape(inputs.shape[0], -1)
    if flat.shape[1] != width:
        raise DataError(f"the model takes {width} inputs per row; the inputs have {flat.shape[1]}")
    return np.ascontiguousarray(flat)


def _predict_onnx(path: Path, inputs: np.ndarray) -> Prediction:
    try:
        import onnxruntime
    except ImportError:
        raise DataError('running an .onnx model needs the onnx extra: pip install "kancompress[onnx]"') from None
    try:
        session = onnxruntime.InferenceSession(path.read_bytes())
    except Exception:
        raise FormatError(f"{path}: not a readable ONNX model") from None
    declared = session.get_inputs()
    if len(declared) != 1 or declared[0].name != "input" or [o.name for o in session.get_outputs()] != ["output"]:
        raise FormatError(f"{path}: not an ONNX model written by `kancompress export --to onnx` (one input "
                          "'input', one output 'output')")
    shape = declared[0].shape
    conv = len(shape) == 4
    width = shape[1]
    if not isinstance(width, int):
        raise FormatError(f"{path}: its input width is not fixed; not a kancompress export")
    x = _shaped(inputs, width, conv)
    outputs = np.asarray(session.run(None, {"input": x})[0], dtype=np.float32)
    classification = _onnx_task(path) == "classification"
    return Prediction(outputs, outputs.argmax(axis=1) if classification else None)


def _onnx_task(path: Path) -> str:
    import onnx

    model = onnx.load(str(path))
    entries: dict[str, str] = {entry.key: entry.value for entry in model.metadata_props}
    return entries.get("kancompress_task", "classification")
