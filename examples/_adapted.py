"""An efficient-kan KAN whose grids `update_grid` adapted, trained on a built-in dataset: the checkpoint a user of
efficient-kan has after following its README and calling `model(x, update_grid=True)`.

Upstream semantics (efficient-kan `KANLinear.update_grid`, margin 0.01, grid_eps 0.02), per layer in order, on one
batch: the new knots of input i are 0.98·(G+1 evenly spaced order statistics of x[:, i]) + 0.02·(a uniform grid over
[min - margin, max + margin]), extended by k uniform steps on each side; the spline coefficients are then refitted
by least squares so that every edge keeps its function on the batch; the next layer is updated on the outputs of
the updated one. The forward pass is kancompress's B-spline layer with a stored grid, which matches efficient-kan's
to float tolerance (tests/test_import.py).
"""

from __future__ import annotations

import dataclasses

import torch

from kancompress import api
from kancompress.config import TrainConfig, default_config
from kancompress.data import Dataset, split_validation
from kancompress.models import KANModel, build_model
from kancompress.train import fit

MARGIN, GRID_EPS = 0.01, 0.02  # efficient-kan's defaults


@torch.no_grad()
def update_grid(model: KANModel, x: torch.Tensor) -> None:
    """efficient-kan's `KAN.forward(x, update_grid=True)` for a kancompress dense B-spline model with stored grids."""
    for layer, vectors in zip(model.fc_layers(), model.dense_edges().vectors):
        grid_size, order, nb = layer.basis.grid_size, layer.basis.spline_order, layer.num_basis
        edges = vectors.data.view(layer.out_features, layer.in_features, nb + 1)  # (out, in, |w|), in place
        curves = torch.einsum("nib,oib->ino", layer.basis(x), edges[..., :nb])  # (in, N, out): each edge's spline
        ordered = torch.sort(x, dim=0).values  # (N, in)
        adaptive = ordered[torch.linspace(0, x.shape[0] - 1, grid_size + 1, dtype=torch.int64)]  # (G+1, in)
        step = (ordered[-1] - ordered[0] + 2 * MARGIN) / grid_size  # (in,)
        uniform = torch.arange(grid_size + 1).unsqueeze(1) * step + ordered[0] - MARGIN  # (G+1, in)
        knots = GRID_EPS * uniform + (1 - GRID_EPS) * adaptive
        knots = torch.cat([knots[:1] - step * torch.arange(order, 0, -1).unsqueeze(1), knots,
                           knots[-1:] + step * torch.arange(1, order + 1).unsqueeze(1)])  # (G+2k+1, in)
        layer.basis.grid.copy_(knots.T)
        bases = layer.basis(x).transpose(0, 1)  # (in, N, nb) on the new grid
        edges[..., :nb] = torch.linalg.lstsq(bases, curves).solution.permute(2, 0, 1)  # (out, in, nb)
        x = layer(x, edges)


def train_adapted(data: Dataset, hidden: int = 32, epochs: int = 10, update_after: int = 2, lr: float = 1e-3,
                  batch: int = 4096, seed: int = 0) -> KANModel:
    """efficient-kan's README model (`KAN([in, hidden, classes])`, AdamW lr 1e-3, weight decay 1e-4) trained on the
    training part of `split_validation(data, seed)` (the split kancompress validates on), with `update_grid` on
    `batch` training samples after `update_after` epochs, then trained on to `epochs` (early stopping)."""
    widths = (int(data.train_x[0].numel()), hidden, data.num_classes)
    config = default_config("kan", widths)
    config = dataclasses.replace(config, basis=dataclasses.replace(config.basis, stored_grid=True))
    torch.manual_seed(seed)
    model = build_model(config)
    split = split_validation(data, seed=seed)
    fit(model, split, api.parameter_groups(model, lr), TrainConfig(epochs=update_after, patience=0, seed=seed))
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(split.train_x.shape[0], generator=generator)[:batch]
    update_grid(model, split.train_x[rows].flatten(1))
    fit(model, split, api.parameter_groups(model, lr), TrainConfig(epochs=epochs - update_after, patience=3,
                                                                   seed=seed))
    return model
