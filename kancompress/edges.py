"""Edge stores: where a model's per-edge vectors come from.

A model asks its store for the vectors of layer `l` as an (n_l, |w|) tensor (edge order: `nn.Linear`'s (o, i)
row-major). Three stores, one per checkpoint kind:

- `DenseEdges`: one trainable vector per edge (a plain KAN).
- `MetaEdges`: per-edge embeddings z fed to a meta-learner M(z) = W2·ReLU(W1·z + b1) + b2 (paper Eq. 6).
- `CodebookEdges`: per layer a (k, |w|) codebook and one index per edge (paper Eqs. 7-9); only the codebook
  is trainable, the indices are a buffer.
"""

from __future__ import annotations

from typing import ClassVar, cast

import torch
from torch import nn

from kancompress.config import MetaConfig
from kancompress.quant import round_trip


class EdgeStore(nn.Module):
    kind: ClassVar[str]

    def num_layers(self) -> int:
        raise NotImplementedError

    def forward(self, layer: int) -> torch.Tensor:  # (n_layer, |w|)
        raise NotImplementedError

    def all_vectors(self) -> list[torch.Tensor]:
        """Every layer's (n_l, |w|) vectors, detached."""
        with torch.no_grad():
            return [self(layer).detach().clone() for layer in range(self.num_layers())]


class DenseEdges(EdgeStore):
    kind = "dense"

    def __init__(self, vectors: list[torch.Tensor]):
        super().__init__()
        self.vectors = nn.ParameterList([nn.Parameter(v.reshape(-1, v.shape[-1]).clone()) for v in vectors])

    def num_layers(self) -> int:
        return len(self.vectors)

    def forward(self, layer: int) -> torch.Tensor:
        vectors: torch.Tensor = self.vectors[layer]
        return vectors


class MetaLearner(nn.Module):
    """M(z) = W2·ReLU(W1·z + b1) + b2, xavier-normal weights and zero biases (MetaKAN's `linear_layer`)."""

    def __init__(self, d_emb: int, hidden: int, width: int):
        super().__init__()
        self.hidden = nn.Linear(d_emb, hidden)
        self.out = nn.Linear(hidden, width)
        for linear in (self.hidden, self.out):
            nn.init.xavier_normal_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        generated: torch.Tensor = self.out(torch.relu(self.hidden(z)))  # (n, width)
        return generated


class MetaEdges(EdgeStore):
    kind = "meta"

    def __init__(self, num_edges: list[int], width: int, meta: MetaConfig, out_widths: list[int] | None = None):
        super().__init__()
        n_learners = meta.learner_count(len(num_edges))
        self.learners = nn.ModuleList([MetaLearner(meta.d_emb, meta.hidden, width) for _ in range(n_learners)])
        if meta.sharing.startswith("groups:"):
            self.groups = layer_groups(out_widths or [1] * len(num_edges), n_learners)
        else:
            self.groups = [0 if n_learners == 1 else layer for layer in range(len(num_edges))]
        self.embeddings = nn.ParameterList()
        for n in num_edges:
            z = torch.empty(n, meta.d_emb)  # row r = o·in + i belongs to edge (o, i), as in MetaKAN
            nn.init.xavier_normal_(z)
            self.embeddings.append(nn.Parameter(z))

    def num_layers(self) -> int:
        return len(self.embeddings)

    def learner(self, layer: int) -> MetaLearner:
        return cast(MetaLearner, self.learners[self.groups[layer]])

    def forward(self, layer: int) -> torch.Tensor:
        generated: torch.Tensor = self.learner(layer)(self.embeddings[layer])
        return generated


def layer_groups(out_widths: list[int], groups: int) -> list[int]:
    """MetaKAN's grouping of layers for `groups` meta-learners: 1-D K-means on the layers' output widths
    (scikit-learn, random_state 42, as MetaKAN), groups numbered in order of their first layer. Deterministic."""
    if groups == 1:
        return [0] * len(out_widths)
    if groups >= len(out_widths):
        return list(range(len(out_widths)))
    import numpy as np
    from sklearn.cluster import KMeans

    labels = KMeans(n_clusters=groups, n_init=10, random_state=42).fit(
        np.asarray(out_widths, dtype=np.float64)[:, None]).labels_.tolist()
    order: dict[int, int] = {}
    for label in labels:
        order.setdefault(label, len(order))
    return [order[label] for label in labels]


class Codebook(nn.Module):
    codebook: nn.Parameter  # (k, |w|)
    indices: torch.Tensor  # (n,) int64, a buffer

    def __init__(self, codebook: torch.Tensor, indices: torch.Tensor):
        super().__init__()
        self.codebook = nn.Parameter(codebook.clone())  # (k, |w|)
        self.register_buffer("indices", indices.to(torch.int64).clone())  # (n,)

    @property
    def k(self) -> int:
        return self.codebook.shape[0]


class CodebookEdges(EdgeStore):
    """Codebooks and indices. `codebook_dtype` and `index_coding` say how a file stores them ("packed": fixed
    bits per index; "rans": rANS-coded where that is smaller); they are not tensors and travel in metadata."""

    kind = "clustered"

    def __init__(
        self,
        codebooks: list[torch.Tensor],
        indices: list[torch.Tensor],
        codebook_dtype: str = "float32",
        index_coding: str = "packed",
    ):
        super().__init__()
        self.layers = nn.ModuleList([Codebook(c, i) for c, i in zip(codebooks, indices)])
        self.codebook_dtype = codebook_dtype
        self.index_coding = index_coding
        # While fine-tuning: compute with the codebooks as their storage dtype will hold them (a straight-through
        # rounding), so what validation picks is what the file will hold (`round_to_storage` ends it).
        self.quantization_aware = False
        self._decoded: dict[int, tuple[tuple[int, ...], torch.Tensor]] = {}

    def books(self) -> list[Codebook]:
        """Each layer's codebook and indices, in order."""
        return [cast(Codebook, book) for book in self.layers]

    def book(self, layer: int) -> Codebook:
        return cast(Codebook, self.layers[layer])

    def round_to_storage(self) -> None:
        """Snap codebooks to their storage precision, so the model computes what its file will hold (and end
        `quantization_aware`)."""
        with torch.no_grad():
            for book in self.books():
                book.codebook.copy_(round_trip(book.codebook, self.codebook_dtype))
        self.quantization_aware = False

    def reassign(self, vectors: list[torch.Tensor]) -> int:
        """Point every edge at the centroid nearest its reference vector (paper Eq. 9); returns how many moved."""
        moved = 0
        with torch.no_grad():
            for book, points in zip(self.books(), vectors):
                nearest = torch.cdist(points.float(), book.codebook.float()).argmin(dim=1)
                moved += int((nearest != book.indices).sum())
                book.indices.copy_(nearest)
        return moved

    def num_layers(self) -> int:
        return len(self.layers)

    def forget_decoded(self, layer: int) -> None:
        """Drop a layer's cached decoded vectors (when inference runs it in codebook space instead)."""
        self._decoded.pop(layer, None)

    def codebook(self, layer: int) -> torch.Tensor:
        """Layer `layer`'s codebook as the forward uses it: the parameter, or while `quantization_aware` its
        storage rounding with the parameter's gradient (straight-through)."""
        codebook: torch.Tensor = self.book(layer).codebook
        if not self.quantization_aware or self.codebook_dtype == "float32":
            return codebook
        return codebook + (round_trip(codebook, self.codebook_dtype) - codebook).detach()

    def forward(self, layer: int) -> torch.Tensor:
        book = self.book(layer)
        if torch.is_grad_enabled() or torch._C._get_tracing_state() is not None:  # a traced graph must hold the decode itself
            # (n, |w|): edge e takes centroid I_e. index_select, not codebook[indices]: the backward of advanced
            # indexing accumulates in a thread-dependent order on the CPU (fine-tuning gave different bytes run to
            # run); index_select's backward (index_add) does not.
            return torch.index_select(self.codebook(layer), 0, book.indices)
        # Inference decodes once: the gathered vectors are cached until the codebook or the indices change.
        key = (book.codebook._version, book.indices._version, book.codebook.data_ptr(), book.indices.data_ptr(),
               self.quantization_aware)
        cached = self._decoded.get(layer)
        if cached is None or cached[0] != key:
            cached = (key, torch.index_select(self.codebook(layer), 0, book.indices))
            self._decoded[layer] = cached
        return cached[1]


STORES: dict[str, type[EdgeStore]] = {s.kind: s for s in (DenseEdges, MetaEdges, CodebookEdges)}
KINDS: tuple[str, ...] = tuple(STORES)
