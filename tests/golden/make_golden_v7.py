"""Write the format-7 golden files (the lean container of clustered checkpoints, `kancompress.format.lean`),
written once by the version that introduced format 7 (its cases and models are reused by `make_golden_v8.py`;
run now, it would write version 8); the older files come from `make_golden.py` to `make_golden_v6.py`. Appends to
manifest.json and probes.safetensors without touching the older entries.

    python tests/golden/make_golden_v7.py
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from _record import record_golden  # tests/golden/_record.py (scripts run with their folder on sys.path)
from make_golden_v5 import adapted_grids
from safetensors.torch import load_file, save_file

from kancompress.config import ConvConfig, ModelConfig, default_config
from kancompress.format.checkpoint import save_checkpoint
from kancompress.models import KANModel, build_model

HERE = Path(__file__).parent


def cases() -> dict[str, tuple[ModelConfig, list[int], str, str, int]]:
    """name (without its version prefix): (config, ks, index coding, codebook dtype, inputs)."""
    base = default_config("kan", (40, 10, 3))
    grids = dataclasses.replace(base, basis=dataclasses.replace(base.basis, stored_grid=True))
    return {
        "fc-kan-smallest-int8": (ModelConfig(model="kan", widths=(64, 10, 3)), [6, 4], "context", "int8", 64),
        "fc-fastkan-packed-float32": (ModelConfig(model="fastkan", widths=(12, 10, 3)), [6, 4], "packed", "float32",
                                      12),
        "fc-gramkan-rans-float16": (ModelConfig(model="gramkan", widths=(12, 10, 3)), [6, 4], "rans", "float16", 12),
        "fc-kan-regression-multnodes-bfloat16": (
            ModelConfig(model="kan", widths=(4, 6, 1), mult_nodes=(2, 0), task="regression", input_affine=True,
                        target_affine=True, output_bias=True), [5, 3], "rans", "bfloat16", 4),
        "fc-kan-sharedgrids-rans-int8": (grids, [6, 4], "rans", "int8", 40),
        "conv-fastkan-smallest-float16": (
            ModelConfig(model="fastkan", widths=(2, 4, 4), arch="conv",
                        conv=ConvConfig(strides=(1, 2), groups=2, num_classes=3)), [6, 4], "context", "float16", 2),
    }


def golden_model(config: ModelConfig, ks: list[int], coding: str, dtype: str,
                 generator: torch.Generator) -> KANModel:
    """A clustered model of `config` with every tensor off its default: extras, buffers, codebooks, and indices
    that make the asked coding pay."""
    model = build_model(config, "clustered", ks)
    with torch.no_grad():
        if config.basis.stored_grid:
            adapted_grids(model, [3, 1], generator)
        extras = list(model.layers.parameters()) + list(model.head.parameters() if model.head is not None else [])
        for parameter in extras:  # norms, biases, node affines, affines off their defaults
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
        for buffer_name, buffer in model.named_buffers():
            if buffer_name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5, generator=generator)
            elif buffer_name.endswith("running_mean"):
                buffer.normal_(0, 0.2, generator=generator)
            elif buffer_name.endswith("num_batches_tracked"):
                buffer.fill_(1234)
            elif buffer_name.startswith("normalize."):
                buffer.uniform_(0.5, 1.5, generator=generator)
        for book in model.edges.books():
            book.codebook.data.normal_(0, 0.4, generator=generator)
            skewed = torch.rand(book.indices.shape, generator=generator) ** 3  # low entropy: rANS pays
            if coding == "context":  # runs of equal indices, as neighbouring pixels' edges have: context pays
                skewed = (torch.arange(book.indices.numel()) // 9 % 3 / 3 + 0.1 * skewed).reshape(skewed.shape)
            book.indices.copy_((skewed * book.k).long().clamp(max=book.k - 1))
        model.edges.codebook_dtype, model.edges.index_coding = dtype, coding
        model.edges.round_to_storage()
    return model


def main() -> None:
    manifest = json.loads((HERE / "manifest.json").read_text())
    probes = load_file(str(HERE / "probes.safetensors"))
    generator = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    for short_name, (config, ks, coding, dtype, inputs) in cases().items():
        name = f"v7-{short_name}"
        model = golden_model(config, ks, coding, dtype, generator)
        path = HERE / f"{name}.safetensors"
        save_checkpoint(model, path, {"stage": "golden", "dataset": "digits"}, force=True)
        shape = (7, inputs, 8, 8) if config.conv is not None else (7, inputs)
        loaded = record_golden(name, path, torch.rand(*shape, generator=generator) * 3 - 1.5, probes, manifest)
        assert loaded.header.version == 7, (name, loaded.header.version)
    save_file(probes, str(HERE / "probes.safetensors"))
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
