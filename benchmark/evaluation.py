"""Full-ranking evaluation: ranks, metrics, slices.

- Every item of the catalogue is a candidate; no sampled negatives.
- Items in the user's input history are masked (``mask_history``, on by default); the target is
  never masked, even when it repeats a history item.
- Ties are pessimistic: the target ranks below every unmasked item with a score >= its own, so a
  constant scorer ranks the target last among the candidates.
- Items an adapter declares tied (``adapter.tie_groups``: item -> group, e.g. items that share
  a full semantic ID) are one candidate to it, and tie pessimistically: a score method's group
  takes the group's highest score, and in a ranked list the target's rank is its group's first
  position plus the number of the group's other candidates (unmasked items), a miss past the
  list's end. ``tie_groups`` None (the default) changes nothing.
- A ranked list (generative methods) gives the target's position; a target missing from the list
  is a miss (rank = inf, written empty). An item repeated in a list counts once: its first
  position is its rank, and later copies are wasted slots (we do not compact the list, so a
  method gains nothing by repeating itself). The duplicate rate is reported.

Metrics from the 1-based rank r: HR@k = [r <= k]; NDCG@k = 1/log2(r+1) if r <= k (one relevant
item, so IDCG = 1); MRR@20 = 1/r if r <= 20. HR@100 needs a list of >= 100 items.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.adapter import UserBatch, method_phase
from benchmark.errors import BenchmarkError
from benchmark.splits import Cases

if TYPE_CHECKING:  # torch loads only to rank: the metrics and the report work without it
    import torch

CUTOFFS = (5, 10, 20)
METRICS = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR@20", "HR@100")
HEADLINE = "NDCG@10"


def ranks_from_scores(scores: torch.Tensor, targets: torch.Tensor,
                      masked: torch.Tensor | None = None) -> torch.Tensor:
    """Pessimistic 1-based rank of each target among unmasked items. [B, n] -> [B] float.

    Scores are compared in the adapter's own precision (float64 and int64 stay as they are;
    half precision is widened to float32), so scores that differ only beyond float32's
    precision still order the items.
    """
    import torch

    if scores.dim() != 2 or scores.shape[0] != targets.shape[0]:
        raise BenchmarkError(f"scores must be [batch, n_items], got {tuple(scores.shape)}")
    scores = checked_scores(scores)
    rows = torch.arange(scores.shape[0])
    target_scores = scores[rows, targets].unsqueeze(1)
    beats = scores >= target_scores  # includes the target itself and every tie
    if masked is not None:
        masked = masked.clone()
        masked[rows, targets] = False  # the target is never masked
        beats &= ~masked
    return beats.sum(dim=1).float()  # the target itself counts as the +1 of a 1-based rank


def checked_scores(scores: torch.Tensor) -> torch.Tensor:
    """An adapter's scores as they are ranked: real numbers (half precision and bool widened to
    float32) without NaN, which has no order. +inf and -inf do order (above and below every
    finite score) and are kept. ``recommend`` applies the same rule as the evaluator."""
    import torch

    if scores.is_complex():
        raise BenchmarkError(f"scores must be real numbers, got {scores.dtype}")
    if scores.dtype in (torch.float16, torch.bfloat16, torch.bool):
        scores = scores.float()
    if scores.is_floating_point() and torch.isnan(scores).any():
        raise BenchmarkError("the adapter returned NaN scores")
    return scores


def checked_lists(lists: torch.Tensor, n_items: int) -> torch.Tensor:
    """An adapter's top-K lists as int64, refused where an entry is neither an item nor -1."""
    lists = lists.long()
    if ((lists < -1) | (lists >= n_items)).any():
        raise BenchmarkError(f"rankings contain item indices outside [0, {n_items}) (and -1 pad)")
    return lists


def ranks_from_lists(lists: torch.Tensor, targets: torch.Tensor, n_items: int
                     ) -> tuple[torch.Tensor, float]:
    """Rank of each target in a top-K list (inf if absent), and the share of duplicate slots."""
    import torch

    if lists.dim() != 2 or lists.shape[0] != targets.shape[0]:
        raise BenchmarkError(f"rankings must be [batch, k], got {tuple(lists.shape)}")
    lists = checked_lists(lists, n_items)
    k = lists.shape[1]
    hit = lists == targets.unsqueeze(1)
    pos = torch.where(hit, torch.arange(1, k + 1).expand_as(lists), torch.full_like(lists, k + 1))
    first = pos.min(dim=1).values.float()
    ranks = torch.where(first <= k, first, torch.full_like(first, math.inf))
    valid = lists >= 0
    n_valid = int(valid.sum())
    n_unique = sum(len(set(row[row >= 0].tolist())) for row in lists)
    dup_rate = (n_valid - n_unique) / n_valid if n_valid else 0.0
    return ranks, dup_rate


def tied_scores(scores: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Each item's score replaced by the highest score of its tie group."""
    import torch

    top = torch.full((scores.shape[0], int(groups.max()) + 1), -torch.inf, dtype=scores.dtype)
    top = top.scatter_reduce(1, groups.expand_as(scores), scores, reduce="amax")
    return top[:, groups]


def tied_list_ranks(lists: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor,
                    histories: list[np.ndarray]) -> torch.Tensor:
    """Pessimistic ranks in top-K lists whose items tie in groups: the first list position of
    the target's group + its other candidates (group members outside the history), inf past K."""
    import torch

    k = lists.shape[1]
    g = torch.where(lists >= 0, groups[lists.clamp(min=0)], torch.full_like(lists, -1))
    tg = groups[targets]
    hit = g == tg.unsqueeze(1)
    pos = torch.where(hit, torch.arange(1, k + 1).expand_as(lists), torch.full_like(lists, k + 1))
    first = pos.min(dim=1).values.float()
    size = torch.bincount(groups).float()
    others = size[tg] - 1
    for row, hist in enumerate(histories):
        h = torch.as_tensor(np.unique(np.asarray(hist, dtype=np.int64)))
        h = h[h != targets[row]]
        others[row] -= float((groups[h] == tg[row]).sum()) if len(h) else 0.0
    ranks = first + others
    return torch.where((first <= k) & (ranks <= k), ranks, torch.full_like(ranks, math.inf))


def metric_values(ranks: np.ndarray, list_length: int | None = None) -> dict[str, np.ndarray]:
    """Per-user metric values from 1-based ranks (inf = miss). HR@100 only where defined."""
    r = np.asarray(ranks, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for k in CUTOFFS:
        out[f"HR@{k}"] = (r <= k).astype(np.float64)
    for k in CUTOFFS:
        out[f"NDCG@{k}"] = np.where(r <= k, 1.0 / np.log2(np.minimum(r, 1e12) + 1.0), 0.0)
    out["MRR@20"] = np.where(r <= 20, 1.0 / np.minimum(r, 1e12), 0.0)
    if list_length is None or list_length >= 100:
        out["HR@100"] = (r <= 100).astype(np.float64)
    return out


@dataclass
class EvalOutput:
    ranks: np.ndarray  # [n_cases] float, inf = miss
    list_length: int | None  # K for ranking adapters, None for scores
    duplicate_rate: float | None
    seconds: float


def evaluate(adapter: Any, cases: Cases, n_items: int, *, mask_history: bool = True,
             k: int = 20, batch_size: int = 256, progress: Callable | None = None) -> EvalOutput:
    """Rank every case's target with the adapter's scores or top-K lists.

    An exception from the adapter's ``score`` / ``rank`` becomes a MethodError naming the method
    (its ``registered_name``, which the runner sets to the name it runs under) and the call.
    """
    import torch

    start = time.perf_counter()
    out = np.empty(len(cases), dtype=np.float64)
    is_ranking = getattr(adapter, "output", "scores") == "ranking"
    groups = getattr(adapter, "tie_groups", None)
    if groups is not None:
        groups = torch.as_tensor(np.asarray(groups, dtype=np.int64))
        if groups.shape != (n_items,):
            raise BenchmarkError(f"tie_groups must hold one group per item ({n_items})")
    method = getattr(adapter, "registered_name", type(adapter).__name__)
    dup_slots = total_slots = 0
    batches = range(0, len(cases), batch_size)
    if progress is not None:
        batches = progress(batches)
    with torch.no_grad():
        for lo in batches:
            hi = min(lo + batch_size, len(cases))
            batch = UserBatch(cases.users[lo:hi], cases.histories[lo:hi])
            targets = torch.as_tensor(cases.targets[lo:hi], dtype=torch.long)
            if is_ranking:
                with method_phase(method, "rank"):
                    lists = torch.as_tensor(adapter.rank(batch, k)).cpu()
                if lists.shape[1] > k:
                    raise BenchmarkError(f"rank() returned {lists.shape[1]} items, asked for {k}")
                ranks, dup = ranks_from_lists(lists, targets, n_items)
                if groups is not None:
                    ranks = tied_list_ranks(lists, targets, groups, batch.histories)
                n = int((lists >= 0).sum())
                dup_slots += dup * n
                total_slots += n
            else:
                with method_phase(method, "score"):
                    scores = torch.as_tensor(adapter.score(batch)).detach().cpu()
                if scores.shape != (hi - lo, n_items):
                    raise BenchmarkError(
                        f"score() must return [batch, {n_items}], got {tuple(scores.shape)}")
                if groups is not None:
                    scores = tied_scores(checked_scores(scores), groups)
                masked = history_mask(batch.histories, n_items) if mask_history else None
                ranks = ranks_from_scores(scores, targets, masked)
            out[lo:hi] = ranks.numpy()
    return EvalOutput(
        ranks=out,
        list_length=k if is_ranking else None,
        duplicate_rate=(dup_slots / total_slots if total_slots else 0.0) if is_ranking else None,
        seconds=time.perf_counter() - start,
    )


def history_mask(histories: list[np.ndarray], n_items: int) -> torch.Tensor:
    """[B, n_items] True where an item is in the user's input history."""
    import torch

    mask = torch.zeros(len(histories), n_items, dtype=torch.bool)
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    if len(rows):
        mask[torch.as_tensor(rows), torch.as_tensor(np.concatenate(histories))] = True
    return mask


# --------------------------------------------------------------------------- slices

HISTORY_BUCKETS = ("short", "medium", "long")
POPULARITY_BUCKETS = ("head", "torso", "tail")


def history_buckets(lengths: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Terciles of input-history length among the evaluated users (edges recorded)."""
    lengths = np.asarray(lengths)
    edges = [float(np.quantile(lengths, 1 / 3)), float(np.quantile(lengths, 2 / 3))]
    labels = np.where(lengths <= edges[0], "short", np.where(lengths <= edges[1], "medium", "long"))
    return labels, edges


def popularity_buckets(item_counts: np.ndarray) -> np.ndarray:
    """Per-item head/torso/tail by training count.

    Items sorted by training count (most popular first, ties by index); head = the most popular
    items that together hold the first third of training interactions, torso = the next third,
    tail = the rest, including items never seen in training. Thirds of interactions (not of
    items) make the three slices of test cases comparably sized.
    """
    counts = np.asarray(item_counts, dtype=np.float64)
    order = np.lexsort((np.arange(len(counts)), -counts))
    total = counts.sum()
    labels = np.empty(len(counts), dtype=object)
    if total == 0:
        labels[:] = "tail"
        return labels
    before = np.cumsum(counts[order]) - counts[order]  # interactions held by more popular items
    share = before / total
    ranked = np.where(share < 1 / 3, "head", np.where(share < 2 / 3, "torso", "tail"))
    ranked[counts[order] == 0] = "tail"
    labels[order] = ranked
    return labels
