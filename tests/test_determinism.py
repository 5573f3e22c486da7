"""Same input, options and seed on the same machine: byte-identical outputs, for every command that writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from typer.testing import CliRunner

from kancompress.cli import app

runner = CliRunner()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def twice(tmp_path: Path, name: str, *args: str | Path, suffix: str = ".safetensors") -> tuple[str, str]:
    digests = []
    for attempt in ("a", "b"):
        out = tmp_path / f"{name}-{attempt}{suffix}"
        result = runner.invoke(app, [*map(str, args), "-o", str(out)])
        assert result.exit_code == 0, result.output
        digests.append(sha(out))
    return digests[0], digests[1]


def test_train_cluster_finetune_export_give_the_same_bytes_twice(tmp_path: Path) -> None:
    first, second = twice(tmp_path, "meta", "train", "--meta", "--epochs", "2", "--hidden", "8")
    assert first == second
    meta = tmp_path / "meta-a.safetensors"
    first, second = twice(tmp_path, "c", "cluster", meta, "-k", "4", "--codebook-dtype", "int8",
                          "--index-coding", "rans")
    assert first == second
    clustered = tmp_path / "c-a.safetensors"
    first, second = twice(tmp_path, "f", "finetune", clustered, "--epochs", "2", "--lr", "1e-3")
    assert first == second
    first, second = twice(tmp_path, "r", "finetune", clustered, "--epochs", "2", "--reassign", meta)
    assert first == second
    dense = tmp_path / "d-a.safetensors"
    assert runner.invoke(app, ["train", "--epochs", "1", "--hidden", "4", "-o", str(dense)]).exit_code == 0
    first, second = twice(tmp_path, "e", "export", dense, "--to", "efficient-kan")
    assert first == second
    first, second = twice(tmp_path, "x", "compress", meta, "--max-drop", "100", "--ks", "2,4", "--search-epochs",
                          "1", "--epochs", "1")
    assert first == second
    first, second = twice(tmp_path, "o", "export", clustered, "--to", "onnx", suffix=".onnx")
    assert first == second
