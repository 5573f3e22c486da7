"""Every upstream variant in `fixtures/upstream/` (saved by the libraries' own code, `make_upstream_fixtures.py`)
through `kancompress import` as a user runs it: exact against the original's outputs (`--check`), refused in one
line naming the reason, or imported with the assumption said on stderr, which `--check` then catches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from kancompress.cli import app
from kancompress.format.header import read_header

UPSTREAM = Path(__file__).parent / "fixtures" / "upstream"
VARIANTS: list[dict[str, Any]] = json.loads((UPSTREAM / "manifest.json").read_text())


def run(args: list[str]) -> Any:
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize("variant", VARIANTS, ids=[v["name"] for v in VARIANTS])
def test_variant(tmp_path: Path, variant: dict[str, Any]) -> None:
    source, out = UPSTREAM / variant["file"], tmp_path / "imported.safetensors"
    check = ["--check", str(UPSTREAM / f"{variant['file'].removesuffix('_state').rsplit('.', 1)[0]}.npz")]
    args = ["import", str(source), "-o", str(out), *variant["options"]]
    if variant["expect"] == "exact":
        result = run(args + check)
        assert result.exit_code == 0, result.output
        checked = read_header(out).provenance["check"]
        assert checked["passed"] and checked["deviation"] <= 1e-4 and checked["samples"] in (16, 64)
        assert read_header(out).provenance["source_library"] == variant["library"]
    elif variant["expect"] == "refused":
        result = run(args)
        assert result.exit_code == 1 and not out.exists()
        error = result.output.strip().splitlines()
        assert len(error) == 1 and error[0].startswith("error:"), result.output
        assert variant["match"] in error[0]
    else:  # imported with a stated assumption; the check shows it was the wrong one
        result = run(args)
        assert result.exit_code == 0, result.output
        assert variant["match"] in result.output and "note:" in result.output
        refused = run(args[:3] + [str(tmp_path / "checked.safetensors")] + args[4:] + check)
        assert refused.exit_code == 1 and "differs from the original" in refused.output
        assert not (tmp_path / "checked.safetensors").exists()


def test_pykan_one_output_model_is_a_regression_model(tmp_path: Path) -> None:
    out = tmp_path / "feynman.safetensors"
    result = run(["import", str(UPSTREAM / "pykan-one-output_state"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert read_header(out).config.task == "regression" and "regression" in result.output
    assert "_config.yml" in result.output  # it said which config it read
    arrays = np.load(UPSTREAM / "pykan-one-output.npz")  # the original's own outputs as targets: MSE ~ 0
    data = tmp_path / "feynman.npz"
    np.savez(data, x=arrays["x"].astype(np.float32), y=arrays["y"].astype(np.float32))
    result = run(["eval", str(out), "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["mse"] < 1e-10
    classifier = tmp_path / "classifier.safetensors"
    assert run(["import", str(UPSTREAM / "pykan-one-output_state"), "--task", "classification", "-o",
                str(classifier)]).exit_code == 0
    refused = run(["eval", str(classifier), "--data", str(data)])
    assert refused.exit_code == 1 and "imported again with --task regression" in refused.output


def test_options_that_do_not_apply_are_refused(tmp_path: Path) -> None:
    result = run(["import", str(UPSTREAM / "chebykan-readme.safetensors"), "-o", str(tmp_path / "c.safetensors"),
                  "--base-activation", "gelu"])
    assert result.exit_code == 1 and "--base-activation does not apply to chebykan" in result.output
    result = run(["import", str(UPSTREAM / "effkan-silu.safetensors"), "-o", str(tmp_path / "e.safetensors"),
                  "--rbf-denominator", "0.5"])
    assert result.exit_code == 1 and "--rbf-denominator does not apply to efficient-kan" in result.output
    result = run(["import", str(UPSTREAM / "effkan-silu.safetensors"), "-o", str(tmp_path / "e.safetensors"),
                  "--base-activation", "swish"])
    assert result.exit_code == 1 and "unknown --base-activation 'swish'" in result.output
    assert not list(tmp_path.iterdir())
