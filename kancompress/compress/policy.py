"""How `compress` fine-tunes: a fast-search trial's short fine-tuning, judged on validation every `CHUNK_STEPS`
steps and stopped as soon as the budget is met, the final fine-tuning, and BatchNorm statistics re-estimated after
clustering.

Every fine-tuning keeps its starting point as epoch 0 (`train.fit(keep_start=True)`): it never returns a model
worse on validation than the one it was given."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from kancompress.compress.cache import FeatureCache
from kancompress.data import Split
from kancompress.edges import CodebookEdges
from kancompress.models import KANModel
from kancompress.optim import default_finetune_lr, own_rng, parameter_groups
from kancompress.options import FinetuneOptions
from kancompress.tasks import Metrics
from kancompress.train import fit

CHUNK_STEPS = 50  # a fast-search trial is judged on validation after every this many optimizer steps
PATIENCE_CHUNKS = 4  # ... and given up after this many chunks without a better validation metric
FINAL_STEPS_FACTOR = 2  # the fast search's final fine-tuning: at most this many times --search-steps
FINAL_CANDIDATES = 3  # ... given to the accepted candidate and the smaller ones closest to the budget
FINAL_PATIENCE_CHUNKS = 6  # a smaller candidate's final fine-tuning goes on while it improves within this
BATCHNORM_SAMPLES = 4096  # training samples behind re-estimated BatchNorm statistics


def finetuner(options: FinetuneOptions, split: Split, stop_when: Callable[[Metrics], bool] | None = None,
              chunk_steps: int = 0, cache: FeatureCache | None = None) -> Callable[[KANModel], KANModel]:
    """A function that fine-tunes a clustered model in place (codebooks and extras at `options.lr`, default the
    basis's lr_c), computing with its codebooks as their storage dtype holds them (`CodebookEdges.
    quantization_aware`), stopping early once `stop_when(best validation metrics)` holds, and rounds its codebooks
    to their storage precision. With `chunk_steps`, `options.train.epochs` counts chunks of that many steps
    (`train.fit`). With a `cache` that holds features this model computes alike (distillation built them), it
    trains and validates on them; else it validates on the validation rows' features where the model can take
    them (`compress.cache`)."""

    def tune(model: KANModel) -> KANModel:
        rate = options.lr if options.lr is not None else default_finetune_lr(model)
        assert isinstance(model.edges, CodebookEdges)
        model.edges.quantization_aware = True  # validation judges what the file will hold
        trainee, data, judge = cache.fitting(model) if cache is not None else (model, split, None)
        with own_rng(options.train.seed, next(model.parameters()).device):
            fit(trainee, data, parameter_groups(model, rate), options.train, keep_start=True, stop_when=stop_when,
                chunk_steps=chunk_steps, judge=judge)
        model.edges.round_to_storage()
        model.round_extras()
        return model

    return tune


def chunks_for(steps: int) -> int:
    """How many chunks of `CHUNK_STEPS` make at least `steps` optimizer steps."""
    return max(1, -(-steps // CHUNK_STEPS))


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> bool:
    """Recompute every BatchNorm's running mean and variance from `x` (at most `BATCHNORM_SAMPLES` rows, evenly
    strided, moved to the model's device) as a cumulative average, the rest of the model unchanged: clustering
    moves the activations that the source's statistics describe. Returns whether the model has any BatchNorm."""
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    x = x[:: -(-x.shape[0] // BATCHNORM_SAMPLES)]
    momenta = [norm.momentum for norm in norms]
    was_training = model.training
    try:
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative moving average: every batch counts the same
        model.eval()
        for norm in norms:
            norm.train()
        device = next(model.parameters()).device
        for chunk in torch.split(x, batch_size):
            model(chunk.to(device))
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.train(was_training)
    return True
