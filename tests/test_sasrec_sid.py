"""SASRec-SID: item vectors are composed from shared codes, so a never-seen item is scored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adapters.sasrec_sid import SASRecSID, SemanticIDEmbedder, composition_index
from benchmark.adapter import RunContext, TrainData, UserBatch
from benchmark.cache import Cache
from benchmark.data import ItemCatalog
from benchmark.models.semantic_ids import SemanticIDs

# Items 0..11 walk a cycle in groups of three consecutive items: codes (group, position, 0).
N_WARM = 12
COLD = 12  # never in training; its codes put it into the group of NEXT_OF_COLD_GROUP
WARM_CODES = [(i // 3, i % 3, 0) for i in range(N_WARM)]


def ids_with_cold(cold_codes: tuple[int, int, int]) -> SemanticIDs:
    codes = np.array([*WARM_CODES, cold_codes], dtype=np.int64)
    return SemanticIDs(codes=codes, level_sizes=[4, 4, 2], diagnostics={})


def test_prefix_composition_indexes_distinct_prefixes_per_level():
    codes = np.array([[0, 1, 0], [0, 1, 1], [0, 2, 0], [1, 1, 0]])
    index = composition_index(codes, "prefix")
    assert index[:, 0].tolist() == [0, 0, 0, 1]
    assert index[:, 1].tolist() == [0, 0, 1, 2]  # (0,1) (0,1) (0,2) (1,1)
    assert len(set(index[:, 2].tolist())) == 4  # the full ID is one row per item
    level = composition_index(codes, "level")
    assert level[:, 1].tolist() == [1, 1, 2, 1] and level[:, 2].tolist() == [0, 1, 2, 3]


def test_an_unseen_item_is_the_sum_of_the_rows_it_shares_with_seen_items():
    codes = np.array([[0, 1, 0], [0, 1, 1], [1, 2, 0]])
    seen = np.array([True, False, True])
    emb = SemanticIDEmbedder(codes, hidden=4, seen=seen)
    vectors = emb.all_items().detach()
    rows = [t.weight.detach() for t in emb.tables]
    # item 1 shares (0) and (0, 1) with item 0; its full-ID row is its own and is dropped
    torch.testing.assert_close(vectors[1], rows[0][0] + rows[1][0])
    torch.testing.assert_close(vectors[0], rows[0][0] + rows[1][0] + rows[2][0])
    torch.testing.assert_close(emb(torch.tensor([[1, 0]]))[0], vectors[[1, 0]])


def test_imputation_gives_an_unseen_item_the_mean_fine_rows_of_its_seen_siblings():
    codes = np.array([[0, 1, 0], [0, 2, 0], [0, 3, 0], [1, 1, 0]])
    seen = np.array([True, True, False, True])  # item 2 shares only the code 0 with 0 and 1
    emb = SemanticIDEmbedder(codes, hidden=4, seen=seen, impute_unseen=True).eval()
    r, ix = [t.weight.detach() for t in emb.tables], emb.index
    expected = (r[0][ix[2, 0]] + (r[1][ix[0, 1]] + r[1][ix[1, 1]]) / 2
                + (r[2][ix[0, 2]] + r[2][ix[1, 2]]) / 2)
    vectors = emb.all_items().detach()
    torch.testing.assert_close(vectors[2], expected)
    torch.testing.assert_close(vectors[0], r[0][ix[0, 0]] + r[1][ix[0, 1]] + r[2][ix[0, 2]])


def test_prefix_dropout_truncates_ids_in_training_only():
    codes = np.array([[0, 1, 0], [0, 1, 1], [1, 2, 0]])
    emb = SemanticIDEmbedder(codes, hidden=4, prefix_dropout=1.0)
    rows = [t.weight.detach() for t in emb.tables]
    emb.train()
    torch.manual_seed(0)
    truncated = emb.all_items().detach()
    for i in range(3):  # every item keeps its first level, none keeps its full-ID row
        index = emb.index[i]
        candidates = [rows[0][index[0]], rows[0][index[0]] + rows[1][index[1]]]
        assert any(torch.allclose(truncated[i], c) for c in candidates)
    emb.eval()
    full = sum(rows[level][emb.index[:, level]] for level in range(3))
    torch.testing.assert_close(emb.all_items().detach(), full)


def fit_adapter(cache_dir, cold_codes) -> SASRecSID:
    rng = np.random.default_rng(0)
    sequences = [(int(rng.integers(N_WARM)) + np.arange(10)) % N_WARM for _ in range(40)]
    n_items = N_WARM + 1
    counts = np.bincount(np.concatenate(sequences), minlength=n_items)
    catalog = ItemCatalog([str(i) for i in range(n_items)],
                          [{"title": f"m{i}"} for i in range(n_items)], [()] * n_items)
    train = TrainData(n_items, sequences, catalog, counts)
    ctx = RunContext(seed=0, device="cpu", cache=Cache(cache_dir),
                     protocol="cold_item", catalog_hash=str(cold_codes),
                     train_hash="toy", show_progress=False)
    config = SASRecSID.Config(hidden=16, n_layers=1, n_heads=1, max_len=10, dropout=0.0,
                              max_epochs=25, patience=25, eval_every=25, lr=0.01)
    adapter = SASRecSID(config)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("adapters.sasrec_sid.build_semantic_ids",
                   lambda *a, **k: ids_with_cold(cold_codes))
        adapter.fit(train, lambda: 0.0, ctx)
    return adapter


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("sasrec_sid")


@pytest.fixture(scope="module")
def near(cache_root):
    """Cold item with first-level code 1: the group of items 3, 4, 5."""
    return fit_adapter(cache_root, (1, 3, 0))


@pytest.fixture(scope="module")
def far(cache_root):
    """The same cold item moved to group 3 (items 9, 10, 11)."""
    return fit_adapter(cache_root, (3, 3, 0))


USERS = UserBatch(np.arange(3), [np.array([2, 3, 4]), np.array([1, 2, 3, 4]), np.array([4])])


def test_a_cold_item_is_scored_through_its_codes(near, far):
    # These users' next item is 5 (codes (1, 2, 0)); the model ranks 5 first and its cycle
    # neighbours 4 and 6 next. The cold item shares only the first-level code 1 with 3, 4, 5,
    # so it must rank above every item of the distant groups, and lose that when moved away.
    near_scores, far_scores = near.score(USERS), far.score(USERS)
    assert near_scores.shape == (3, N_WARM + 1)
    distant = [0, 1, 2, 7, 8, 9, 10, 11]
    assert (near_scores[:, COLD, None] > near_scores[:, distant]).all()
    assert (far_scores[:, COLD] < near_scores[:, COLD]).all()
    assert (far_scores[:, COLD, None] < far_scores[:, [3, 4, 5]]).all()


def test_fit_reuses_the_cached_checkpoint(near, cache_root):
    again = fit_adapter(cache_root, (1, 3, 0))
    assert not near.training_info["cached"] and again.training_info["cached"]
    users = UserBatch(np.arange(1), [np.array([], dtype=np.int64)])  # empty history (cold)
    torch.testing.assert_close(near.score(users), again.score(users))
    assert near.diagnostics()["rows_in_use_per_level"][-1] == pytest.approx(12 / 13, abs=1e-4)
