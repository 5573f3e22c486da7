"""A user's own data, from files or arrays, as a `Dataset` (classification or regression).

Files (`--data PATH`):
- `.npz`, `.safetensors`, `.pt`/`.pth` (tensors only, loaded with `torch.load(weights_only=True)`: a pickle that
  holds code is refused, never run) with `train_x`, `train_y`, `test_x`, `test_y`; or `x`, `y` (a seeded 80/20
  test split is made); or pykan's dataset dict (`train_input`, `train_label`, `test_input`, `test_label`);
- `.csv` with a header row and numeric cells, `--target COL[,COL...]` naming the target columns (every other
  column is a feature); a seeded 80/20 test split.
Inputs are (N, features), or images (N, C, H, W) / (N, H, W) for conv models. The task is inferred — integer
targets (any integer dtype; in a CSV, integral values) are class labels 0..C-1, float targets are regression
(N,) or (N, T) — and can be forced with `task`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from kancompress.config import TASKS
from kancompress.data import Dataset
from kancompress.errors import DataError

KEY_SETS: tuple[tuple[str, str, str, str], ...] = (
    ("train_x", "train_y", "test_x", "test_y"),
    ("train_input", "train_label", "test_input", "test_label"),  # pykan's create_dataset
)
TEST_FRACTION = 0.2


def load_data_file(
    path: str | os.PathLike[str], target: str | None = None, task: str | None = None, seed: int = 0
) -> Dataset:
    """The dataset in `path` (see the module doc); every problem is a one-line `DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file; check the path")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if not target:
            raise DataError(f"{path}: a CSV needs --target naming its target column(s), e.g. --target label")
        arrays = _read_csv(path, [name.strip() for name in target.split(",") if name.strip()])
    else:
        if target:
            raise DataError("--target is for CSV files; array files name their parts train_x/train_y/...")
        arrays = _read_arrays(path)
    return dataset_from_arrays(*_splits(path, arrays, seed), task=task, name=f"file:{path.name}")


def dataset_from_arrays(
    train_x: np.ndarray | torch.Tensor,
    train_y: np.ndarray | torch.Tensor,
    test_x: np.ndarray | torch.Tensor,
    test_y: np.ndarray | torch.Tensor,
    task: str | None = None,
    name: str = "arrays",
) -> Dataset:
    """A dataset from arrays or tensors (the Python API's way in): checks lengths, values and labels, infers the task
    from the targets' dtype unless `task` is given."""
    if task is not None and task not in TASKS:
        raise DataError(f"unknown task {task!r}; choose from: {', '.join(TASKS)}")
    parts = {"train_x": _array(train_x), "train_y": _array(train_y), "test_x": _array(test_x),
             "test_y": _array(test_y)}
    for part in ("train", "test"):
        x, y = parts[f"{part}_x"], parts[f"{part}_y"]
        if x.shape[0] == 0:
            raise DataError(f"{name}: the {part} split is empty")
        if x.shape[0] != y.shape[0]:
            raise DataError(f"{name}: {part} inputs have {x.shape[0]} rows but {part} targets {y.shape[0]}")
        if x.ndim not in (2, 3, 4) or y.ndim not in (1, 2):
            raise DataError(f"{name}: {part} inputs must be (N, features), (N, H, W) or (N, C, H, W) and targets "
                            f"(N,) or (N, T); got {list(x.shape)} and {list(y.shape)}")
    if parts["train_x"].shape[1:] != parts["test_x"].shape[1:]:
        raise DataError(f"{name}: train inputs {list(parts['train_x'].shape[1:])} and test inputs "
                        f"{list(parts['test_x'].shape[1:])} differ in shape")
    for key, values in parts.items():
        if values.dtype.kind not in "biuf":
            raise DataError(f"{name}: {key} is not numeric ({values.dtype})")
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise DataError(f"{name}: {key} holds NaN or infinite values; clean or drop those rows")
    integral = parts["train_y"].dtype.kind in "biu" and parts["test_y"].dtype.kind in "biu"
    task = task or ("classification" if integral else "regression")
    inputs = {key: torch.from_numpy(np.ascontiguousarray(parts[key], dtype=np.float32)) for key in ("train_x", "test_x")}
    inputs = {key: x[:, None] if x.dim() == 3 else x for key, x in inputs.items()}  # (N, H, W) -> (N, 1, H, W)
    if task == "classification":
        labels = {key: _labels(name, key, parts[key]) for key in ("train_y", "test_y")}
        classes = int(max(int(labels["train_y"].max()), int(labels["test_y"].max()))) + 1
        return Dataset(name, inputs["train_x"], labels["train_y"], inputs["test_x"], labels["test_y"], classes,
                       "classification", prescaled=False)
    targets = {key: torch.from_numpy(np.ascontiguousarray(parts[key], dtype=np.float32)) for key in ("train_y", "test_y")}
    targets = {key: y[:, None] if y.dim() == 1 else y for key, y in targets.items()}
    if targets["train_y"].shape[1] != targets["test_y"].shape[1]:
        raise DataError(f"{name}: train and test targets have different widths")
    return Dataset(name, inputs["train_x"], targets["train_y"], inputs["test_x"], targets["test_y"], 0, "regression",
                   prescaled=False)


def _array(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _labels(name: str, key: str, values: np.ndarray) -> torch.Tensor:
    flat = values.reshape(values.shape[0], -1)
    if flat.shape[1] != 1:
        raise DataError(f"{name}: class labels {key} must be one integer per row, got shape {list(values.shape)}")
    flat = flat[:, 0]
    if values.dtype.kind == "f" and not np.all(flat == np.round(flat)):
        raise DataError(f"{name}: {key} holds non-integer class labels; use --task regression for real targets")
    if flat.min() < 0:
        raise DataError(f"{name}: {key} holds a negative class label ({int(flat.min())}); labels are 0..C-1")
    return torch.from_numpy(flat.astype(np.int64))


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        if suffix == ".safetensors":
            from safetensors.numpy import load_file

            return dict(load_file(str(path)))
        if suffix in (".pt", ".pth"):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
                raise DataError(f"{path}: must hold a dict of tensors (train_x, train_y, ...)")
            return {key: value.numpy() for key, value in loaded.items()}
    except DataError:
        raise
    except Exception as exc:  # a pickle with code, a truncated archive, an object array, ...: all refused alike
        raise DataError(f"{path}: not a readable array file of numbers ({type(exc).__name__}); pickled code is "
                        "never run") from None
    raise DataError(f"{path}: unsupported data file type {suffix!r}; use .npz, .safetensors, .pt/.pth or .csv")


def _splits(path: Path, arrays: dict[str, np.ndarray], seed: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    for keys in KEY_SETS:
        if all(key in arrays for key in keys):
            return arrays[keys[0]], arrays[keys[1]], arrays[keys[2]], arrays[keys[3]]
    if "x" in arrays and "y" in arrays:
        x, y = arrays["x"], arrays["y"]
        if len(x) != len(y):
            raise DataError(f"{path}: x has {len(x)} rows but y has {len(y)}")
        if len(x) < 2:
            raise DataError(f"{path}: too few rows ({len(x)}) to split off a test set")
        order = np.random.default_rng(seed).permutation(len(x))
        n_test = max(1, int(round(len(x) * TEST_FRACTION)))
        test, train = order[:n_test], order[n_test:]
        return x[train], y[train], x[test], y[test]
    names = ", ".join(sorted(arrays)) or "nothing"
    raise DataError(f"{path}: expected arrays train_x/train_y/test_x/test_y, x/y, or pykan's train_input/"
                    f"train_label/test_input/test_label; found {names}")


def _read_csv(path: Path, targets: list[str]) -> dict[str, np.ndarray]:
    header, values = read_csv_table(path, targets, targets_needed=True)
    target_columns = [header.index(name) for name in targets]
    feature_columns = [i for i in range(len(header)) if i not in target_columns]
    if not feature_columns:
        raise DataError(f"{path}: every column is a target; keep at least one feature column")
    y = values[:, target_columns]
    if len(target_columns) == 1 and np.all(y == np.round(y)):
        y = y.astype(np.int64)  # integral values in one column: class labels (force with --task regression)
    return {"x": values[:, feature_columns].astype(np.float32), "y": y[:, 0] if y.shape[1] == 1 else y}


def read_csv_table(path: Path, columns: Sequence[str] = (), targets_needed: bool = False
                   ) -> tuple[list[str], np.ndarray]:
    """(column names, values (rows, columns) float64) of a CSV with a header row and numeric cells. The `columns`
    the caller names must exist (checked before any cell is read; with `targets_needed`, at least one); a
    non-numeric cell or a short row is a one-line `DataError` naming its line and column."""
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one data row")
    header = [name.strip() for name in rows[0]]
    missing = [name for name in columns if name not in header]
    if missing or (targets_needed and not columns):
        raise DataError(f"{path}: no column {missing[0] if missing else ''!r}; columns are: {', '.join(header)}")
    values = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}: line {number} has {len(row)} cells, the header {len(header)}")
        for column, cell in enumerate(row):
            try:
                values[number - 2, column] = float(cell)
            except ValueError:
                raise DataError(f"{path}: line {number}, column {header[column]!r}: {cell!r} is not a number") from None
    return header, values
