"""The first layer's edge features of the training and validation samples, computed once per compress run by
distillation and reused by the fine-tunings after it (`models.FirstLayerFed`).

Distilling a plain source trains a MetaKAN for up to `--distill-epochs` epochs of the whole training split; with a
wide first layer (784 inputs of a B-spline against 32) most of each step is that layer's basis, which the epochs
recompute for the same samples. Computed once (Fashion-MNIST 784-32-10: 8 s, 1.7 GB of features; the process's
peak memory rose from 1.9 to 5.0 GB), the plain B-spline source's compress took 90 s instead of 138 s
(`examples/results/bench_compress-cache.md`). A fast search's trials are too short to repay building it (a
MetaKAN source, when its trials built it: 29 s against 20 s), so fine-tunings take the features only when
distillation already built them: clustering changes edge vectors, not the grid or the input transform.

The validation rows' features alone are cheap (Fashion-MNIST: 6,000 rows, 0.2 GB, under a second) and every
trial validates several times, so fine-tunings without the whole split's features still validate on them
(`validation_for`): they train on samples and judge on features.

The features are kept while the next model's first layer computes them alike (the same basis config, buffers and
input transform); a model whose features hold trainable parameters (`models.first_features_fixed`), or a split
whose features would pass `CACHE_BYTES`, trains and validates on its samples as before.
"""

from __future__ import annotations

import torch

from kancompress.data import Split
from kancompress.models import FirstLayerFed, KANModel, first_features, first_features_fixed

CACHE_BYTES = 2 << 30  # at most this many bytes of cached features (Fashion-MNIST 784-wide B-spline: 1.7 GB)


class FeatureCache:
    """The features of `split` for the models given to `split_for` and `validation_for`, one model's first layer
    at a time."""

    def __init__(self, split: Split, limit: int | None = None):
        self.split, self.limit = split, CACHE_BYTES if limit is None else limit
        self._key: tuple[object, dict[str, torch.Tensor]] | None = None
        self._val: torch.Tensor | None = None  # the validation rows' features, (N_val, in, |w|)
        self._fed: Split | None = None  # train and validation rows as features
        self._judged: Split | None = None  # train rows as samples, validation rows as features

    def split_for(self, model: KANModel, *alike: KANModel, build: bool = True) -> Split | None:
        """`split` as `model`'s first-layer features (train and validation rows, targets as they are), or None
        when the model cannot take them, they would pass the limit, a model in `alike` (a teacher that must
        see the same features) computes other ones, or (`build` False) they are not already computed."""
        rows = self.split.train_x.shape[0] + self.split.val_x.shape[0]
        if not self._usable(model, rows, *alike):
            return None
        if self._fed is None and build:
            self._fed = Split(first_features(model, self.split.train_x), self.split.train_y, self._validation(model),
                              self.split.val_y)
        return self._fed

    def validation_for(self, model: KANModel) -> Split | None:
        """`split` with its validation rows as `model`'s first-layer features and its training rows as samples
        (for `train.fit` with `judge=FirstLayerFed(model)`), built when missing; None when the model cannot take
        them or they would pass the limit."""
        if not self._usable(model, self.split.val_x.shape[0]):
            return None
        if self._judged is None:
            self._judged = Split(self.split.train_x, self.split.train_y, self._validation(model), self.split.val_y)
        return self._judged

    def fitting(self, model: KANModel, build: bool = False
                ) -> tuple[KANModel | FirstLayerFed, Split, FirstLayerFed | None]:
        """What `train.fit` trains `model` with, as (trainee, data, judge): on the whole split's first-layer features
        where the model takes them (computed here with `build`), else on samples validated on the validation rows'
        features where it can take those, else on samples."""
        fed = self.split_for(model, build=build)
        if fed is not None:
            return FirstLayerFed(model), fed, None
        judged = self.validation_for(model)
        if judged is not None:
            return model, judged, FirstLayerFed(model)
        return model, self.split, None

    def _usable(self, model: KANModel, rows: int, *alike: KANModel) -> bool:
        """Whether features of `rows` rows fit the limit and every model computes them alike; drops the features
        of a model whose first layer computes other ones."""
        if not all(first_features_fixed(each) for each in (model, *alike)):
            return False
        layer = model.fc_layers()[0]
        if rows * layer.in_features * (layer.num_basis + 1) * 4 > self.limit:
            return False
        key = _fingerprint(model)
        if any(not _same(_fingerprint(other), key) for other in alike):
            return False
        if self._key is None or not _same(key, self._key):
            self._val = self._fed = self._judged = None  # free the old features before new ones are computed
            self._key = key
        return True

    def _validation(self, model: KANModel) -> torch.Tensor:
        """The validation rows' features, computed by `model` when missing (the caller checked `_usable`)."""
        if self._val is None:
            self._val = first_features(model, self.split.val_x)
        return self._val


def _fingerprint(model: KANModel) -> tuple[object, dict[str, torch.Tensor]]:
    """What the first layer's features depend on: its basis config and width, the base activation, and the
    buffers of its basis and of the input transform (a stored grid, the input scale and shift)."""
    layer = model.fc_layers()[0]
    config = model.config
    buffers = {f"basis.{name}": tensor.detach().clone() for name, tensor in layer.basis.named_buffers()}
    if model.normalize is not None:
        buffers |= {f"normalize.{name}": tensor.detach().clone() for name, tensor in model.normalize.named_buffers()}
    return (config.model, config.layer_basis(0), config.widths[0], config.base_activation), buffers


def _same(a: tuple[object, dict[str, torch.Tensor]], b: tuple[object, dict[str, torch.Tensor]]) -> bool:
    return a[0] == b[0] and a[1].keys() == b[1].keys() and all(torch.equal(a[1][name], b[1][name]) for name in a[1])
