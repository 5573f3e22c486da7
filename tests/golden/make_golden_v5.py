"""Write the format-5 golden files (adapted B-spline grids stored as shared rows and an index per input), written
once by the version that introduced format 5; the older files come from `make_golden.py` to `make_golden_v4.py`.
Appends to manifest.json and probes.safetensors without touching the older entries.

    python tests/golden/make_golden_v5.py
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from _record import (
    record_golden,  # tests/golden/_record.py (scripts run with their folder on sys.path)
)
from safetensors.torch import load_file, save_file

from kancompress.config import default_config
from kancompress.format.checkpoint import save_checkpoint
from kancompress.models import KANModel, build_model

HERE = Path(__file__).parent


def adapted_grids(model: KANModel, shared: list[int | None], generator: torch.Generator) -> None:
    """Per-input grids, non-uniform and increasing; layer l drawn from `shared[l]` distinct grids (None: every
    input its own)."""
    for layer, count in zip(model.fc_layers(), shared):
        grid = layer.basis.grid  # (in, G+2k+1)
        rows = count if count is not None else grid.shape[0]
        steps = torch.rand(rows, grid.shape[1], generator=generator) * 0.6 + 0.1
        knots = steps.cumsum(dim=1) - 1.5  # (rows, G+2k+1), increasing
        pick = torch.randint(0, rows, (grid.shape[0],), generator=generator) if count is not None else None
        grid.copy_(knots[pick] if pick is not None else knots)


def main() -> None:
    manifest = json.loads((HERE / "manifest.json").read_text())
    probes = load_file(str(HERE / "probes.safetensors"))
    generator = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    base = default_config("kan", (40, 10, 3))
    config = dataclasses.replace(base, basis=dataclasses.replace(base.basis, stored_grid=True))
    cases = {  # layer 0 shares 3 grids; layer 1 keeps its own per input, or shares one
        "v5-fc-kan-sharedgrids-dense": ("dense", [3, None]),
        "v5-fc-kan-sharedgrids-rans-int8": ("clustered", [3, 1]),
    }
    for name, (kind, shared) in cases.items():
        model = build_model(config, kind, [6, 4] if kind == "clustered" else None)
        with torch.no_grad():
            adapted_grids(model, shared, generator)
            if kind == "dense":
                for vectors in model.dense_edges().vectors:
                    vectors.normal_(0, 0.5)
            else:
                for book in model.edges.books():
                    book.codebook.data.normal_(0, 0.4)
                    book.indices.copy_(torch.randint(0, book.k, book.indices.shape, generator=generator))
                model.edges.codebook_dtype, model.edges.index_coding = "int8", "rans"
                model.edges.round_to_storage()
        path = HERE / f"{name}.safetensors"
        save_checkpoint(model, path, {"stage": "golden", "dataset": "digits"}, force=True)
        loaded = record_golden(name, path, torch.rand(7, 40) * 3 - 1.5, probes, manifest)
        assert loaded.header.version == 5 and loaded.header.grids is not None
        assert [entry is not None for entry in loaded.header.grids] == [count is not None for count in shared]
    save_file(probes, str(HERE / "probes.safetensors"))
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
