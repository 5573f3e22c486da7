"""Size-accuracy sweep and per-layer k under an accuracy budget."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from kancompress import api
from kancompress.cli import app
from kancompress.format.checkpoint import load_checkpoint, payload_bytes, save_checkpoint
from kancompress.data import load_dataset, split_validation
from kancompress.cluster import Clusterer
from kancompress.compress.greedy import choose_ks
from kancompress.train import TrainConfig, evaluate

runner = CliRunner()


@pytest.fixture(scope="module")
def meta_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = api.train(api.TrainOptions.build(model="kan", meta=True, hidden=(16,), train=TrainConfig(epochs=15)))
    return save_checkpoint(result.model, tmp_path_factory.mktemp("s") / "meta.safetensors", result.provenance)


def test_choose_ks_respects_the_budget_and_shrinks(meta_digits: Path) -> None:
    checkpoint = load_checkpoint(meta_digits)
    split = split_validation(load_dataset("digits"))
    clusterer = Clusterer(checkpoint.model)
    ks, base, result = choose_ks(clusterer, split, max_drop=1.0)
    assert result.accuracy >= base.accuracy - 0.01
    assert evaluate(clusterer.build(ks), split.val_x, split.val_y).accuracy == result.accuracy
    largest = [min(256, n) for n in checkpoint.model.config.num_edges]
    assert payload_bytes(clusterer.build(ks)) < payload_bytes(clusterer.build(largest))


def test_sweep_cli_writes_csv_and_plot(tmp_path: Path, meta_digits: Path) -> None:
    out, png = tmp_path / "s.csv", tmp_path / "s.png"
    result = runner.invoke(app, ["sweep", str(meta_digits), "--ks", "2,4,8", "--finetune-epochs", "1",
                                 "-o", str(out), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [int(r["k"]) for r in rows] == [2, 4, 8]
    sizes = [int(r["bytes"]) for r in rows]
    assert sizes == sorted(sizes) and all(r["finetuned_test_accuracy"] for r in rows)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = runner.invoke(app, ["sweep", str(meta_digits), "--ks", "2,x", "-o", str(tmp_path / "b.csv")])
    assert bad.exit_code == 1 and "comma-separated" in bad.output


def test_cluster_max_drop_cli(tmp_path: Path, meta_digits: Path) -> None:
    out = tmp_path / "auto.safetensors"
    result = runner.invoke(app, ["cluster", str(meta_digits), "--max-drop", "0.5", "--index-coding", "rans",
                                 "--full-metadata", "-o", str(out)])
    assert result.exit_code == 0, result.output
    loaded = load_checkpoint(out)
    provenance = loaded.header.provenance
    assert provenance["val"]["accuracy"] >= provenance["source_val"]["accuracy"] - 0.005
    assert torch.isfinite(loaded.model(torch.zeros(1, 64))).all()


def test_interrupted_sweep_keeps_its_points_and_resumes(tmp_path: Path, meta_digits: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "s.csv"
    original = api.sweep
    computed: list[int] = []

    def interrupted(*args, on_point=None, **kwargs):  # type: ignore[no-untyped-def]
        def stop_after_first(point):  # type: ignore[no-untyped-def]
            on_point(point)
            raise KeyboardInterrupt

        return original(*args, on_point=stop_after_first, **kwargs)

    monkeypatch.setattr(api, "sweep", interrupted)
    result = runner.invoke(app, ["sweep", str(meta_digits), "--ks", "2,4,8", "-o", str(out)])
    assert result.exit_code == 130 and "continue with --resume" in result.output
    assert not out.exists() and [r["k"] for r in csv.DictReader(out.with_name("s.csv.partial").open())] == ["2"]
    refused = runner.invoke(app, ["sweep", str(meta_digits), "--ks", "2,4,8", "-o", str(out)])
    assert refused.exit_code == 1 and "--resume" in refused.output

    def counting(clusterer, ks, *args, **kwargs):  # type: ignore[no-untyped-def]
        computed.extend(ks)
        return original(clusterer, ks, *args, **kwargs)

    monkeypatch.setattr(api, "sweep", counting)
    result = runner.invoke(app, ["sweep", str(meta_digits), "--ks", "2,4,8", "-o", str(out), "--resume", "--json"])
    assert result.exit_code == 0, result.output
    assert computed == [4, 8]
    assert [int(r["k"]) for r in csv.DictReader(out.open())] == [2, 4, 8]
    assert not out.with_name("s.csv.partial").exists()
