"""Codebook-space inference for clustered fully-connected layers.

A clustered layer has only k distinct edge functions. The ordinary path ("decode") gathers the (out, in, |w|)
edge vectors once and runs one dense product: N·in·|w|·out multiply-adds per batch of N. The codebook-space path
evaluates each input's k centroid functions once, R = C·features (N·in·|w|·k, `KANLinear.centroid_responses`),
then sums for every output o the responses its edges point at:

    y[n, o] = Σ_i R[i, I[o, i], n]

in one of two ways:
  - "gather": an embedding-bag sum over the table T[o, i] = i·k + I[o, i] (N·in·out additions; the table is
    int32, and the (out, in, |w|) decoded vectors are never materialised);
  - "onehot": a product with the 0/1 matrix S[o, i·k + c] = [I[o, i] = c] (N·in·k·out multiply-adds: a dense
    GEMM, which pays off when k < |w|).

Which one is fastest depends on the layer's shape, k, the batch size and the hardware, so mode "auto" times the
eligible methods of large layers on the first batch of each size and keeps the fastest (as cuDNN's benchmark mode
does); small layers, whose timing would cost more than it could save, always decode. It is used for inference
only: with autograd enabled every layer decodes, so training is unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

from kancompress.edges import CodebookEdges
from kancompress.errors import ConfigError
from kancompress.layers import KANLinear

METHODS: tuple[str, ...] = ("decode", "gather", "onehot")
MODES: tuple[str, ...] = ("auto", *METHODS)

AUTO_MIN_MACS = 1 << 20  # dense multiply-adds per sample below which "auto" decodes without timing
ONEHOT_MAX_BYTES = 256 << 20  # "auto" never builds a one-hot matrix larger than this
MARGIN = 0.9  # a codebook-space method must take at most this fraction of the decode time to be chosen
TIMED_RUNS = 2  # after one warm-up run; the fastest run counts


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"unknown fully-connected forward {mode!r}; choose from: {', '.join(MODES)}")
    return mode


def eligible_methods(layer: KANLinear, k: int, mode: str) -> list[str]:
    """The methods `mode` lets a layer with codebook size k use; "auto" keeps those that can win by operation count."""
    if mode != "auto":
        return [mode]
    width = layer.num_basis + 1
    if layer.in_features * layer.out_features * width < AUTO_MIN_MACS:
        return ["decode"]
    methods = ["decode"]
    if k < layer.out_features:  # centroid responses cost less than the dense product
        methods.append("gather")
    if k <= width and layer.out_features * layer.in_features * k * 4 <= ONEHOT_MAX_BYTES:
        methods.append("onehot")
    return methods


class CodebookForward:
    """Runs the clustered fully-connected layers of one model in decode or codebook space, per `mode`."""

    def __init__(self, edges: CodebookEdges, mode: str = "auto"):
        self.edges = edges
        self.mode = check_mode(mode)
        self._tables: dict[tuple[int, str], tuple[tuple[object, ...], torch.Tensor]] = {}
        self._chosen: dict[tuple[int, int, str, torch.dtype], str] = {}

    def chosen(self) -> dict[int, list[str]]:
        """The methods each layer has run with so far (one per batch-size bucket), for reports."""
        methods: dict[int, list[str]] = {}
        for (layer, *_), method in sorted(self._chosen.items(), key=lambda item: item[0][:2]):
            if method not in methods.setdefault(layer, []):
                methods[layer].append(method)
        return methods

    def __call__(self, index: int, layer: KANLinear, x: torch.Tensor) -> torch.Tensor:
        """x: (N, in) -> (N, out), the layer's output with its clustered edges."""
        key = (index, _size_bucket(x.shape[0]), x.device.type, x.dtype)
        method = self._chosen.get(key)
        if method is None:
            options = eligible_methods(layer, self.edges.book(index).k, self.mode)
            method = options[0] if len(options) == 1 else self._fastest(options, index, layer, x)
            self._chosen[key] = method
            if method != "decode":
                self.edges.forget_decoded(index)
        return self.run(method, index, layer, x)

    def run(self, method: str, index: int, layer: KANLinear, x: torch.Tensor) -> torch.Tensor:
        if method == "decode":
            decoded: torch.Tensor = layer(x, self.edges(index).view(*layer.edge_shape, -1))  # (out, in, |w|)
            return decoded
        book = self.edges.book(index)
        in_features, k = layer.in_features, book.k
        responses = layer.centroid_responses(x, self.edges.codebook(index).to(x.dtype))  # (in, k, N)
        responses = responses.reshape(in_features * k, x.shape[0])  # (in·k, N): row i·k + c
        if method == "gather":
            y = F.embedding_bag(self._table(index, layer, "gather", x), responses, mode="sum")  # (out, N)
        else:
            y = self._table(index, layer, "onehot", x) @ responses  # (out, in·k) @ (in·k, N) -> (out, N)
        return layer.finish(y.T)

    def _table(self, index: int, layer: KANLinear, method: str, x: torch.Tensor) -> torch.Tensor:
        """The gather table T (out, in) or the one-hot matrix S (out, in·k), rebuilt when the indices change."""
        book = self.edges.book(index)
        indices = book.indices
        key = (indices._version, indices.data_ptr(), book.k, x.device, x.dtype)
        cached = self._tables.get((index, method))
        if cached is not None and cached[0] == key:
            return cached[1]
        rows = indices.to(x.device).view(layer.out_features, layer.in_features)  # (out, in): I[o, i]
        table = torch.arange(layer.in_features, device=x.device) * book.k + rows  # (out, in): i·k + I[o, i]
        if method == "gather" and layer.in_features * book.k < 2**31:
            table = table.to(torch.int32)
        elif method == "onehot":
            onehot = torch.zeros(layer.out_features, layer.in_features * book.k, dtype=x.dtype, device=x.device)
            table = onehot.scatter_(1, table, 1.0)  # (out, in·k)
        self._tables[(index, method)] = (key, table)
        return table

    def _fastest(self, options: list[str], index: int, layer: KANLinear, x: torch.Tensor) -> str:
        """Time the options in turn (one warm-up run each, then TIMED_RUNS rounds; the fastest run counts)."""
        synchronize: Callable[[], None] = torch.cuda.synchronize if x.device.type == "cuda" else _no_sync
        times = {method: float("inf") for method in options}
        for round_ in range(TIMED_RUNS + 1):
            for method in options:
                synchronize()
                start = time.perf_counter()
                self.run(method, index, layer, x)
                synchronize()
                if round_ > 0:  # round 0 warms up: builds tables, fills caches
                    times[method] = min(times[method], time.perf_counter() - start)
        best = min(options, key=times.__getitem__)
        return best if best == "decode" or times[best] <= MARGIN * times["decode"] else "decode"


def _no_sync() -> None:
    """CPU work is synchronous: nothing to wait for."""


def _size_bucket(n: int) -> int:
    """Batch sizes are tuned per power of two: sizes in (2^(b-1), 2^b] share one choice."""
    return max(int(n) - 1, 0).bit_length()  # int(): under torch.jit.trace a size may be a tensor

