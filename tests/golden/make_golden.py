"""Write the golden checkpoint files under tests/golden/ (run once per new format version, never to overwrite).

Files of format versions 1 and 2 were written by kancompress at commit e491f6f (before the wave-2 redesign), so
they are what users' files look like. Each file has probe inputs and the outputs the writing code computed for them
in `probes.safetensors`, and `manifest.json` lists, per file, the SHA-256 of every tensor of the loaded model's
state_dict: a future reader must decode each file to exactly these tensors and reproduce the outputs.

    python tests/golden/make_golden.py OUT_DIR      # then compare / move the new version's files in by hand
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from kancompress.format.checkpoint import load_checkpoint, save_checkpoint
from kancompress.config import ConvConfig, MetaConfig, default_config, default_conv_config
from kancompress.models import build_model

MODELS = ("kan", "fastkan", "gramkan")


def _fc(model: str, meta: bool):
    return default_config(model, (12, 10, 3), MetaConfig() if meta else None)


def _conv(model: str, meta: bool):
    conv = ConvConfig(strides=(1, 2), groups=2, dropout=0.25, dropout_linear=0.5)
    return default_conv_config(model, 2, 3, (4, 4), MetaConfig(d_emb=2) if meta else None, conv)


def _trained_like(model: torch.nn.Module) -> None:
    """Non-trivial values in every tensor (norms, biases, betas, running stats), seeded."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not name.endswith("indices"):
                tensor.add_(torch.randn_like(tensor) * 0.2)
                if name.endswith("running_var"):
                    tensor.abs_().add_(0.5)


def _skewed_clustered(config, ks, dtype: str, coding: str):
    model = build_model(config, "clustered", ks)
    _trained_like(model)
    for book in model.edges.layers:
        book.codebook.data.normal_(0, 0.4)
        n = book.indices.numel()
        skew = torch.multinomial(torch.tensor([0.8] + [0.2 / (book.k - 1)] * (book.k - 1)), n, replacement=True)
        book.indices.copy_(skew)
    model.edges.codebook_dtype, model.edges.index_coding = dtype, coding
    model.edges.round_to_storage()
    return model


def _to_v1(path: Path) -> None:
    """Rewrite a packed float32 v2 file as format 1 (index entries n, k, bits, coding only)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        meta = dict(handle.metadata())
    tensors = load_file(str(path))
    meta["format_version"] = "1"
    if "indices" in meta:
        meta["indices"] = json.dumps([{key: e[key] for key in ("n", "k", "bits", "coding")}
                                      for e in json.loads(meta["indices"])], separators=(",", ":"))
    save_file(tensors, str(path), metadata=meta)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    probes: dict[str, torch.Tensor] = {}
    manifest: dict[str, dict] = {}
    for arch, build_config, shape in (("fc", _fc, (7, 12)), ("conv", _conv, (5, 2, 6, 6))):
        for model_name in MODELS:
            for variant in ("dense", "meta", "packed", "rans-int8"):
                torch.manual_seed(len(probes) + 1)
                meta = variant == "meta"
                config = build_config(model_name, meta)
                if variant in ("dense", "meta"):
                    model = build_model(config, variant)
                    _trained_like(model)
                else:
                    ks = [4, 3]
                    dtype, coding = ("float32", "packed") if variant == "packed" else ("int8", "entropy")
                    model = _skewed_clustered(config, ks, dtype, coding)
                versions = ["v2"] + (["v1"] if variant != "rans-int8" else [])
                for version in versions:
                    name = f"{version}-{arch}-{model_name}-{variant}"
                    path = out / f"{name}.safetensors"
                    save_checkpoint(model, path, {"stage": "golden", "dataset": "digits"}, force=True)
                    if version == "v1":
                        _to_v1(path)
                    loaded = load_checkpoint(path)
                    x = torch.randn(*shape) * 1.5
                    with torch.no_grad():
                        y = loaded.model.eval()(x)
                    probes[f"{name}.x"], probes[f"{name}.y"] = x.contiguous(), y.contiguous()
                    state = loaded.model.state_dict()
                    manifest[name] = {
                        "file": path.name,
                        "kind": loaded.kind,
                        "format_version": loaded.header.version,
                        "index_codings": [e["coding"] for e in loaded.header.indices],
                        "state_sha256": {k: hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()
                                         for k, t in sorted(state.items())},
                    }
    save_file(probes, str(out / "probes.safetensors"))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
