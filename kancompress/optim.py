"""What every optimisation run shares: AdamW parameter groups, the basis's learning rates, a private seed, and the
device a run works on (a copy, never the caller's model)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from kancompress.edges import EdgeStore, MetaEdges
from kancompress.models import KANModel


def parameter_groups(
    model: KANModel, lr: float, lr_meta: float | None = None, lr_embed: float | None = None
) -> list[dict[str, Any]]:
    """AdamW groups: meta-learner at `lr_meta`, embeddings at `lr_embed`, everything else at `lr`."""
    return [*edge_groups(model.edges, lr, lr_meta, lr_embed), {"params": model.extra_parameters(), "lr": lr}]


def edge_groups(edges: EdgeStore, lr: float, lr_meta: float | None = None, lr_embed: float | None = None
                ) -> list[dict[str, Any]]:
    """AdamW groups of an edge store: a MetaKAN's meta-learner at `lr_meta` and embeddings at `lr_embed`, any
    other store's parameters at `lr`."""
    if isinstance(edges, MetaEdges):
        return [{"params": list(edges.learners.parameters()), "lr": lr if lr_meta is None else lr_meta},
                {"params": list(edges.embeddings.parameters()), "lr": lr if lr_embed is None else lr_embed}]
    return [{"params": list(edges.parameters()), "lr": lr}]


def default_learning_rates(
    model_name: str, conv: bool, meta: bool, lr: float | None = None, lr_meta: float | None = None,
    lr_embed: float | None = None, task: str = "classification",
) -> tuple[float, float | None, float | None]:
    """(lr of the edges or the extras, lr of the meta-learner, lr of the embeddings): the given ones, else the
    basis's defaults (paper Tables 4-7 where it has them; a fully-connected regression model's are the basis's
    `LearningRates.regression` times those). The last two are None for a plain model."""
    from kancompress.bases import get_spec

    rates = get_spec(model_name).lr
    scale = rates.regression if task == "regression" and not conv else 1.0
    if not meta:
        return (lr if lr is not None else scale * (rates.conv_plain if conv else rates.plain)), None, None
    if conv:
        lr_h, lr_e, rest = rates.conv_meta
    else:
        (lr_h, lr_e), rest = rates.meta, rates.plain
    return (lr if lr is not None else scale * rest, lr_meta if lr_meta is not None else scale * lr_h,
            lr_embed if lr_embed is not None else scale * lr_e)


def default_finetune_lr(model: KANModel) -> float:
    """Paper lr_c: the basis's fine-tuning rate (FC 1e-4, conv 1e-5)."""
    rates = model.config.spec.lr
    return rates.conv_finetune if model.config.conv is not None else rates.finetune


@contextmanager
def own_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators for this run only; the caller's generator state is restored afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def on_device(model: KANModel, device: torch.device) -> KANModel:
    """`model` itself when it already lives on `device`, else a copy there (the caller's model never moves)."""
    current = next(model.parameters()).device
    return model if current == device else copy.deepcopy(model).to(device)
