"""What the golden-file writers record for each file: probe inputs, the outputs the writing version computed, and
the manifest entry (kind, format version, index codings, SHA-256 of every tensor of the loaded model)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from kancompress.format.checkpoint import Checkpoint, load_checkpoint


def record_golden(name: str, path: Path, x: torch.Tensor, probes: dict[str, torch.Tensor],
                  manifest: dict[str, Any]) -> Checkpoint:
    loaded = load_checkpoint(path)
    with torch.no_grad():
        probes[f"{name}.x"], probes[f"{name}.y"] = x.contiguous(), loaded.model.eval()(x).contiguous()
    manifest[name] = {
        "file": path.name, "kind": loaded.kind, "format_version": loaded.header.version,
        "index_codings": [e.coding for e in loaded.header.indices],
        "state_sha256": {k: hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()
                         for k, t in sorted(loaded.model.state_dict().items())},
    }
    return loaded
