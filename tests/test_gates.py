"""Pipeline gates: `eval --min-accuracy/--max-mse/--min-r2` and `inspect --max-bytes/--max-bits-per-edge` exit 3
with one line per missed limit, say "passed" in --json, and refuse limits of the wrong kind; the README's CI
one-liner run as a shell command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kancompress.cli import app
from kancompress.errors import ConfigError
from kancompress.gates import GATE_EXIT, accuracy_limit, metric_checks, size_checks

runner = CliRunner()


@pytest.fixture(scope="module")
def clustered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gate")
    dense, small = folder / "d.safetensors", folder / "c.safetensors"
    assert runner.invoke(app, ["train", "--hidden", "8", "--epochs", "4", "--lr", "1e-2", "-o", str(dense)]).exit_code == 0
    assert runner.invoke(app, ["cluster", str(dense), "-k", "16", "-o", str(small)]).exit_code == 0
    return small


@pytest.mark.parametrize("text,fraction", [("0.93", 0.93), ("93", 0.93), ("93%", 0.93), ("1", 1.0), ("100", 1.0),
                                           ("0.5%", 0.005)])
def test_accuracy_limits_read_unambiguously(text: str, fraction: float) -> None:
    assert accuracy_limit(text) == pytest.approx(fraction)


@pytest.mark.parametrize("text", ["abc", "101", "-1", "150%"])
def test_bad_accuracy_limits_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--min-accuracy"):
        accuracy_limit(text)


def test_metric_and_size_checks() -> None:
    checks = metric_checks({"task": "classification", "accuracy": 0.9, "loss": 0.3}, min_accuracy="90")
    assert [c.passed for c in checks] == [True]
    assert not metric_checks({"task": "classification", "accuracy": 0.899}, min_accuracy="0.9")[0].passed
    regression = metric_checks({"task": "regression", "mse": 2e-3, "r2": 0.97}, max_mse=1e-3, min_r2=0.95)
    assert [c.passed for c in regression] == [False, True]
    with pytest.raises(ConfigError, match="for regression models"):
        metric_checks({"task": "classification", "accuracy": 0.9}, max_mse=1.0)
    report = {"file_bytes": 1000, "layers": [{"n": 600}, {"n": 200}]}
    assert [c.passed for c in size_checks(report, max_bytes=1000, max_bits_per_edge=9.9)] == [True, False]
    assert size_checks(report, max_bits_per_edge=10.0)[0].value == 10.0  # 1000 B · 8 / 800 edges


def test_eval_gate_exit_codes_and_json(clustered: Path) -> None:
    accuracy = json.loads(runner.invoke(app, ["eval", str(clustered), "--json"]).output)["accuracy"]
    passed = runner.invoke(app, ["eval", str(clustered), "--min-accuracy", f"{100 * accuracy - 1:.2f}"])
    assert passed.exit_code == 0 and "gate passed" in passed.output
    failed = runner.invoke(app, ["eval", str(clustered), "--min-accuracy", f"{100 * accuracy + 1:.2f}%"])
    assert failed.exit_code == GATE_EXIT
    assert [line for line in failed.output.splitlines() if line.startswith("gate failed: accuracy")]
    as_json = runner.invoke(app, ["eval", str(clustered), "--json", "--min-accuracy", "0.999"])
    assert as_json.exit_code == GATE_EXIT and json.loads(as_json.output)["passed"] is False
    wrong = runner.invoke(app, ["eval", str(clustered), "--min-r2", "0.9"])
    assert wrong.exit_code == 1 and "for regression models" in wrong.output


def test_inspect_gate_exit_codes_and_json(clustered: Path) -> None:
    size = clustered.stat().st_size
    assert runner.invoke(app, ["inspect", str(clustered), "--max-bytes", str(size)]).exit_code == 0
    failed = runner.invoke(app, ["inspect", str(clustered), "--max-bytes", str(size - 1)])
    assert failed.exit_code == GATE_EXIT and f"file size {size} B, limit <= {size - 1} B (--max-bytes)" in failed.output
    report = json.loads(runner.invoke(app, ["inspect", str(clustered), "--json", "--max-bits-per-edge", "1"]).output)
    assert report["passed"] is False and report["gates"][0]["option"] == "--max-bits-per-edge"


def test_the_readme_ci_one_liner(clustered: Path, tmp_path: Path) -> None:
    """The README's pre-commit-style line, run by a shell as a pipeline would: 0 when both gates pass, 3 when one
    fails."""
    kancompress = shutil.which("kancompress") or f"{sys.executable} -m kancompress"
    env = {**os.environ, "MODEL": str(clustered), "KANCOMPRESS": kancompress}
    line = ('$KANCOMPRESS inspect "$MODEL" --max-bytes {size} > /dev/null && '
            '$KANCOMPRESS eval "$MODEL" --min-accuracy {accuracy}')
    ok = subprocess.run(["bash", "-c", line.format(size=200_000, accuracy="50%")], env=env, capture_output=True)
    assert ok.returncode == 0, ok.stderr
    too_big = subprocess.run(["bash", "-c", line.format(size=100, accuracy="50%")], env=env, capture_output=True)
    assert too_big.returncode == GATE_EXIT and b"gate failed: file size" in too_big.stderr


def test_readme_lists_the_eval_json_keys(clustered: Path) -> None:
    import re

    from kancompress.tasks import Metrics

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    match = re.search(r'`eval --json` prints `\{([^}]*)\}` for a\s+classifier and `\{([^}]*)\}` for a\s+regression',
                      readme)
    assert match is not None
    listed = [set(re.findall(r'"(\w+)"', group)) for group in match.groups()]
    keys = set(json.loads(runner.invoke(app, ["eval", str(clustered), "--json"]).output))
    assert listed[0] == keys
    regression = Metrics("regression", 0.1, 10, None, 0.1, 0.9).to_json()
    assert listed[1] == (keys - {"accuracy"}) | set(regression)
