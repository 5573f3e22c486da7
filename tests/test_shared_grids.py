"""Shared adapted grids: `regrid.share_grids` (few grids per layer, splines re-fitted), the format-5 storage of a
layer's grids as distinct rows plus an index per input (lossless, chosen by the writer when smaller), and
`compress --grids share`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import rewrite_checkpoint
from test_codec import _parts
from test_regrid import adapted_checkpoint, samples, stored_grid_model

from kancompress import api
from kancompress.config import default_config
from kancompress.errors import ConfigError, FormatError
from kancompress.format.checkpoint import (
    file_tensors,
    load_checkpoint,
    payload_bytes,
    save_checkpoint,
)
from kancompress.format.header import read_header
from kancompress.format.lean import model_prefix
from kancompress.models import KANModel, build_model
from kancompress.regrid import share_grids


def per_input_grids(model: KANModel, distinct: int | None = None, seed: int = 0) -> KANModel:
    """Each input's grid stretched by its own factor (as `update_grid` leaves them); with `distinct`, only that
    many different factors per layer."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.fc_layers():
            inputs = layer.basis.grid.shape[0]
            factors = 1 + 0.3 * torch.rand(distinct or inputs, 1, generator=generator)  # (m, 1)
            pick = torch.arange(inputs) % (distinct or inputs)
            layer.basis.grid.mul_(factors[pick])  # (in, G+2k+1)
    return model


def grid_rows(model: KANModel) -> list[int]:
    return [int(torch.unique(layer.basis.grid, dim=0).shape[0]) for layer in model.fc_layers()]


@torch.no_grad()
def test_sharing_as_many_grids_as_inputs_changes_nothing() -> None:
    """Oracle: with every input keeping its grid the re-fit's map is the identity (same basis on both sides)."""
    model = per_input_grids(stored_grid_model((16, 8, 3)))
    x = samples(3000, 16)
    result = share_grids(model, x, [16, 8])
    assert grid_rows(result) == [16, 8]
    torch.testing.assert_close(result(x), model(x), rtol=0, atol=1e-5)
    for before, after in zip(model.edge_vectors(), result.edge_vectors()):
        torch.testing.assert_close(after, before, rtol=0, atol=1e-5)


@torch.no_grad()
def test_shared_grids_are_at_most_the_counts_and_keep_the_function() -> None:
    """Grids that come in two kinds per layer (plus float noise) share two grids without changing the model."""
    model = per_input_grids(stored_grid_model((16, 8, 3)), distinct=2)
    with torch.no_grad():
        for layer in model.fc_layers():
            layer.basis.grid.add_(torch.randn_like(layer.basis.grid) * 1e-4)
    x = samples(3000, 16)
    result = share_grids(model, x, [2, 2])
    assert grid_rows(model) == [16, 8] and grid_rows(result) == [2, 2]
    assert (result(x) - model(x)).abs().max() < 0.02 * model(x).abs().max()
    fewer = share_grids(model, x, [1, 1])
    assert grid_rows(fewer) == [1, 1]
    for layer in fewer.fc_layers():  # a mean of increasing knots is a valid grid
        assert bool((layer.basis.grid.diff(dim=1) > 0).all())


def test_share_grids_refuses_what_it_cannot_share() -> None:
    with pytest.raises(ConfigError, match="no adapted|stored"):
        share_grids(build_model(default_config("kan", (6, 5, 3))), samples(), [1, 1])
    with pytest.raises(ConfigError, match="one count >= 1 per layer"):
        share_grids(stored_grid_model(), samples(), [1])
    with pytest.raises(ConfigError, match="one count >= 1 per layer"):
        share_grids(stored_grid_model(), samples(), [0, 1])


@pytest.mark.parametrize("kind", ["dense", "clustered"])
def test_a_file_stores_repeated_grids_once_and_reads_them_back_exactly(kind: str, tmp_path: Path) -> None:
    model = per_input_grids(stored_grid_model((16, 8, 3)), distinct=3)
    if kind == "clustered":
        from kancompress.cluster import cluster_model

        model = cluster_model(model, k=4)
    whole = per_input_grids(stored_grid_model((16, 8, 3)))  # every row its own: stored whole, as before
    path = save_checkpoint(model, tmp_path / "shared.safetensors")
    header = read_header(path)
    assert header.version == (5 if kind == "dense" else 8) and header.grids is not None
    state, table, grids = file_tensors(model)
    for layer, (entry, inputs) in enumerate(zip(grids or [], (16, 8))):
        assert entry is not None and entry.n == inputs and entry.k == 3
        assert state[f"layers.{layer}.basis.grid_rows"].shape == (3, 12)
        assert state[f"layers.{layer}.basis.grid_index"].numel() == entry.bytes
        assert f"layers.{layer}.basis.grid" not in state
    # Byte accounting against the tensors: 4·3·12 bytes of rows plus the index stream per layer, where the whole
    # grids took 4·in·12; everything else is as before (a version-7 file adds the rANS streams' symbol counts).
    others = sum(t.numel() * t.element_size() for name, t in state.items() if ".basis.grid_" not in name)
    models = sum(len(model_prefix(entry)) for entry in [*table, *(grids or [])] if entry is not None)
    assert payload_bytes(model) == others + models + sum(4 * 3 * 12 + entry.bytes for entry in grids or [])
    if kind == "dense":  # the same tensors otherwise
        assert payload_bytes(whole) == others + sum(4 * inputs * 12 for inputs in (16, 8))
    assert file_tensors(whole)[2] is None
    loaded = load_checkpoint(path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    assert read_header(save_checkpoint(whole, tmp_path / "whole.safetensors")).version == 2


def test_bad_shared_grid_entries_are_refused(tmp_path: Path) -> None:
    model = per_input_grids(stored_grid_model((16, 8, 3)), distinct=3)
    path = save_checkpoint(model, tmp_path / "s.safetensors")
    tensors, metadata = _parts(path)

    def refused(match: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
        rewrite_checkpoint(path, tensors, metadata)
        with pytest.raises(FormatError, match=match):
            load_checkpoint(path)

    refused("needs version 5", tensors, {**metadata, "format_version": "4"})
    table = json.loads(metadata["grids"])
    refused("one entry .*per layer", tensors, {**metadata, "grids": json.dumps(table[:1])})
    refused("grid index covers 16 items", tensors, {**metadata, "grids": json.dumps([{**table[0], "n": 15}, table[1]])})
    bad_rows = {**tensors, "layers.0.basis.grid_rows": tensors["layers.0.basis.grid_rows"][:2]}
    refused("grid_rows.* has shape", bad_rows, metadata)
    # A packed index of 2 bits holding the value 3, out of range for k = 3 (counts left as the table says).
    packed = {"n": 16, "k": 3, "bits": 2, "coding": "packed", "counts": [6, 5, 5], "bytes": 4,
              "codebook_dtype": "float32"}
    damaged = {**tensors, "layers.0.basis.grid_index": torch.full((4,), 255, dtype=torch.uint8)}
    refused("'layers.0.basis.grid_index' holds index 3 >= k=3", damaged,
            {**metadata, "grids": json.dumps([packed, table[1]])})
    config = json.loads(metadata["model"])
    config["basis"]["stored_grid"] = False
    refused("only for models with stored", tensors, {**metadata, "model": json.dumps(config)})


def test_compress_shares_adapted_grids_by_default() -> None:
    source = adapted_checkpoint(per_input_grids)
    quick = {"max_drop": 5.0, "ks": (4, 8), "search_epochs": 1, "epochs": 1, "methods": ("cluster",),
             "data_aware": False}
    small, provenance, trials = api.compress(source, api.CompressOptions(**quick))  # type: ignore[arg-type]
    assert trials[0].method == "grids" and len(trials[0].ks) == 2 and provenance["method"] == "grids+cluster"
    assert grid_rows(small) == list(trials[0].ks) and max(trials[0].ks) < 64
    assert small.config.basis.stored_grid
    kept, provenance, _ = api.compress(source, api.CompressOptions(**quick, grids="keep"))  # type: ignore[arg-type]
    assert provenance["method"] == "cluster" and grid_rows(kept) == [64, 8]
    assert payload_bytes(small) < payload_bytes(kept)
    with pytest.raises(ConfigError, match="unknown grids mode 'sometimes'"):
        api.CompressOptions(max_drop=1.0, grids="sometimes")
    with pytest.raises(ConfigError, match="--grid-counts"):
        api.CompressOptions(max_drop=1.0, grid_counts=(0, 4))


@pytest.mark.parametrize(("option", "value", "message"), [("--grids", "sometimes", "unknown grids mode 'sometimes'"),
                                                          ("--grid-counts", "4,x", "--grid-counts '4,x' must be"),
                                                          ("--grid-counts", "0,4", "--grid-counts needs")])
def test_compress_cli_refuses_bad_grid_options_in_one_line(option: str, value: str, message: str,
                                                           tmp_path: Path) -> None:
    from test_cli import assert_one_line_error, run

    path = save_checkpoint(per_input_grids(stored_grid_model((16, 8, 3))), tmp_path / "adapted.safetensors")
    out = tmp_path / "small.safetensors"
    assert_one_line_error(*run("compress", path, "--max-drop", "1", option, value, "-o", out), message)
    assert not out.exists()
