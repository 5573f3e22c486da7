"""Write the format-4 golden files (context-coded index streams), written once by the version that introduced
format 4; the older files come from `make_golden.py` and `make_golden_v3.py`. Appends to manifest.json and
probes.safetensors without touching the older entries.

    python tests/golden/make_golden_v4.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from kancompress.config import ConvConfig, default_config, default_conv_config
from kancompress.format.checkpoint import load_checkpoint, save_checkpoint
from kancompress.models import build_model

HERE = Path(__file__).parent


def smooth_indices(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """Runs of equal indices (what trained layers show), so that context coding is the smallest choice."""
    runs = torch.randint(0, k, (n // 9 + 1,), generator=generator)
    return runs.repeat_interleave(9)[:n]


def main() -> None:
    manifest = json.loads((HERE / "manifest.json").read_text())
    probes = load_file(str(HERE / "probes.safetensors"))
    generator = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    cases = {
        "v4-fc-kan-context-int8": (default_config("kan", (64, 10, 3)), [4, 8], "int8"),
        "v4-conv-fastkan-context-float16": (
            default_conv_config("fastkan", 2, 3, (8, 8), None, ConvConfig(strides=(1, 2), groups=2)), [4, 3],
            "float16"),
    }
    for name, (config, ks, dtype) in cases.items():
        model = build_model(config, "clustered", ks)
        with torch.no_grad():
            for key, tensor in model.state_dict().items():
                if tensor.is_floating_point():
                    tensor.add_(torch.randn_like(tensor) * 0.2)
                    if key.endswith("running_var"):
                        tensor.abs_().add_(0.5)
            for book in model.edges.books():
                book.codebook.data.normal_(0, 0.4)
                book.indices.copy_(smooth_indices(book.indices.numel(), book.k, generator))
        model.edges.codebook_dtype, model.edges.index_coding = dtype, "context"
        model.edges.round_to_storage()
        path = HERE / f"{name}.safetensors"
        save_checkpoint(model, path, {"stage": "golden", "dataset": "digits"}, force=True)
        loaded = load_checkpoint(path)
        assert loaded.header.version == 4 and any(e.coding == "context" for e in loaded.header.indices)
        shape = (7, config.widths[0]) if config.conv is None else (5, 2, 6, 6)
        x = torch.randn(*shape) * 2
        with torch.no_grad():
            probes[f"{name}.x"], probes[f"{name}.y"] = x.contiguous(), loaded.model.eval()(x).contiguous()
        manifest[name] = {
            "file": path.name, "kind": loaded.kind, "format_version": loaded.header.version,
            "index_codings": [e.coding for e in loaded.header.indices],
            "state_sha256": {k: hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()
                             for k, t in sorted(loaded.model.state_dict().items())},
        }
    save_file(probes, str(HERE / "probes.safetensors"))
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
