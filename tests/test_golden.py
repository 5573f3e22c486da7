"""Golden files: checkpoints written by earlier versions must read back bit-exactly and give the same outputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kancompress.codec import load_checkpoint

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
    assert {entry["format_version"] for entry in MANIFEST.values()} == {1, 2}


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
    torch.testing.assert_close(outputs, PROBES[f"{name}.y"], rtol=0, atol=1e-6)
