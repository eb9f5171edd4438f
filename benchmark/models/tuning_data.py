"""RA-Rec's efficient tuning-data selection (Yu et al., 2024): denoise, then balance.

A candidate is one training transition: user ``u``'s history ``seq[:t]`` and target ``seq[t]``
(t >= 1), from the training sequences only.

- ``paper``: (1) denoising drops a candidate whose target title shares no word with the titles
  of the last ``window`` history items (words: lower-case alphanumeric runs, without pure
  numbers such as years and without a short stop-word list, which would make almost every pair
  "share" a word); (2) the survivors are put into a grid of history-length x target-popularity
  buckets and drawn round-robin from the cells (each cell's members in a seeded random order),
  so every cell gives the same number of examples until it runs out.
- ``random``: a seeded uniform sample of the same size from all candidates, no denoising, so
  the two can be compared at equal training cost.

Bucket edges are the quantiles of the *users'* training-sequence lengths (each user once) and
of the *items'* training counts (each item with a count once). Candidates are interaction-
weighted, so most of them have long histories and popular targets; equal shares per cell give
short histories and tail targets the weight the paper's balancing is for (a uniform sample
would not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

STOPWORDS = frozenset(
    "a an and the of in on at to for with from by or is it its as be this that vs & de la le "
    "el les der die das und ii iii".split())


def title_words(title: str) -> frozenset[str]:
    """Content words of a title: lower-case alphanumeric runs, not numbers, not stop words."""
    words = re.findall(r"[a-z0-9]+", title.lower())
    return frozenset(w for w in words if not w.isdigit() and w not in STOPWORDS)


@dataclass
class Selection:
    """The chosen (user, position) pairs and what the selection did."""

    users: np.ndarray  # [n] training user of each example
    positions: np.ndarray  # [n] index t of the target in the user's training sequence
    stats: dict = field(default_factory=dict)


def candidates(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(user, position) of every training transition: history ``seq[:t]``, target ``seq[t]``."""
    users = [np.full(max(len(s) - 1, 0), u) for u, s in enumerate(sequences)]
    positions = [np.arange(1, len(s)) for s in sequences]
    if not users:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return (np.concatenate(users).astype(np.int64), np.concatenate(positions).astype(np.int64))


def is_noisy(history_words: list[frozenset[str]], target_words: frozenset[str]) -> bool:
    """True when the target's title shares no word with any of the history titles."""
    return not any(target_words & words for words in history_words)


def bucket_edges(values: np.ndarray, n_buckets: int) -> np.ndarray:
    """Inner quantile edges splitting ``values`` into ``n_buckets`` groups of near-equal mass."""
    if not len(values) or n_buckets <= 1:
        return np.zeros(0)
    return np.unique(np.quantile(values, np.linspace(0, 1, n_buckets + 1)[1:-1]))


def balanced_sample(cells: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` members drawn round-robin from the cells (as evenly as they allow)."""
    groups = [rng.permutation(np.flatnonzero(cells == c)) for c in np.unique(cells)]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n and any(depth < len(g) for g in groups):
        for g in groups:
            if depth < len(g) and len(chosen) < n:
                chosen.append(int(g[depth]))
        depth += 1
    return np.sort(np.asarray(chosen, dtype=np.int64))


def select_tuning_data(sequences: list[np.ndarray], titles: list[str], item_counts: np.ndarray,
                       n: int, how: Literal["paper", "random"], *, n_buckets: int = 3,
                       window: int = 10, seed: int = 0) -> Selection:
    """Pick at most ``n`` training transitions, the paper's way or uniformly (see the module)."""
    users, positions = candidates(sequences)
    rng = np.random.default_rng(seed)
    stats: dict = {"selection": how, "candidates": len(users), "dropped_by_denoising": 0}
    if how == "random":
        keep = np.sort(rng.choice(len(users), size=min(n, len(users)), replace=False))
        stats["selected"] = len(keep)
        return Selection(users[keep], positions[keep], stats)
    words = [title_words(t) for t in titles]
    clean = np.array([
        not is_noisy([words[i] for i in sequences[u][max(0, t - window):t]],
                     words[sequences[u][t]])
        for u, t in zip(users, positions)], dtype=bool)
    stats["dropped_by_denoising"] = int((~clean).sum())
    users, positions = users[clean], positions[clean]
    lengths = np.array([len(s) for s in sequences if len(s)])
    counts = item_counts[item_counts > 0]
    length_edges, pop_edges = bucket_edges(lengths, n_buckets), bucket_edges(counts, n_buckets)
    targets = np.array([sequences[u][t] for u, t in zip(users, positions)], dtype=np.int64)
    # A value equal to an edge belongs to the lower bucket (ties are common in counts).
    length_bucket = np.searchsorted(length_edges, positions, side="left")
    pop_bucket = np.searchsorted(pop_edges, item_counts[targets], side="left")
    cells = length_bucket * (len(pop_edges) + 1) + pop_bucket
    keep = balanced_sample(cells, n, rng)
    stats["selected"] = len(keep)
    stats["history_length_edges"] = length_edges.tolist()
    stats["popularity_edges"] = pop_edges.tolist()
    stats["per_cell"] = {f"len{a}_pop{b}": int(((length_bucket[keep] == a)
                                                 & (pop_bucket[keep] == b)).sum())
                         for a in range(len(length_edges) + 1)
                         for b in range(len(pop_edges) + 1)}
    return Selection(users[keep], positions[keep], stats)
