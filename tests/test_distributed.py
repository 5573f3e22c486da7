"""Devices and torchrun data parallelism on the CPU (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from typer.testing import CliRunner

from kancompress.cli import app
from kancompress.codec import load_checkpoint

runner = CliRunner()


def test_device_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--device", "tpu", "-o", str(tmp_path / "m.safetensors")])
    assert result.exit_code == 1 and "unknown device 'tpu'" in result.output
    if not torch.cuda.is_available():
        result = runner.invoke(app, ["train", "--device", "cuda", "-o", str(tmp_path / "m.safetensors")])
        assert result.exit_code == 1 and "no CUDA device" in result.output
    assert not (tmp_path / "m.safetensors").exists()


def _torchrun() -> list[str]:
    found = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


def test_torchrun_two_processes_matches_single_process(tmp_path: Path) -> None:
    args = ["train", "--meta", "--epochs", "8", "--patience", "0", "--device", "cpu"]
    multi, single = tmp_path / "ddp.safetensors", tmp_path / "one.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*_torchrun(), "--nproc-per-node", "2", "--master-port", "29517", "-m", "kancompress",
                           *args, "-o", str(multi)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("test accuracy") == 1  # rank 0 alone reports and writes
    assert runner.invoke(app, [*args, "-o", str(single)]).exit_code == 0
    accuracy = {}
    for name, path in (("multi", multi), ("single", single)):
        result = runner.invoke(app, ["eval", str(path), "--json"])
        accuracy[name] = json.loads(result.output)["accuracy"]
    assert load_checkpoint(multi).header.provenance["processes"] == 2
    assert abs(accuracy["multi"] - accuracy["single"]) <= 0.02, accuracy
