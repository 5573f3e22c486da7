"""Write the format-6 golden files (the wave-3 imports' features: LayerNorms placed anywhere in the stack, a
`basis_norm` override, pykan multiplication nodes, the fourierkan and wavkan bases), written once by the version
that introduced format 6; the older files come from `make_golden.py` to `make_golden_v5.py`. Appends to
manifest.json and probes.safetensors without touching the older entries.

    python tests/golden/make_golden_v6.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from _record import (
    record_golden,  # tests/golden/_record.py (scripts run with their folder on sys.path)
)
from safetensors.torch import load_file, save_file

from kancompress.config import ConvConfig, ModelConfig
from kancompress.format.checkpoint import save_checkpoint
from kancompress.models import build_model

HERE = Path(__file__).parent


def main() -> None:
    manifest = json.loads((HERE / "manifest.json").read_text())
    probes = load_file(str(HERE / "probes.safetensors"))
    generator = torch.Generator().manual_seed(6)
    torch.manual_seed(6)
    cases = {  # name: (config, kind, index coding, codebook dtype)
        "v6-fc-fourierkan-layernorms-dense": (
            ModelConfig(model="fourierkan", widths=(12, 10, 3), layer_norms=(0, 2)), "dense", None, None),
        "v6-fc-fastkan-nolayernorm-packed": (
            ModelConfig(model="fastkan", widths=(12, 10, 3), basis_norm=False), "clustered", "packed", "float32"),
        "v6-fc-kan-multnodes-rans-int8": (
            ModelConfig(model="kan", widths=(12, 10, 3), mult_nodes=(3, 1), mult_arity=2, output_bias=True),
            "clustered", "rans", "int8"),
        "v6-fc-wavkan-smallest-float16": (
            ModelConfig(model="wavkan", widths=(12, 10, 3)), "clustered", "context", "float16"),
        "v6-conv-gramkan-kanhead-packed": (
            ModelConfig(model="gramkan", widths=(2, 4, 4), arch="conv",
                        conv=ConvConfig(strides=(1, 2), groups=2, num_classes=3, head_degree=3)),
            "clustered", "packed", "float32"),
    }
    for name, (config, kind, coding, dtype) in cases.items():
        model = build_model(config, kind, [6, 4] if kind == "clustered" else None)
        with torch.no_grad():
            extras = list(model.layers.parameters()) + list(model.head.parameters() if model.head is not None else [])
            for parameter in extras:  # norms, biases, node affines, a KAN head off their defaults
                parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
            for buffer_name, buffer in model.named_buffers():
                if buffer_name.endswith("running_var"):
                    buffer.uniform_(0.5, 1.5, generator=generator)
                elif buffer_name.endswith("running_mean"):
                    buffer.normal_(0, 0.2, generator=generator)
            if kind == "dense":
                for vectors in model.dense_edges().vectors:
                    vectors.normal_(0, 0.5, generator=generator)
            else:
                for book in model.edges.books():
                    book.codebook.data.normal_(0, 0.4, generator=generator)
                    if config.model == "wavkan":  # scales away from 0
                        book.codebook.data[:, 1] = 0.5 + book.codebook.data[:, 1].abs()
                    book.indices.copy_(torch.randint(0, book.k, book.indices.shape, generator=generator))
                model.edges.codebook_dtype, model.edges.index_coding = dtype, coding
                model.edges.round_to_storage()
        path = HERE / f"{name}.safetensors"
        save_checkpoint(model, path, {"stage": "golden", "dataset": "digits"}, force=True)
        shape = (7, 2, 8, 8) if config.conv is not None else (7, 12)
        loaded = record_golden(name, path, torch.rand(*shape, generator=generator) * 3 - 1.5, probes, manifest)
        assert loaded.header.version == 6, (name, loaded.header.version)
    save_file(probes, str(HERE / "probes.safetensors"))
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
