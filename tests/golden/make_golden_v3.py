"""Write the format-3 golden files (regression models with a stored data transform), written once by the
version that introduced format 3; `make_golden.py` wrote the version 1 and 2 files. Appends to manifest.json and
probes.safetensors without touching the older entries.

    python tests/golden/make_golden_v3.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from kancompress.config import ConvConfig, MetaConfig, default_config, default_conv_config
from kancompress.format.checkpoint import save_checkpoint
from kancompress.models import build_model

from _record import record_golden  # tests/golden/_record.py (scripts run with their folder on sys.path)

HERE = Path(__file__).parent


def main() -> None:
    manifest = json.loads((HERE / "manifest.json").read_text())
    probes = load_file(str(HERE / "probes.safetensors"))
    torch.manual_seed(3)
    cases = {
        "v3-fc-kan-regression-dense": (default_config("kan", (5, 6, 2), None, "regression", True, True), "dense"),
        "v3-fc-chebykan-regression-meta": (
            default_config("chebykan", (5, 6, 2), MetaConfig(), "regression", True, True), "meta"),
        "v3-fc-legendrekan-regression-rans-int8": (
            default_config("legendrekan", (12, 10, 2), None, "regression", True, True), "clustered"),
        "v3-conv-gramkan-classification-packed": (
            default_conv_config("gramkan", 2, 3, (4, 4), None, ConvConfig(strides=(1, 2)), "classification", True),
            "clustered"),
    }
    for name, (config, kind) in cases.items():
        model = build_model(config, kind, [4, 3] if kind == "clustered" else None)
        with torch.no_grad():
            for key, tensor in model.state_dict().items():
                if tensor.is_floating_point():
                    tensor.add_(torch.randn_like(tensor) * 0.2)
                    if key.endswith(("running_var", "_scale")):
                        tensor.abs_().add_(0.5)
        if kind == "clustered":
            for book in model.edges.books():
                book.codebook.data.normal_(0, 0.4)
                book.indices.copy_(torch.multinomial(torch.tensor([0.8] + [0.2 / (book.k - 1)] * (book.k - 1)),
                                                     book.indices.numel(), replacement=True))
            if "rans" in name:
                model.edges.codebook_dtype, model.edges.index_coding = "int8", "rans"
            model.edges.round_to_storage()
        path = HERE / f"{name}.safetensors"
        save_checkpoint(model, path, {"stage": "golden", "dataset": "feynman:I.6.20a"}, force=True)
        shape = (7, config.widths[0]) if config.conv is None else (5, 2, 6, 6)
        loaded = record_golden(name, path, torch.randn(*shape) * 3 + 1, probes, manifest)
    save_file(probes, str(HERE / "probes.safetensors"))
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
