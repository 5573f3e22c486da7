"""Devices and multi-process data parallelism (torchrun + DistributedDataParallel).

Launch with `torchrun --nproc-per-node N -m kancompress train ...` (also `finetune` and `compress`): torchrun sets
RANK/WORLD_SIZE, every process runs the same command, the training loop splits each global batch across ranks (so
the trajectory matches a single process with the same batch size), DDP averages gradients (gloo on CPU, NCCL on
GPU), each rank validates a slice of the validation set and the sums are all-reduced (so every rank sees the same
metrics and early stopping agrees), and only rank 0 writes files and draws progress. `compress` runs the same
search on every rank in lockstep: its proxy measures each rank's share of the calibration rows and all-reduces
the sums, every fine-tuning is data parallel, and every decision rests on all-reduced numbers.
"""

from __future__ import annotations

import os

import torch

from kancompress.errors import ConfigError

from kancompress.options import DEVICES


def resolve_device(name: str = "auto") -> torch.device:
    """auto: CUDA when available, else CPU. Under torchrun on GPUs each rank takes the GPU of its local rank."""
    if name not in DEVICES:
        raise ConfigError(f"unknown device {name!r}; choose from: {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but no CUDA device is available; use --device cpu")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def setup(device: torch.device) -> None:
    """Join the process group once when launched by torchrun with more than one process."""
    if world_size() > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend=backend)


def active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and world_size() > 1


def sum_across_ranks(sums: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`sums` (float64, on the CPU) summed element-wise over every rank (all-reduced on `device`, where the
    process group's backend wants it); `sums` itself alone."""
    if not active():
        return sums
    total = sums.to(device=device, dtype=torch.float64)
    torch.distributed.all_reduce(total)
    return total.cpu()


def share(rows: torch.Tensor) -> torch.Tensor:
    """This rank's share of `rows` (every world_size-th row from its rank); all of them alone."""
    return rows[rank() :: world_size()] if active() else rows


def check_same(value: float, what: str, device: torch.device) -> None:
    """Raise ConfigError unless every rank holds the same `value` (a checksum of what they computed, e.g. the
    K-means of a layer; all-reduced on `device`): ranks that diverge would silently train different models or
    wait on each other forever."""
    if not active():
        return
    low = torch.tensor([value], dtype=torch.float64, device=device)
    high = low.clone()
    torch.distributed.all_reduce(low, op=torch.distributed.ReduceOp.MIN)
    torch.distributed.all_reduce(high, op=torch.distributed.ReduceOp.MAX)
    if float(low) != float(high):
        raise ConfigError(f"the ranks computed different {what} ({float(low)!r} against {float(high)!r}); give every "
                          "process the same OMP_NUM_THREADS and library versions, or run one process")


def barrier() -> None:
    if active():
        torch.distributed.barrier()


def teardown() -> None:
    if active():
        torch.distributed.destroy_process_group()
