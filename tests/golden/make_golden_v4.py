"""Write the format-4 golden files (context-coded index streams; per-layer grid ranges), written once by the
version that introduced format 4; the older files come from `make_golden.py` and `make_golden_v3.py`. Appends to
manifest.json and probes.safetensors without touching the older entries.

    python tests/golden/make_golden_v4.py
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from kancompress.config import ConvConfig, default_config, default_conv_config
from kancompress.format.checkpoint import save_checkpoint
from kancompress.models import build_model

from _record import record_golden  # tests/golden/_record.py (scripts run with their folder on sys.path)

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
        shape = (7, config.widths[0]) if config.conv is None else (5, 2, 6, 6)
        loaded = record_golden(name, path, torch.randn(*shape) * 2, probes, manifest)
        assert loaded.header.version == 4
    # A dense B-spline model with per-layer grid ranges (what `compress` writes after re-gridding adapted grids).
    name = "v4-fc-kan-gridranges-dense"
    config = dataclasses.replace(default_config("kan", (12, 10, 3)), grid_ranges=((-1.5, 1.0), (-4.0, 6.0)))
    model = build_model(config)
    with torch.no_grad():
        for vectors in model.dense_edges().vectors:
            vectors.normal_(0, 0.5)
    path = HERE / f"{name}.safetensors"
    save_checkpoint(model, path, {"stage": "golden", "dataset": "digits"}, force=True)
    loaded = record_golden(name, path, torch.randn(7, 12) * 3, probes, manifest)
    assert loaded.header.version == 4 and loaded.model.config.grid_ranges == config.grid_ranges
    save_file(probes, str(HERE / "probes.safetensors"))
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
