"""Datasets: IDX files (plain and gzipped) written here, the bundled digits, and errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from kancompress.data import load_dataset, read_idx, split_validation
from kancompress.errors import DataError


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    data = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


def make_mnist_folder(folder: Path, compress: bool) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 6)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (n,), dtype=np.uint8), compress)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_folder(tmp_path: Path, name: str, compress: bool) -> None:
    make_mnist_folder(tmp_path, compress)
    data = load_dataset(name, tmp_path)
    assert data.train_x.shape == (20, 1, 28, 28) and data.test_x.shape == (6, 1, 28, 28)
    assert data.train_x.min() >= -1 and data.train_x.max() <= 1 and data.train_y.dtype == torch.int64
    raw = read_idx(tmp_path / ("train-images-idx3-ubyte" + (".gz" if compress else "")))
    assert torch.allclose(data.train_x[3, 0], torch.from_numpy(raw[3].astype(np.float32)) / 255 * 2 - 1)


def test_idx_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="IDX files not found"):
        load_dataset("mnist", tmp_path)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 10, 28, 28) + b"\x00" * 5)
    with pytest.raises(DataError, match="truncated"):
        read_idx(bad)
    (tmp_path / "junk").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DataError, match="not an IDX"):
        read_idx(tmp_path / "junk")
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("svhn")


def test_digits_split_matches_fixture_protocol() -> None:
    data = load_dataset("digits")
    assert data.train_x.shape == (1347, 1, 8, 8) and data.test_x.shape == (450, 1, 8, 8)
    assert float(data.train_x.min()) == -1.0 and float(data.train_x.max()) == 1.0
    split = split_validation(data, seed=0)
    assert split.val_x.shape[0] == 135 and split.train_x.shape[0] == 1212
    again = split_validation(data, seed=0)
    assert torch.equal(split.val_y, again.val_y)
