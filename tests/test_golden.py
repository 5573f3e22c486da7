"""Golden files: checkpoints written by earlier versions must read back bit-exactly and give the same outputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kancompress.format.checkpoint import load_checkpoint

GOLDEN = Path(__file__).parent / "golden"
MANIFEST: dict[str, dict] = json.loads((GOLDEN / "manifest.json").read_text())
PROBES = load_file(str(GOLDEN / "probes.safetensors"))


def _sha(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()


def test_golden_set_covers_versions_kinds_codings_and_archs() -> None:
    names = set(MANIFEST)
    for version in ("v1", "v2"):
        for arch in ("fc", "conv"):
            for variant in ("dense", "meta", "packed"):
                assert f"{version}-{arch}-kan-{variant}" in names
    assert any("rans" in entry["index_codings"] for entry in MANIFEST.values())
    assert any("context" in entry["index_codings"] for entry in MANIFEST.values())
    assert "v4-fc-kan-gridranges-dense" in names  # per-layer grid ranges (format 4)
    assert {"v5-fc-kan-sharedgrids-dense", "v5-fc-kan-sharedgrids-rans-int8"} <= names  # shared grids (format 5)
    assert {"v6-fc-fourierkan-layernorms-dense", "v6-fc-kan-multnodes-rans-int8", "v6-fc-wavkan-smallest-float16",
            "v6-fc-fastkan-nolayernorm-packed"} <= names  # wave-3 import features and bases (format 6)
    assert {"v7-fc-kan-smallest-int8", "v7-fc-kan-sharedgrids-rans-int8", "v7-conv-fastkan-smallest-float16",
            "v7-fc-kan-regression-multnodes-bfloat16"} <= names  # the lean container (format 7)
    for lean in ("v7-", "v8-"):
        assert {coding for name, entry in MANIFEST.items() if name.startswith(lean)
                for coding in entry["index_codings"]} == {"packed", "rans", "context"}
    assert {"v8-fc-kan-sharedgrids-rans-int8", "v8-conv-fastkan-smallest-float16",
            "v8-fc-gramkan-extras16-context-int8"} <= names  # one byte tensor, its table and CRCs inside (format 8)
    assert {entry["format_version"] for entry in MANIFEST.values()} == {1, 2, 3, 4, 5, 6, 7, 8}


@pytest.mark.parametrize("name", sorted(name for name in MANIFEST if name.startswith("v6-")))
def test_a_format_5_stamp_cannot_hold_format_6_features(tmp_path: Path, name: str) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    from kancompress.errors import FormatError
    from kancompress.format.header import read_header
    from kancompress.format.schema import metadata_checksum

    path = GOLDEN / MANIFEST[name]["file"]
    with safe_open(str(path), "pt") as handle:
        metadata = dict(handle.metadata())
    metadata["format_version"] = "5"
    checksums = json.loads(metadata["checksums"])
    checksums["metadata"] = metadata_checksum(metadata)  # a consistent file, only its version stamp older
    metadata["checksums"] = json.dumps(checksums, separators=(",", ":"), sort_keys=True)
    copy = tmp_path / "v5.safetensors"
    save_file(load_file(str(path)), str(copy), metadata)
    with pytest.raises(FormatError, match="format version 5 file cannot hold .* needs version 6"):
        read_header(copy)


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_golden_file_reads_bit_exactly_and_reproduces_outputs(name: str) -> None:
    entry = MANIFEST[name]
    loaded = load_checkpoint(GOLDEN / entry["file"])
    assert loaded.kind == entry["kind"]
    assert loaded.header.version == entry["format_version"]
    state = loaded.model.state_dict()
    assert sorted(state) == sorted(entry["state_sha256"])
    for key, digest in entry["state_sha256"].items():
        assert _sha(state[key]) == digest, key
    with torch.no_grad():
        outputs = loaded.model.eval()(PROBES[f"{name}.x"])
    # The decoded tensors above are bit-exact (that is the point); the forward's float32 rounding depends on the
    # CPU's kernels (up to 4.7e-6 of the output scale measured between two x86-64 machines, after LayerNorms):
    # a tolerance that scales with the outputs.
    expected = PROBES[f"{name}.y"]
    torch.testing.assert_close(outputs, expected, rtol=1e-5, atol=2e-5 * float(expected.abs().max()))


def test_renaming_a_module_attribute_cannot_change_the_format(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """File tensor names are declared in kancompress.format.schema: a layer whose attribute is renamed no longer
    loads the golden files, and cannot be saved under the new name."""
    from kancompress import layers
    from kancompress.errors import FormatError
    from kancompress.format.checkpoint import save_checkpoint

    original = layers.KANLinear.__init__

    def renamed(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        if self.output_norm is not None:
            self.post_norm = self.output_norm
            self.output_norm = None

    monkeypatch.setattr(layers.KANLinear, "__init__", renamed)
    with pytest.raises(FormatError, match="does not match the declared format"):
        load_checkpoint(GOLDEN / "v2-fc-gramkan-dense.safetensors")
    from kancompress.config import default_config
    from kancompress.models import build_model

    with pytest.raises(RuntimeError, match="does not map to the declared file format"):
        save_checkpoint(build_model(default_config("gramkan", (4, 3, 2))), tmp_path / "x.safetensors")
