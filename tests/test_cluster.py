"""K-means clustering and fine-tuning."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_model
from kancompress.config import MODEL_NAMES
from kancompress import api
from kancompress.cluster import cluster_model, kmeans, resolve_ks
from kancompress.data import Split
from kancompress.errors import ConfigError, FormatError
from kancompress.train import TrainConfig, fit


def test_kmeans_recovers_exactly_k_distinct_vectors() -> None:
    centres = torch.randn(5, 9)
    labels = torch.arange(60) % 5
    codebook, indices = kmeans(centres[labels], 5, seed=0)
    assert torch.allclose(codebook[indices], centres[labels], atol=1e-6)
    assert int(indices.max()) < 5


def test_kmeans_is_deterministic_for_a_seed() -> None:
    points = torch.randn(200, 4)
    first, second = kmeans(points, 8, seed=3), kmeans(points, 8, seed=3)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_kmeans_assigns_each_vector_its_nearest_centroid() -> None:
    points = torch.randn(300, 6)
    codebook, indices = kmeans(points, 7, seed=0)
    nearest = torch.cdist(points, codebook).argmin(dim=1)  # paper Eq. 9, by brute force
    assert torch.equal(nearest, indices)


@pytest.mark.parametrize("model_name", MODEL_NAMES)
@pytest.mark.parametrize("kind", ["dense", "meta"])
def test_cluster_model_replaces_edges_with_codebook(model_name: str, kind: str) -> None:
    model = tiny_model(model_name, kind)
    clustered = cluster_model(model, k=4, layer_ks={1: 3})
    assert clustered.kind == "clustered" and clustered.config.meta is None
    assert [book.k for book in clustered.edges.layers] == [4, 3]
    assert not any("embeddings" in name or "learners" in name for name in clustered.state_dict())
    from sklearn.cluster import KMeans

    for layer, (vectors, book) in enumerate(zip(model.edge_vectors(), clustered.edges.books())):
        decoded = clustered.edges(layer)
        assert torch.equal(decoded, book.codebook[book.indices])  # edge e takes centroid I_e
        # K-means' fixpoint: every edge points at its nearest centroid, every used centroid is its members' mean,
        distances = torch.cdist(vectors.double(), book.codebook.double())
        assert torch.equal(distances.argmin(dim=1), book.indices) or torch.allclose(
            distances.min(dim=1).values, distances.gather(1, book.indices[:, None])[:, 0], atol=1e-9)
        for c in book.indices.unique():
            members = vectors[book.indices == c]
            assert torch.allclose(book.codebook[c], members.mean(dim=0), atol=1e-4)
        # and the codebook approximates the vectors about as well as scikit-learn with 10 restarts (tiny layers
        # have local minima ~10 % apart; a broken clustering is far off).
        inertia = float(((vectors - decoded) ** 2).sum())
        reference = KMeans(n_clusters=book.k, n_init=10, random_state=1).fit(vectors.double().numpy()).inertia_
        assert inertia <= 1.25 * reference + 1e-9, (layer, inertia, reference)


def test_k_validation() -> None:
    model = tiny_model("kan", "dense")  # layers of 30 and 15 edges
    with pytest.raises(ConfigError, match="k >= 2"):
        resolve_ks(model, 1)
    with pytest.raises(ConfigError, match=r"edge count of layer 1 \(k=16, 15 edges\); .* --layer-k 1=15"):
        resolve_ks(model, 16)
    assert resolve_ks(model, 16, cap=True) == [16, 15]  # -k caps each layer at its edges (the CLI says so)
    with pytest.raises(ConfigError, match=r"layer 0 \(k=31, 30 edges\), layer 1 \(k=20, 15 edges\)"):
        resolve_ks(model, 4, {0: 31, 1: 20}, cap=True)  # explicit per-layer ks are not capped: all named at once
    with pytest.raises(ConfigError, match="layer 5"):
        resolve_ks(model, 4, {5: 2})
    assert resolve_ks(model, 16, {1: 8}) == [16, 8]
    with pytest.raises(FormatError, match="already clustered"):
        cluster_model(tiny_model("kan", "clustered"), 4)


def test_finetune_updates_only_codebooks_and_extras() -> None:
    model = tiny_model("fastkan", "clustered")
    indices_before = [book.indices.clone() for book in model.edges.layers]
    codebooks_before = [book.codebook.detach().clone() for book in model.edges.layers]
    x = torch.rand(64, 6) * 2 - 1
    y = torch.randint(0, 3, (64,))
    split = Split(x[:48], y[:48], x[48:], y[48:])
    fit(model, split, api.parameter_groups(model, 1e-2), TrainConfig(epochs=3, batch_size=16, patience=0))
    assert all(torch.equal(a, b.indices) for a, b in zip(indices_before, model.edges.layers))
    assert any(not torch.equal(a, b.codebook) for a, b in zip(codebooks_before, model.edges.layers))


def blobs(n: int, k: int, d: int = 9, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * 5
    return centres[torch.randint(k, (n,), generator=g)] + 0.3 * torch.randn(n, d, generator=g)


@pytest.mark.parametrize("n,k", [(3000, 8), (20000, 32), (150_000, 16)])
def test_torch_kmeans_inertia_within_one_percent_of_sklearn(n: int, k: int) -> None:
    from sklearn.cluster import KMeans

    from kancompress.cluster import torch_kmeans

    points = blobs(n, k)
    codebook, indices, inertia = torch_kmeans(points, k, seed=0)
    reference = KMeans(n_clusters=k, n_init=4, random_state=0).fit(points.double().numpy()).inertia_
    assert inertia <= 1.01 * reference
    assert torch.equal(indices, torch.cdist(points, codebook).argmin(dim=1))  # Eq. 9 holds
    assert torch.equal(torch_kmeans(points, k, seed=0)[1], indices)  # deterministic


def test_kmeans_backends() -> None:
    points = blobs(500, 4)
    from sklearn.cluster import KMeans

    reference = KMeans(n_clusters=4, n_init=4, random_state=0).fit(points.double().numpy()).inertia_
    for backend in ("sklearn", "torch", "auto"):
        codebook, indices = kmeans(points, 4, backend=backend)
        assert codebook.shape == (4, 9) and indices.shape == (500,)
        inertia = float(((points - codebook[indices]) ** 2).sum())
        assert inertia <= 1.01 * reference, backend  # a real clustering, as good as scikit-learn's
        assert torch.equal(indices, torch.cdist(points, codebook).argmin(dim=1))  # nearest-centroid labels
    with pytest.raises(ConfigError, match="backend"):
        kmeans(points, 4, backend="faiss")


def test_cluster_config_refuses_what_does_not_combine_and_records_every_option() -> None:
    for bad, message in (({"k": 0}, "too small"), ({"k": 1}, "too small"), ({"n_init": 0}, "n-init"),
                         ({"max_drop": 0.5, "k": 8}, "drop -k"), ({"max_drop": 0.5, "layer_ks": ((0, 4),)}, "drop -k"),
                         ({"kmeans": "faiss"}, "K-means"), ({"device": "tpu"}, "device"),
                         ({"index_coding": "huffman"}, "index coding")):
        with pytest.raises(ConfigError, match=message):
            api.ClusterConfig(**bad)
    assert api.ClusterConfig(index_coding="entropy").index_coding == "rans"
    model = tiny_model("kan", "meta", (6, 5, 3))
    options = api.ClusterConfig(k=4, layer_ks=((1, 2),), kmeans="torch", n_init=2)
    clustered, provenance = api.cluster(model, options)
    assert [book.k for book in clustered.edges.layers] == [4, 2]
    assert provenance["options"]["kmeans"] == "torch" and provenance["options"]["n_init"] == 2
    assert api.ClusterConfig().ks_for(model) == [16, 15]  # the default k (16) capped on a 15-edge layer
    assert api.ClusterConfig().capped_for(model) == {1: 15}
