"""Semantic IDs: codes follow the structure of the embeddings, IDs are unique and reproducible."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from benchmark.cache import Cache
from benchmark.data import ItemCatalog
from benchmark.models.semantic_ids import (
    SemanticIDConfig,
    SemanticIDs,
    add_disambiguation,
    build_semantic_ids,
    collision_diagnostics,
    semantic_coherence,
    semantic_ids_from_embeddings,
)

N_CLUSTERS, PER_CLUSTER, DIM = 4, 25, 24


def clustered_embeddings(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four tight, well-separated clusters on the unit sphere; returns (embeddings, cluster)."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(DIM, DIM)))[0][:N_CLUSTERS]  # orthonormal
    cluster = np.repeat(np.arange(N_CLUSTERS), PER_CLUSTER)
    x = centres[cluster] + 0.05 * rng.normal(size=(len(cluster), DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), cluster


def small_config(**overrides) -> SemanticIDConfig:
    base = dict(levels=2, codebook_size=N_CLUSTERS, latent_dim=8, hidden_dims=[16],
                epochs=20, batch_size=50, seed=3)
    return SemanticIDConfig(**{**base, **overrides})


@pytest.mark.parametrize("method", ["rqvae", "rkmeans"])
def test_items_of_a_cluster_share_the_first_level_code_and_clusters_differ(method):
    x, cluster = clustered_embeddings()
    ids = semantic_ids_from_embeddings(x, small_config(method=method))
    first = ids.codes[:, 0]
    for c in range(N_CLUSTERS):
        assert len(set(first[cluster == c])) == 1, f"cluster {c} split over first-level codes"
    assert len({first[cluster == c][0] for c in range(N_CLUSTERS)}) == N_CLUSTERS


@pytest.mark.parametrize("method", ["rqvae", "rkmeans"])
def test_every_final_id_is_unique_and_the_last_column_disambiguates(method):
    x, _ = clustered_embeddings()
    ids = semantic_ids_from_embeddings(x, small_config(method=method, codebook_size=2))
    assert ids.codes.shape == (len(x), 3) and ids.codes.dtype == np.int64
    assert len(np.unique(ids.codes, axis=0)) == len(x)
    assert ids.level_sizes[:2] == [2, 2]
    assert ids.level_sizes[2] == ids.codes[:, 2].max() + 1 == ids.diagnostics["max_collision_group"]


@pytest.mark.parametrize("method", ["rqvae", "rkmeans"])
def test_identical_input_gives_identical_ids(method):
    x, _ = clustered_embeddings()
    a = semantic_ids_from_embeddings(x, small_config(method=method))
    b = semantic_ids_from_embeddings(x.copy(), small_config(method=method))
    np.testing.assert_array_equal(a.codes, b.codes)


def test_building_ids_leaves_the_callers_torch_rng_alone():
    """A method that builds IDs on a cache miss must initialise exactly as on a cache hit."""
    import torch

    x, _ = clustered_embeddings()
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    semantic_ids_from_embeddings(x, small_config())
    assert torch.equal(torch.rand(3), expected)


def test_disambiguation_numbers_items_within_each_collision_group_in_item_order():
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 1]])
    out = add_disambiguation(codes)
    np.testing.assert_array_equal(out[:, 2], [0, 0, 1, 2, 0])


def test_collision_diagnostics_by_hand():
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 1]])
    d = collision_diagnostics(codes, codebook_size=4)
    assert d["unique_ids_before_disambiguation"] == 3 / 5
    assert d["collision_rate"] == 3 / 5  # items 0, 2, 3 share (1, 2)
    assert d["max_collision_group"] == 3
    assert d["codebook_utilisation"] == [0.5, 0.75]  # level 0 uses {0,1}, level 1 uses {0,1,2}


def test_semantic_coherence_by_hand():
    labels = [("a",), ("a",), ("b",), ("b",)]
    # pairs sharing a code: (0,1) and (2,3), both share a label -> P = 1;
    # random pairs: 2 of 6 share a label -> P = 1/3; ratio 3
    assert semantic_coherence(np.array([[0], [0], [1], [1]]), labels) == 3.0
    # codes that mix labels: (0,2), (1,3) share codes, neither shares a label -> 0
    assert semantic_coherence(np.array([[0], [1], [0], [1]]), labels) == 0.0
    assert semantic_coherence(np.array([[0], [1], [2], [3]]), labels) is None  # no shared code
    assert semantic_coherence(np.array([[0], [0], [1], [1]]), [(), (), (), ()]) is None


def test_sampled_semantic_coherence_agrees_with_the_exact_value():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 5, size=(600, 1))
    labels = [(f"g{c}",) if rng.random() < 0.7 else ("other",) for c in codes[:, 0]]
    exact = semantic_coherence(codes, labels)
    sampled = semantic_coherence(codes, labels, max_exact=10, n_pairs=100_000)
    assert exact > 1.5 and sampled == pytest.approx(exact, rel=0.05)


def test_build_semantic_ids_is_cached_by_text_and_config(tmp_path, monkeypatch):
    x, cluster = clustered_embeddings()
    catalog = ItemCatalog(item_ids=[str(i) for i in range(len(x))],
                          attributes=[{"title": f"item {i}"} for i in range(len(x))],
                          labels=[(f"c{c}",) for c in cluster])
    calls = []

    def fake_encode(catalog, model, **kwargs):
        calls.append(model)
        return x

    monkeypatch.setattr("benchmark.models.semantic_ids.encode_items", fake_encode)
    cache = Cache(tmp_path)
    first = build_semantic_ids(catalog, small_config(method="rkmeans"), cache=cache,
                               show_progress=False)
    again = build_semantic_ids(catalog, small_config(method="rkmeans"), cache=cache,
                               show_progress=False)
    assert len(calls) == 1
    np.testing.assert_array_equal(first.codes, again.codes)
    # first-level codes = clusters = labels: P(same label | same code) = 1, and a random pair
    # shares a label with P = 4 * C(25, 2) / C(100, 2) = 1200 / 4950, so coherence = 4.125
    assert first.diagnostics["semantic_coherence"] == 4.125
    build_semantic_ids(catalog, small_config(method="rkmeans", seed=4), cache=cache,
                       show_progress=False)
    assert len(calls) == 2  # a changed config rebuilds


def test_the_quantiser_seed_changes_the_codes():
    # Unclustered points: the split into codes is arbitrary, so another seed draws another one.
    x = np.random.default_rng(7).normal(size=(200, DIM)).astype(np.float32)
    one = semantic_ids_from_embeddings(x, small_config(seed=0, epochs=5))
    other = semantic_ids_from_embeddings(x, small_config(seed=1, epochs=5))
    assert not np.array_equal(one.codes, other.codes)


@pytest.mark.parametrize("method", ["sasrec_sid", "sid_llm"])
@pytest.mark.parametrize(("run_seed", "pinned", "expected"), [(0, None, 0), (2, None, 2),
                                                               (2, 5, 5)])
def test_each_run_seed_builds_its_own_semantic_ids_unless_a_seed_is_pinned(
        method, run_seed, pinned, expected, tmp_path, monkeypatch):
    # docs/protocol.md (Seeds): semantic IDs are rebuilt per seed, so their randomness is in the
    # seed spread; `semantic_ids.seed` in YAML or --set pins one build for every run seed.
    from adapters.sasrec_sid import SASRecSID
    from adapters.sid_llm import SIDLLM
    from benchmark.adapter import RunContext

    built = []

    def fake_build(catalog, config, **kwargs):
        built.append(config)
        return SemanticIDs(np.zeros((3, 2), dtype=np.int64), [1, 3], {})

    overrides = {"codebook_size": 8} | ({} if pinned is None else {"seed": pinned})
    ctx = RunContext(seed=run_seed, device="cpu", cache=Cache(tmp_path), protocol="loo",
                     catalog_hash="c", train_hash="t", show_progress=False)
    train = SimpleNamespace(catalog=None)  # the fake build ignores the catalogue
    if method == "sasrec_sid":
        monkeypatch.setattr("adapters.sasrec_sid.build_semantic_ids", fake_build)
        SASRecSID(SASRecSID.Config(semantic_ids=overrides)).prepare(train, ctx)
    else:
        monkeypatch.setattr("benchmark.models.semantic_ids.build_semantic_ids", fake_build)
        SIDLLM(SIDLLM.Config(semantic_ids=overrides))._semantic_ids(train, ctx)
    assert [(c.seed, c.codebook_size) for c in built] == [(expected, 8)]
