"""The compress pipeline: the smallest clustered model whose validation metric, after fine-tuning, stays within
the budget of the source's (`api.compress` documents the whole behaviour).

For each method's source (the model itself, or a MetaKAN distilled from it), one of two searches picks the
per-layer k and clustering:
- "fast" (default): the per-layer bytes and loss increases of every (k, clustering) measured without training
  (`proxy`), their rate–distortion frontier (`allocate`), then a binary search along it in which each candidate is
  fine-tuned for at most `search_steps` steps, stopping as soon as it is within budget. The smaller candidates
  that missed by the least get a longer fine-tuning (they often get there); else the smallest one within budget
  is polished. Fine-tuning is judged on the codebooks as stored (`CodebookEdges.quantization_aware`).
- "thorough": the greedy search of earlier versions (`greedy.choose_ks`), plain and data-aware K-means searched
  separately, every trial fine-tuned `search_epochs` full epochs before it counts, finals at every rate.
Methods run in the order distill, cluster, soft; the fast search of each later one tries only candidates smaller
than the results so far (a larger one could not win). Soft (`compress.soft`) searches the cluster method's
frontier, each candidate's K-means only the start of a soft retrain of the source (`_softened`). When nothing fits
with int8 codebooks and `codebook_dtype` is "auto", the search is repeated with float16, then float32 codebooks (a
precise regression model can need them). A result no smaller than a dense source is refused like one outside the
budget."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from kancompress.cluster import Clusterer, clustered_from_parts
from kancompress.compress.cache import FeatureCache
from kancompress.compress.allocate import Allocation, frontier
from kancompress.compress.greedy import choose_ks, smallest_per_layer
from kancompress.compress.policy import (
    FINAL_CANDIDATES,
    FINAL_PATIENCE_CHUNKS,
    CHUNK_STEPS,
    FINAL_STEPS_FACTOR,
    PATIENCE_CHUNKS,
    chunks_for,
    finetuner,
    reestimate_batchnorm,
)
from kancompress.compress.proxy import calibration, layer_choices
from kancompress.compress.soft import SoftCodebookEdges, softened
from kancompress.compress.trials import CompressTrial, Progress, ProgressMeter, best_trial
from kancompress.data import Split
from kancompress.edges import CodebookEdges
from kancompress.errors import BudgetError
from kancompress.format.checkpoint import checkpoint_bytes, payload_bytes
from kancompress.models import FirstLayerFed, KANModel
from kancompress.optim import default_finetune_lr, default_learning_rates, own_rng, parameter_groups
from kancompress.config import TrainConfig
from kancompress.options import GRID_BUDGET, CompressOptions, FinetuneOptions, default_meta
from kancompress.regrid import has_adapted_grid, regrid, share_grids
from kancompress.tasks import Metrics, budget_resolution_warning, rank, within_budget
from kancompress.train import fit, validate
from kancompress.weighting import input_grams

METHOD_ORDER = ("distill", "cluster", "soft")  # the order compress runs its methods in (`compress_model`)
AUTO_DTYPES = ("int8", "float16", "float32")  # codebook_dtype "auto": tried in this order until one fits
DISTILL_BUDGET_SHARE = 0.25  # the fast search's distillation stops once within this share of the budget
BOUND_SLACK = 1.05  # a later method's candidates estimated below this times an earlier result are measured


@dataclass
class CompressResult:
    """The chosen model (on the search's device), its trial, the source's validation metrics, every trial, and
    the warning about a small validation split (None when it resolves the budget)."""

    model: KANModel
    chosen: CompressTrial
    base: Metrics
    trials: list[CompressTrial]
    warning: str | None


class _Run:
    """The state one compress run shares between its steps: data, budget, device, trials, progress."""

    def __init__(self, split: Split, options: CompressOptions, target: torch.device, base: Metrics,
                 on_trial: Callable[[CompressTrial], None] | None, meter: ProgressMeter):
        self.split, self.options, self.target, self.base = split, options, target, base
        self.on_trial, self.meter = on_trial, meter
        self.cache = FeatureCache(split)  # `first_features` moves each batch to the model's device
        self.trials: list[CompressTrial] = []

    def within(self, val: Metrics) -> bool:
        return within_budget(val, self.base, self.options.max_drop)

    def record(self, trial: CompressTrial) -> CompressTrial:
        self.trials.append(trial)
        if self.on_trial is not None:
            self.on_trial(trial)
        return trial

    def validated(self, model: KANModel) -> Metrics:
        """`model`'s validation metrics, on the validation rows' cached first-layer features where it takes them."""
        judged = self.cache.validation_for(model)
        return validate(model, self.split) if judged is None else validate(FirstLayerFed(model), judged)

    def prepared(self, model: KANModel) -> KANModel:
        """A freshly clustered model on the device, its BatchNorm statistics re-estimated on the training split."""
        model = model.to(self.target)
        reestimate_batchnorm(model, self.split.train_x)
        return model

    def tuned(self, label: str, model: KANModel, lr: float, epochs: int, patience: int, search: bool = False
              ) -> tuple[KANModel, CompressTrial]:
        """`model` fine-tuned for `epochs` full epochs (a search trial stops once it is within budget) and recorded
        as a trial."""
        return self._tuned(label, model, lr, self.options.train_config(epochs, patience), search, 0)

    def tuned_steps(self, label: str, model: KANModel, lr: float, steps: int, search: bool = False,
                    patience: int = PATIENCE_CHUNKS) -> tuple[KANModel, CompressTrial]:
        """`model` fine-tuned for at most `steps` optimizer steps, validated every `CHUNK_STEPS` steps, given up after
        `patience` chunks without improving."""
        config = self.options.train_config(chunks_for(steps), patience)
        return self._tuned(label, model, lr, config, search, steps)

    def _tuned(self, label: str, model: KANModel, lr: float, config: TrainConfig, search: bool, steps: int
               ) -> tuple[KANModel, CompressTrial]:
        stop = self.within if search else None
        candidate = finetuner(FinetuneOptions(lr=lr, train=config), self.split, stop,
                              CHUNK_STEPS if steps else 0, self.cache)(model)
        val = self.validated(candidate)
        edges = candidate.edges
        assert isinstance(edges, CodebookEdges)
        trial = CompressTrial(label, tuple(book.k for book in edges.books()), lr, 0 if steps else config.epochs,
                              payload_bytes(candidate), val, self.within(val), edges.codebook_dtype, steps)
        return candidate, self.record(trial)


def compress_model(
    model: KANModel,
    split: Split,
    options: CompressOptions,
    target: torch.device,
    on_trial: Callable[[CompressTrial], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> CompressResult:
    """The smallest clustered model of the dense or meta `model` (on `target`) within budget on `split`'s
    validation part (module doc; `api.compress` for the options). Raises BudgetError when none fits."""
    base = validate(model, split)
    warning = budget_resolution_warning(base, options.max_drop)
    if warning is not None and on_warning is not None:
        on_warning(warning)
    # distill first: its fixed cost buys a result that bounds the cluster method's search (`_fast`'s `below`);
    # soft last: its trials cost epochs, so it searches only what is smaller than the others' results
    methods = sorted((method for method in options.methods if method != "distill" or model.kind == "dense"),
                     key=METHOD_ORDER.index)
    run = _Run(split, options, target, base, on_trial, ProgressMeter(on_progress, 2 * len(methods)))
    start, prefix = _gridded(model, run)
    sources: dict[str, KANModel] = {}
    clusterers: dict[str, Clusterer] = {}
    results: list[tuple[KANModel, CompressTrial]] = []
    dtypes = AUTO_DTYPES if options.codebook_dtype == "auto" else (options.codebook_dtype,)
    for dtype in dtypes:
        for method in methods:
            source = "distill" if method == "distill" else "cluster"  # soft starts from the cluster method's K-means
            if source not in sources:
                run.meter.step("distilling" if method == "distill" else "clustering", prefix + method)
                sources[source] = (_distilled(start, model, run, prefix) if method == "distill" else start)
                grams = input_grams(sources[source], split.train_x.to(target)) if options.data_aware else None
                clusterers[source] = Clusterer(sources[source], options.seed, options.n_init, dtype,
                                               options.index_coding, options.kmeans, grams)
            clusterer = clusterers[source]
            clusterer.codebook_dtype = dtype
            soft = method == "soft"
            if options.search == "fast":
                below = min((trial.bytes for _, trial in results), default=None)
                found = _fast(clusterer, prefix + method, run, below, soft)
            else:
                found = _thorough(clusterer, prefix + method, run, soft)
            if found is not None:
                results.append(found)
        if results:
            break
    if not results:
        clustered = [trial for trial in run.trials if trial.ks and trial.codebook_dtype]
        closest = best_trial(clustered) if clustered else None
        nearest = (f"best: {closest.val.describe()} at k = {list(closest.ks)}, {closest.codebook_dtype} codebooks, "
                   if closest is not None else "")
        raise BudgetError(f"no codebook keeps the validation metric within --max-drop {options.max_drop:g} ({nearest}"
                          f"against {base.describe()}); allow a larger drop or add larger --ks",
                          [trial.to_json() for trial in run.trials])
    best, chosen = _half_extras(*min(results, key=lambda pair: pair[1].bytes), run)
    size, source_size = len(checkpoint_bytes(best, {})), len(checkpoint_bytes(model, {}))  # whole files, no history
    if model.kind == "dense" and size >= source_size:
        raise BudgetError(f"no clustered file within --max-drop {options.max_drop:g} is smaller than the source's "
                          f"(the smallest: {size:,} bytes at k = {list(chosen.ks)}, {chosen.codebook_dtype} "
                          f"codebooks, against {source_size:,}); allow a larger drop",
                          [trial.to_json() for trial in run.trials])
    run.meter.step("done", chosen.method, 1)
    return CompressResult(best, chosen, base, run.trials, warning)


def _half_extras(model: KANModel, trial: CompressTrial, run: _Run) -> tuple[KANModel, CompressTrial]:
    """The chosen model with its extras (norms, biases, BatchNorm statistics, the conv head; not stored grids)
    stored at float16 where validation stays within budget: a FastKAN's first LayerNorm alone is 6 KB at float32,
    over a third of its clustered file. Skipped for float32 codebooks (precision asked for) and extras beyond float16."""
    extras = model.extras()
    largest = max((float(t.abs().max()) for t in extras.values() if t.numel()), default=0.0)
    if not extras or trial.codebook_dtype == "float32" or largest > float(torch.finfo(torch.float16).max):
        return model, trial
    run.meter.step("float16 extras", trial.method)
    candidate = copy.deepcopy(model)
    candidate.extras_dtype = "float16"
    candidate.round_extras()
    val = run.validated(candidate)
    run.meter.step("float16 extras", trial.method, 1)
    if not run.within(val):
        return model, trial
    return candidate, run.record(dataclasses.replace(trial, method=trial.method + ", float16 extras",
                                                     bytes=payload_bytes(candidate), val=val))


def _rates(model: KANModel, options: CompressOptions) -> tuple[float, ...]:
    lr_c = default_finetune_lr(model)
    return options.lrs or (10 * lr_c, lr_c)


def _fast(clusterer: Clusterer, method: str, run: _Run, below: int | None = None, soft: bool = False
          ) -> tuple[KANModel, CompressTrial] | None:
    """Proxy, frontier, binary search with short fine-tuned trials, one final fine-tuning (module doc). With
    `below` (bytes of another method's result), only candidates smaller than that are searched: a larger one
    could not win. With `soft`, each candidate's K-means only starts a soft retrain (`_softened`)."""
    options, split = run.options, run.split
    run.meter.step("proxy", method)
    x, y = calibration(split.train_x, split.train_y, conv=clusterer.model.config.conv is not None)
    layers = layer_choices(clusterer, options.ks, clusterer.codebook_dtype, options.index_coding, x, y)
    points = frontier(layers)
    if below is not None:
        points = _smaller(clusterer, points, below)
        if not points:
            return None
    rate = _rates(clusterer.model, options)[0]
    run.meter.plan(max(1, (len(points) - 1).bit_length()) + 1)
    tried: dict[int, tuple[KANModel, CompressTrial]] = {}

    def verify(index: int) -> bool:
        point = points[index]
        label = _label(method, point)
        run.meter.step(f"verify k={list(point.ks)}", label)
        model = _assembled(clusterer, point)
        model = run.prepared(_softened(clusterer.model, model, run) if soft else model)
        tried[index] = run.tuned_steps(label, model, rate, options.search_steps, search=True)
        run.meter.step(f"verify k={list(point.ks)}", label, 1)
        return tried[index][1].within

    low, high = 0, len(points) - 1
    if not verify(high):
        return None
    while low < high:  # the smallest index within budget, assuming feasibility grows with bytes along the frontier
        middle = (low + high) // 2
        if verify(middle):
            high = middle
        else:
            low = middle + 1
    # Final fine-tuning. The smaller candidates that missed the budget by the least (up to FINAL_CANDIDATES - 1)
    # continue while they improve, up to --epochs epochs, until within budget: a trial's few steps can fall just
    # short. Then (when none gets there) the accepted candidate is polished for FINAL_STEPS_FACTOR trials' steps.
    accepted = tried[high]
    missed = sorted((pair for pair in tried.values() if not pair[1].within and pair[1].bytes < accepted[1].bytes),
                    key=lambda pair: rank(pair[1].val))[: FINAL_CANDIDATES - 1]  # the best validation first
    run.meter.plan(len(missed))
    longest = max(options.epochs * -(-split.train_x.shape[0] // options.batch_size),
                  FINAL_STEPS_FACTOR * options.search_steps)
    for model, trial in sorted(missed, key=lambda pair: pair[1].bytes):
        run.meter.step("final fine-tuning", trial.method)
        rescued = run.tuned_steps(trial.method, model, rate, longest, search=True, patience=FINAL_PATIENCE_CHUNKS)
        run.meter.step("final fine-tuning", trial.method, 1)
        if rescued[1].within:
            return rescued
    run.meter.step("final fine-tuning", accepted[1].method)
    final = run.tuned_steps(accepted[1].method, accepted[0], rate, FINAL_STEPS_FACTOR * options.search_steps)
    run.meter.step("final fine-tuning", accepted[1].method, 1)
    return final  # never worse than the accepted trial, which was within budget


def _smaller(clusterer: Clusterer, points: list[Allocation], below: int) -> list[Allocation]:
    """The frontier `points` whose files would be smaller than `below` bytes. A point's bytes are its layers'; the
    rest of the file (extras, stream models) barely depends on k, so it is estimated from the two ends (with
    `BOUND_SLACK`) and the largest survivors are then measured exactly, from the top down."""
    rest = min(payload_bytes(_assembled(clusterer, point)) - point.bytes for point in (points[0], points[-1]))
    kept = [point for point in points if point.bytes + rest < below * BOUND_SLACK]
    while kept and payload_bytes(_assembled(clusterer, kept[-1])) >= below:
        kept.pop()
    return kept


def _assembled(clusterer: Clusterer, point: Allocation) -> KANModel:
    parts = [(choice.codebook, choice.indices) for choice in point.choices]
    return clustered_from_parts(clusterer.model, parts, clusterer.codebook_dtype, clusterer.index_coding)


def _label(method: str, point: Allocation) -> str:
    """The method with its clustering: "cluster", "cluster data-aware", or per layer when they differ."""
    kinds = ["data-aware" if choice.data_aware else "plain" for choice in point.choices]
    if len(set(kinds)) > 1:
        return f"{method} ({', '.join(kinds)})"
    return method + (" data-aware" if kinds[0] == "data-aware" else "")


def _thorough(clusterer: Clusterer, method: str, run: _Run, soft: bool = False
              ) -> tuple[KANModel, CompressTrial] | None:
    """The greedy search over each clustering separately, full-epoch trials, finals at every rate; with `soft`,
    every clustered model is first soft-retrained from its K-means (`_softened`)."""
    options, split = run.options, run.split
    rates = _rates(clusterer.model, options)
    variants = [False, True] if any(clusterer.data_aware(layer) for layer in range(len(clusterer.vectors))) \
        else [False]
    best: tuple[KANModel, CompressTrial] | None = None
    for aware in variants:
        label = method + (" data-aware" if aware else "")

        def built(ks: list[int]) -> KANModel:
            model = clusterer.build(ks, aware)  # noqa: B023
            return run.prepared(_softened(clusterer.model, model, run) if soft else model)

        def score(ks: list[int]) -> Metrics:
            run.meter.step(f"trial k={ks}", label)  # noqa: B023
            trial = run.tuned(label, built(ks), rates[0], options.search_epochs, 0, search=True)[1]  # noqa: B023
            run.meter.step(f"trial k={ks}", label, 1)  # noqa: B023
            return trial.val

        ks, _, _ = choose_ks(clusterer, split, options.max_drop, options.ks, score=score, base=run.base)
        start = built(ks)  # one start for every rate (with soft, one retrain); each rate tunes its own copy
        finals = []
        for lr in rates:
            run.meter.step("final fine-tuning", label)
            finals.append(run.tuned(label, copy.deepcopy(start), lr, options.epochs, options.patience))
        chosen = best_trial(trial for _, trial in finals)
        if chosen.within and (best is None or chosen.bytes < best[1].bytes):
            best = next(pair for pair in finals if pair[1] is chosen)
    return best


def _softened(source: KANModel, clustered: KANModel, run: _Run) -> KANModel:
    """The clustered model of `source` that a soft retrain (`compress.soft`) reaches from `clustered`'s codebooks:
    at most `soft_epochs` epochs of the training split (the source's edges and extras at its training rates, the
    codebooks at the fine-tuning's search rate), judged on validation with every edge at its nearest centroid,
    stopped as soon as that is within budget, the best kept; then the hard assignment. Like a fine-tuning, it
    trains on the first layer's cached features where the model takes them (built here: it runs epochs)."""
    options, split = run.options, run.split
    edges = clustered.edges
    assert isinstance(edges, CodebookEdges)
    steps = options.soft_epochs * -(-split.train_x.shape[0] // options.batch_size)
    codebooks = [book.codebook.detach() for book in edges.books()]
    model = softened(source, codebooks, steps, edges.codebook_dtype).to(run.target)
    store = model.edges
    assert isinstance(store, SoftCodebookEdges)
    config = source.config
    lr, lr_meta, lr_embed = default_learning_rates(config.model, config.conv is not None, source.kind == "meta",
                                                   task=config.task)
    groups = store.parameter_groups(lr, lr_meta, lr_embed, _rates(source, options)[0])
    groups.append({"params": model.extra_parameters(), "lr": lr})
    trainee, data, judge = run.cache.fitting(model, build=True)  # built here: the retrain runs epochs
    with own_rng(options.seed, run.target):
        fit(trainee, data, groups, options.train_config(chunks_for(steps), 0),  # the whole schedule: no patience
            stop_when=run.within, chunk_steps=CHUNK_STEPS, judge=judge)
    return clustered_from_parts(model, store.parts(), edges.codebook_dtype, edges.index_coding)


def _gridded(model: KANModel, run: _Run) -> tuple[KANModel, str]:
    """The source a dense B-spline model with adapted per-input grids is clustered from (`options.grids`), and
    the prefix its methods are named with ("grids+", "regrid+"; "" when the model is used as it is)."""
    options, split = run.options, run.split
    if options.grids == "keep" or not has_adapted_grid(model) or model.kind != "dense":
        return model, ""
    run.meter.step("grids", options.grids)
    counts: tuple[int, ...] = ()
    if options.grids == "regrid":
        start = regrid(model, split.train_x.to(run.target))
        val = validate(start, split)
    else:
        start, counts, val = _shared_grids(model, run)
    if start is model:
        return model, ""
    step = {"share": "grids", "regrid": "regrid"}[options.grids]
    run.record(CompressTrial(step, counts, 0.0, 0, payload_bytes(start), val, run.within(val)))
    return start, step + "+"


def _shared_grids(model: KANModel, run: _Run) -> tuple[KANModel, tuple[int, ...], Metrics]:
    """Per layer (widest first) the fewest shared grids of `options.grid_counts` (`regrid.share_grids`) whose model
    stays within `GRID_BUDGET`·max_drop of the source on the validation split; `model` itself when no count is
    accepted. Returns the model, the counts and its metrics."""
    options, split = run.options, run.split
    widths = [layer.in_features for layer in model.fc_layers()]
    tried: dict[tuple[int, ...], tuple[KANModel, Metrics]] = {tuple(widths): (model, run.base)}
    x = split.train_x.to(run.target)

    def score(counts: list[int]) -> Metrics:
        if tuple(counts) not in tried:
            shared = share_grids(model, x, counts, options.seed)
            tried[tuple(counts)] = shared, validate(shared, split)
        return tried[tuple(counts)][1]

    options_per_layer = [[count for count in options.grid_counts if count < width] + [width] for width in widths]
    order = sorted(range(len(widths)), key=lambda layer: -widths[layer])
    counts, val = smallest_per_layer(options_per_layer, order, score,
                                     lambda trial: within_budget(trial, run.base, GRID_BUDGET * options.max_drop))
    return tried[tuple(counts)][0], tuple(counts), val


def _distilled(source: KANModel, teacher: KANModel, run: _Run, prefix: str) -> KANModel:
    """The distill method's source: a MetaKAN fitted to `source`'s vectors (`distill.meta_from_dense`), then
    trained on the task with `teacher` (the original model; `source` itself unless it was re-gridded) as teacher
    for up to `distill_epochs` (the basis's meta learning rates, early stopping on the validation split)."""
    from kancompress.distill import meta_from_dense

    options, split = run.options, run.split
    config = source.config
    conv = config.conv is not None
    meta, _ = meta_from_dense(source, default_meta(config.model, conv), seed=options.seed)
    meta = meta.to(run.target)
    lr, lr_meta, lr_embed = default_learning_rates(config.model, conv, True)
    # the fast search stops distilling once the MetaKAN is within a share of the budget: clustering spends the rest
    enough = ((lambda val: within_budget(val, run.base, DISTILL_BUDGET_SHARE * options.max_drop))
              if options.search == "fast" else None)
    fed = run.cache.split_for(meta, teacher)  # both see the first layer's cached features, or both the samples
    student, guide, data = ((FirstLayerFed(meta), FirstLayerFed(teacher), fed) if fed is not None
                            else (meta, teacher, split))
    with own_rng(options.seed, run.target):
        fit(student, data, parameter_groups(meta, lr, lr_meta, lr_embed),
            options.train_config(options.distillation_epochs, options.patience), teacher=guide, stop_when=enough)
    val = run.validated(meta)
    run.record(CompressTrial(prefix + "distill", (), lr_meta or lr, options.distillation_epochs, payload_bytes(meta),
                             val, run.within(val)))
    return meta
