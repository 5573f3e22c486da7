"""Bytes allocated across layers: the rate–distortion frontier of the per-layer choices (`proxy.LayerChoice`).

Choosing one option per layer to minimise total bytes under a bound on the summed loss increase is a
multiple-choice knapsack problem. Its Pareto frontier (no allocation smaller with a lower predicted loss) is built
exactly, layer by layer: combine the frontier so far with the layer's options and drop every dominated point
(ascending bytes, each kept point strictly lower in loss than all smaller ones). Points closer than `RESOLUTION` in
bytes are thinned, so a search over the frontier takes O(log(bytes range / resolution)) verifications."""

from __future__ import annotations

from dataclasses import dataclass

from kancompress.compress.proxy import LayerChoice

RESOLUTION = 1.03  # frontier points closer than 3 % in bytes are one point (the lower loss kept)


@dataclass(frozen=True)
class Allocation:
    """One choice per layer, its total bytes and predicted loss increase (Σ ΔL_l)."""

    choices: tuple[LayerChoice, ...]
    bytes: int
    loss: float

    @property
    def ks(self) -> tuple[int, ...]:
        return tuple(choice.k for choice in self.choices)


def frontier(layers: list[list[LayerChoice]], resolution: float = RESOLUTION) -> list[Allocation]:
    """The Pareto frontier of allocations (one choice from each of `layers`), ascending in bytes and descending in
    predicted loss; the last point is the largest, least lossy one."""
    points = [Allocation((), 0, 0.0)]
    for options in layers:
        merged = [Allocation((*point.choices, choice), point.bytes + choice.bytes, point.loss + choice.loss)
                  for point in points for choice in options]
        points = _undominated(merged)
    return _thinned(points, resolution)


def _undominated(points: list[Allocation]) -> list[Allocation]:
    kept: list[Allocation] = []
    for point in sorted(points, key=lambda p: (p.bytes, p.loss)):
        if not kept or point.loss < kept[-1].loss:
            kept.append(point)
    return kept


def _thinned(points: list[Allocation], resolution: float) -> list[Allocation]:
    """Points grouped from the smallest up, each group spanning at most `resolution`× in bytes, and of each group
    the last (lowest loss); the smallest point stays on its own, so both ends are kept."""
    kept: list[Allocation] = []
    anchor = 0  # bytes of the first point of the current group
    for point in points:
        if len(kept) > 1 and point.bytes <= anchor * resolution:
            kept[-1] = point  # nearly as small and less lossy: it stands for the group
        else:
            kept.append(point)
            anchor = point.bytes
    return kept
