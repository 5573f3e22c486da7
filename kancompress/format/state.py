"""The resumable training state `OUTPUT.state` of `train` and `finetune` (torch.save of plain tensors, numbers and
lists; loaded with `weights_only=True`, so it can never run code)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from kancompress.errors import FormatError
from kancompress.format.files import PathLike, write_atomic
from kancompress.format.schema import FORMAT


def state_path_for(output: PathLike) -> Path:
    """Where `train`/`finetune` keep the resumable state of a run writing `output`."""
    return Path(f"{output}.state")


def save_train_state(path: PathLike, state: dict[str, Any], job: dict[str, Any]) -> None:
    """Atomically write a resumable training state and the job (the options) that produced it."""
    import torch

    buffer = io.BytesIO()
    torch.save({**state, "format": FORMAT, "job": json.dumps(job, sort_keys=True)}, buffer)
    write_atomic(path, buffer.getvalue())


def load_train_state(path: PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state, job) of a resumable run."""
    import torch

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
