"""Datasets as in-memory tensors, with a seeded 90/10 train/validation split.

Built-in image datasets come scaled to [-1, 1] (the B-spline grid range). Regression and user data come raw: the
model stores the transform it trains with (`models.Normalization`), so later commands take raw inputs too.

- digits: scikit-learn's bundled 8x8 digits (offline), split 75/25 like the upstream fixtures
  (`train_test_split(test_size=0.25, random_state=0, stratify=y)`).
- mnist, fashion-mnist: a folder with the four standard IDX files, gzipped or not (Debian's
  `dataset-fashion-mnist` installs them at /usr/share/datasets/fashion-mnist); `download` fetches them with
  torchvision where a network exists.
- cifar10, cifar100: torchvision's python-version batches (`download` fetches them).
- diabetes: scikit-learn's bundled diabetes regression (442 patients, 10 features, 1 target), split 80/20 seeded.
- feynman:NAME: an equation of pykan's Feynman list, generated (`kancompress.feynman`): 1,000 train and 1,000 test
  samples, seeded.
- user files: `kancompress.userdata` (npz, safetensors, pt, csv, pykan dataset dicts).
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kancompress.errors import DataError

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "diabetes", "feynman:NAME")
DEFAULT_DIRS: dict[str, str] = {"fashion-mnist": "/usr/share/datasets/fashion-mnist"}
_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_TORCHVISION_SUBDIRS = {"mnist": "MNIST/raw", "fashion-mnist": "FashionMNIST/raw"}


@dataclass(frozen=True)
class Dataset:
    name: str
    train_x: torch.Tensor  # (N, features) or (N, C, H, W) float32
    train_y: torch.Tensor  # classification: (N,) int64; regression: (N, T) float32
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int  # classification; 0 for regression
    task: str = "classification"
    prescaled: bool = True  # inputs already in the grid range (built-in images); else the model learns a transform

    @property
    def num_outputs(self) -> int:
        """Classes, or regression targets."""
        return self.num_classes if self.task == "classification" else int(self.train_y.shape[1])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def num_features(self) -> int:
        return int(np.prod(self.input_shape))


@dataclass(frozen=True)
class Split:
    """Training data divided into a training part and a validation part for early stopping."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor


def load_dataset(
    name: str, data_dir: str | os.PathLike[str] | None = None, download: bool = False, seed: int = 0
) -> Dataset:
    """Load a dataset by name; raises `DataError` with what to do when it cannot be found."""
    if name.startswith("feynman:"):
        return _feynman(name.partition(":")[2], seed)
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose from: {', '.join(DATASETS)}")
    if name == "digits":
        return _digits()
    if name == "diabetes":
        return _diabetes(seed)
    if name in ("mnist", "fashion-mnist"):
        return _idx_dataset(name, data_dir, download)
    return _cifar(name, data_dir, download)


def split_validation(dataset: Dataset, val_fraction: float = 0.1, seed: int = 0) -> Split:
    """A seeded random split of the training data (paper: 90/10 train/validation)."""
    n = dataset.train_x.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(n * val_fraction)))
    val, train = order[:n_val], order[n_val:]
    return Split(dataset.train_x[train], dataset.train_y[train], dataset.train_x[val], dataset.train_y[val])


def _feynman(equation: str, seed: int) -> Dataset:
    from kancompress.feynman import feynman_dataset

    train_x, train_y, test_x, test_y = feynman_dataset(equation, seed=seed)
    return Dataset(f"feynman:{equation}", torch.from_numpy(train_x), torch.from_numpy(train_y),
                   torch.from_numpy(test_x), torch.from_numpy(test_y), 0, "regression", prescaled=False)


def _diabetes(seed: int) -> Dataset:
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    bundle = load_diabetes(scaled=False)
    x_train, x_test, y_train, y_test = train_test_split(bundle.data, bundle.target, test_size=0.2, random_state=seed)

    def tensor(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(values, dtype=np.float32))

    return Dataset("diabetes", tensor(x_train), tensor(y_train)[:, None], tensor(x_test), tensor(y_test)[:, None], 0,
                   "regression", prescaled=False)


def _scaled(images: np.ndarray, maximum: float) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32) / maximum * 2.0 - 1.0)


def _digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.reshape(-1, 1, 8, 8)  # (1797, 1, 8, 8), values 0..16
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    return Dataset(
        "digits",
        _scaled(x_train, 16.0),
        torch.from_numpy(y_train.astype(np.int64)),
        _scaled(x_test, 16.0),
        torch.from_numpy(y_test.astype(np.int64)),
        10,
    )


def _find_idx_folder(name: str, data_dir: str | os.PathLike[str] | None, download: bool) -> Path:
    if data_dir is None:
        if name in DEFAULT_DIRS and Path(DEFAULT_DIRS[name]).is_dir():
            data_dir = DEFAULT_DIRS[name]
        else:
            data_dir = Path.home() / ".cache" / "kancompress" / name
    root = Path(data_dir)
    candidates = [root, root / _TORCHVISION_SUBDIRS[name], root / "raw"]
    for folder in candidates:
        if all(_idx_path(folder, f) is not None for f in _IDX_FILES.values()):
            return folder
    if download:
        from torchvision import datasets

        cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
        try:
            cls(str(root), train=True, download=True)
            cls(str(root), train=False, download=True)
        except Exception as exc:  # network or disk failure inside torchvision
            raise DataError(f"downloading {name} into {root} failed: {exc}") from None
        return root / _TORCHVISION_SUBDIRS[name]
    missing = [f for f in _IDX_FILES.values() if _idx_path(root, f) is None]
    hint = " (apt-get install dataset-fashion-mnist)" if name == "fashion-mnist" else ""
    raise DataError(
        f"{root}: {name} IDX files not found (missing {missing[0]}[.gz]); pass --data-dir with the four "
        f"IDX files{hint}, or --download"
    )


def _idx_path(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file of unsigned bytes (MNIST layout), gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: IDX body has {body.size} bytes, header says {int(np.prod(shape))}; truncated?")
    return body.reshape(shape)


def _idx_dataset(name: str, data_dir: str | os.PathLike[str] | None, download: bool) -> Dataset:
    folder = _find_idx_folder(name, data_dir, download)
    arrays = {key: read_idx(_idx_path(folder, stem)) for key, stem in _IDX_FILES.items()}  # type: ignore[arg-type]
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_x"], arrays[f"{part}_y"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise DataError(f"{folder}: {part} images {images.shape} and labels {labels.shape} do not match")
    return Dataset(
        name,
        _scaled(arrays["train_x"][:, None], 255.0),
        torch.from_numpy(arrays["train_y"].astype(np.int64)),
        _scaled(arrays["test_x"][:, None], 255.0),
        torch.from_numpy(arrays["test_y"].astype(np.int64)),
        int(max(arrays["train_y"].max(), arrays["test_y"].max())) + 1,
    )


def _cifar(name: str, data_dir: str | os.PathLike[str] | None, download: bool) -> Dataset:
    from torchvision import datasets

    root = Path(data_dir) if data_dir is not None else Path.home() / ".cache" / "kancompress" / name
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except RuntimeError:
        raise DataError(
            f"{root}: {name} python-version batches not found; pass --data-dir with the extracted "
            f"'{cls.base_folder}' folder's parent, or --download"
        ) from None
    except Exception as exc:  # network, corrupt archive
        raise DataError(f"{root}: cannot load {name}: {exc}") from None

    def images(part: datasets.VisionDataset) -> torch.Tensor:
        return _scaled(np.asarray(part.data).transpose(0, 3, 1, 2), 255.0)  # (N, 3, 32, 32)

    def labels(part: datasets.VisionDataset) -> torch.Tensor:
        return torch.as_tensor(np.asarray(part.targets), dtype=torch.int64)

    return Dataset(name, images(train), labels(train), images(test), labels(test), 100 if name == "cifar100" else 10)


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """CIFAR-style augmentation: a random crop of the zero-padded image and a random horizontal flip.

    images: (N, C, H, W); the same generator drives it, so a seeded run stays reproducible.
    """
    n, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)  # (N, C, H+2p, W+2p)
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    crops = torch.stack([padded[i, :, y : y + h, x : x + w] for i, (y, x) in enumerate(offsets.tolist())])
    return torch.where(flips[:, None, None, None], crops.flip(-1), crops)


def needs_augmentation(name: str) -> bool:
    """Conv models train with crop-and-flip on CIFAR only (not on digits or MNIST-style data)."""
    return name in ("cifar10", "cifar100")
