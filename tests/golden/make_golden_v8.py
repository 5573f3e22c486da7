"""Write the format-8 golden files (the lean container with one byte tensor, its layout table and CRCs inside,
`kancompress.format.lean`), written once by the version that introduced format 8: the cases of format 7
(`make_golden_v7.cases`: every index coding, every codebook dtype, shared adapted grids, a conv model with
BatchNorms, a regression model with multiplication nodes and stored data transforms), and one with float16 extras.
Appends to manifest.json and probes.safetensors without touching the older entries.

    python tests/golden/make_golden_v8.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from _record import record_golden  # tests/golden/_record.py (scripts run with their folder on sys.path)
from make_golden_v7 import cases, golden_model
from safetensors.torch import load_file, save_file

from kancompress.config import ModelConfig
from kancompress.format.checkpoint import save_checkpoint

HERE = Path(__file__).parent


def main() -> None:
    manifest = json.loads((HERE / "manifest.json").read_text())
    probes = load_file(str(HERE / "probes.safetensors"))
    generator = torch.Generator().manual_seed(8)
    torch.manual_seed(8)
    all_cases = {**cases(), "fc-gramkan-extras16-context-int8": (
        ModelConfig(model="gramkan", widths=(16, 10, 3), layer_norms=(1,)), [6, 4], "context", "int8", 16)}
    for short_name, (config, ks, coding, dtype, inputs) in all_cases.items():
        name = f"v8-{short_name}"
        model = golden_model(config, ks, coding, dtype, generator)
        if "extras16" in short_name:
            model.extras_dtype = "float16"
            model.round_extras()
        path = HERE / f"{name}.safetensors"
        save_checkpoint(model, path, {"stage": "golden", "dataset": "digits"}, force=True)
        shape = (7, inputs, 8, 8) if config.conv is not None else (7, inputs)
        loaded = record_golden(name, path, torch.rand(*shape, generator=generator) * 3 - 1.5, probes, manifest)
        assert loaded.header.version == 8, (name, loaded.header.version)
        assert loaded.header.extras_dtype == model.extras_dtype, name
    save_file(probes, str(HERE / "probes.safetensors"))
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
