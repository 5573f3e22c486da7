from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kancompress.config import MODEL_NAMES, MetaConfig, ModelConfig, default_config
from kancompress.models import KANModel, build_model

FIXTURES = Path(__file__).parent / "fixtures"
KINDS = ("dense", "meta", "clustered")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def tiny_config(model: str, kind: str = "dense", widths: tuple[int, ...] = (6, 5, 3)) -> ModelConfig:
    return default_config(model, widths, MetaConfig() if kind == "meta" else None)


def tiny_model(model: str, kind: str, widths: tuple[int, ...] = (6, 5, 3)) -> KANModel:
    """A small model of any kind with non-trivial weights (clustered: random codebooks and indices)."""
    config = tiny_config(model, kind, widths)
    ks = [4] * (len(widths) - 1) if kind == "clustered" else None
    built = build_model(config, kind, ks)
    if kind == "clustered":
        for book in built.edges.layers:
            book.codebook.data.normal_(0, 0.3)
            book.indices.random_(0, book.k)
    return built


def fixture_json(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def all_models_and_kinds() -> list[tuple[str, str]]:
    return [(m, k) for m in MODEL_NAMES for k in KINDS]


def rewrite_checkpoint(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a hand-edited checkpoint with fresh checksums, as a crafted file would carry, so that the reader's
    deeper checks (not only the checksums) are what refuses it."""
    from kancompress.format.checkpoint import safetensors_bytes

    path.write_bytes(safetensors_bytes(tensors, metadata, checksums=True))
