"""The evaluator on hand-computed cases: ties, masking, lists, every metric."""

import math

import numpy as np
import pytest
import torch

from benchmark.adapter import UserBatch
from benchmark.errors import BenchmarkError
from benchmark.evaluation import (
    evaluate,
    history_mask,
    metric_values,
    popularity_buckets,
    ranks_from_lists,
    ranks_from_scores,
)
from benchmark.splits import Cases


def test_rank_counts_strictly_better_items():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3]])
    assert ranks_from_scores(scores, torch.tensor([2])).tolist() == [2.0]  # only 0.9 beats 0.5


def test_ties_are_pessimistic():
    # target 0 ties with items 1 and 2: it ranks below both
    scores = torch.tensor([[0.5, 0.5, 0.5, 0.1]])
    assert ranks_from_scores(scores, torch.tensor([0])).tolist() == [3.0]


def test_constant_scorer_ranks_target_last():
    scores = torch.zeros(2, 7)
    assert ranks_from_scores(scores, torch.tensor([0, 6])).tolist() == [7.0, 7.0]


def test_masking_removes_history_but_never_the_target():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6]])
    masked = history_mask([np.array([0, 1, 3])], 4)
    # 0 and 1 beat the target 2 but are masked
    assert ranks_from_scores(scores, torch.tensor([2]), masked).tolist() == [1.0]
    # the target 3 is itself in the history: not masked, and 0 and 1 are, 2 still beats it
    assert ranks_from_scores(scores, torch.tensor([3]), masked).tolist() == [2.0]


def test_nan_scores_are_an_error():
    with pytest.raises(BenchmarkError, match="NaN"):
        ranks_from_scores(torch.tensor([[0.1, float("nan")]]), torch.tensor([0]))


def test_list_rank_miss_and_duplicates():
    lists = torch.tensor([[4, 2, 2, 7], [1, 3, 5, -1], [9, 9, 9, 8]])
    ranks, dup = ranks_from_lists(lists, torch.tensor([2, 0, 8]), n_items=10)
    assert ranks[0] == 2  # first occurrence
    assert math.isinf(ranks[1])  # not in the list: a miss
    assert ranks[2] == 4  # duplicates are wasted slots, the list is not compacted
    assert dup == pytest.approx(3 / 11)  # 11 filled slots, 3 repeats


def test_list_with_out_of_range_items_is_rejected():
    with pytest.raises(BenchmarkError, match="outside"):
        ranks_from_lists(torch.tensor([[0, 11]]), torch.tensor([0]), n_items=10)


def test_every_metric_by_hand():
    ranks = np.array([1, 3, 7, 15, 50, np.inf])
    m = metric_values(ranks)
    assert m["HR@5"].tolist() == [1, 1, 0, 0, 0, 0]
    assert m["HR@10"].tolist() == [1, 1, 1, 0, 0, 0]
    assert m["HR@20"].tolist() == [1, 1, 1, 1, 0, 0]
    assert m["HR@100"].tolist() == [1, 1, 1, 1, 1, 0]
    assert m["NDCG@5"] == pytest.approx([1, 0.5, 0, 0, 0, 0])  # 1/log2(4) = 0.5
    assert m["NDCG@10"] == pytest.approx([1, 0.5, 1 / 3, 0, 0, 0])  # 1/log2(8) = 1/3
    assert m["NDCG@20"] == pytest.approx([1, 0.5, 1 / 3, 0.25, 0, 0])  # 1/log2(16)
    assert m["MRR@20"] == pytest.approx([1, 1 / 3, 1 / 7, 1 / 15, 0, 0])


def test_hr100_only_for_long_enough_lists():
    assert "HR@100" not in metric_values(np.array([1.0]), list_length=20)
    assert "HR@100" in metric_values(np.array([1.0]), list_length=100)
    assert "HR@100" in metric_values(np.array([1.0]), list_length=None)


class _Fixed:
    output = "scores"

    def __init__(self, scores):
        self.scores = torch.as_tensor(scores, dtype=torch.float32)

    def score(self, users: UserBatch):
        return self.scores[torch.as_tensor(users.users)]


def test_evaluate_batches_and_masks_like_the_hand_computation():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.2, 0.2], [0.0, 1.0, 2.0]])
    cases = Cases(np.array([0, 1, 2]), [np.array([0]), np.array([], dtype=np.int64), np.array([2])],
                  np.array([2, 1, 0]))
    for batch_size in (1, 2, 3):
        out = evaluate(_Fixed(scores), cases, 3, batch_size=batch_size)
        assert out.ranks.tolist() == [1.0, 3.0, 2.0]
    unmasked = evaluate(_Fixed(scores), cases, 3, mask_history=False)
    assert unmasked.ranks.tolist() == [2.0, 3.0, 3.0]


def test_popularity_buckets_hold_thirds_of_interactions():
    counts = np.array([30, 0, 20, 10, 10, 10, 5, 5])  # total 90
    labels = popularity_buckets(counts)
    assert labels[0] == "head"  # before it: 0 interactions
    assert labels[2] == "torso"  # before it: 30 = 1/3
    assert labels[1] == "tail"  # never seen
    assert set(labels[[6, 7]]) == {"tail"}


def test_metrics_agree_with_ranx_on_random_scores():
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(0)
    n_users, n_items = 50, 40
    scores = rng.random((n_users, n_items))
    targets = rng.integers(n_items, size=n_users)
    ranks = ranks_from_scores(torch.tensor(scores), torch.tensor(targets)).numpy()
    ours = metric_values(ranks)
    qrels = ranx.Qrels({f"u{u:03d}": {f"i{targets[u]}": 1} for u in range(n_users)})
    run = ranx.Run({f"u{u:03d}": {f"i{i}": float(scores[u, i]) for i in range(n_items)}
                    for u in range(n_users)})
    theirs = ranx.evaluate(qrels, run, ["hit_rate@10", "ndcg@10", "mrr@20"], return_mean=False)
    assert ours["HR@10"] == pytest.approx(theirs["hit_rate@10"])
    assert ours["NDCG@10"] == pytest.approx(theirs["ndcg@10"])
    assert ours["MRR@20"] == pytest.approx(theirs["mrr@20"])


@pytest.mark.parametrize("dtype, base", [(torch.float64, 1.7e9), (torch.int64, 2**41)])
def test_ranks_keep_the_adapters_precision(dtype, base):
    # the scores differ only beyond float32's precision: a float32 cast would tie them all and
    # put every target last; in the adapter's own precision the order is exact
    scores = (torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=dtype) + torch.tensor(base, dtype=dtype))
    assert torch.unique(scores.float()).numel() == 1  # float32 cannot tell them apart
    ranks = ranks_from_scores(scores, torch.tensor([3, 1]))
    assert ranks.tolist() == [1.0, 2.0]
