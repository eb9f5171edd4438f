"""Evaluation protocols: leave-one-out and cold-start items.

Leave-one-out: per user, the last item is the test target, the second last the validation
target, the rest is training. Validation input = training sequence; test input = training +
validation item.

Cold-start items (``cold_item``), exactly in this order:
1. build the leave-one-out split on the full data;
2. draw the cold set C: ``round(cold_fraction * n_items)`` items, uniformly, with ``split_seed``
   (independent of the model seed, so every method and seed sees the same C);
3. remove every interaction with an item of C from training sequences and all input histories;
4. drop validation cases whose target is in C;
5. keep every test case; those with a target in C form the ``cold_item`` slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.cache import stable_hash
from benchmark.data import Dataset
from benchmark.errors import BenchmarkError

PROTOCOLS = ("loo", "cold_item")


@dataclass(frozen=True)
class Cases:
    """Evaluation cases: who, with which input history, predicting which target."""

    users: np.ndarray
    histories: list[np.ndarray]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class Split:
    protocol: str
    n_items: int
    train: list[np.ndarray]  # per user (all users, possibly empty under cold_item)
    valid: Cases
    test: Cases
    cold_items: np.ndarray  # sorted item indices of C (empty for loo)

    def fingerprint(self) -> str:
        return stable_hash(
            [self.protocol, self.train, self.valid.targets, self.valid.users,
             self.test.targets, self.test.users, self.cold_items]
        )

    def train_fingerprint(self) -> str:
        return stable_hash([self.n_items, self.train])

    def cold_fingerprint(self) -> str | None:
        return stable_hash(self.cold_items) if self.protocol == "cold_item" else None

    def item_counts(self) -> np.ndarray:
        counts = np.zeros(self.n_items, dtype=np.int64)
        if self.train:
            np.add.at(counts, np.concatenate(self.train), 1)
        return counts


def leave_one_out(sequences: list[np.ndarray], n_items: int) -> Split:
    for u, seq in enumerate(sequences):
        if len(seq) < 3:
            raise BenchmarkError(f"user index {u} has {len(seq)} interactions; leave-one-out needs 3")
    users = np.arange(len(sequences))
    train = [s[:-2].copy() for s in sequences]
    valid = Cases(users, [t.copy() for t in train], np.array([s[-2] for s in sequences]))
    test = Cases(users, [s[:-1].copy() for s in sequences], np.array([s[-1] for s in sequences]))
    return Split("loo", n_items, train, valid, test, np.zeros(0, dtype=np.int64))


def draw_cold_items(n_items: int, fraction: float, split_seed: int) -> np.ndarray:
    """Step 2: a uniform sample of the catalogue, fixed by ``split_seed`` alone."""
    if not 0 < fraction < 1:
        raise BenchmarkError(f"cold_fraction must be in (0, 1), got {fraction}")
    size = max(1, int(round(fraction * n_items)))
    rng = np.random.default_rng(split_seed)
    return np.sort(rng.choice(n_items, size=size, replace=False))


def cold_item(sequences: list[np.ndarray], n_items: int, fraction: float, split_seed: int) -> Split:
    loo = leave_one_out(sequences, n_items)  # step 1
    cold = draw_cold_items(n_items, fraction, split_seed)  # step 2
    is_cold = np.zeros(n_items, dtype=bool)
    is_cold[cold] = True

    def warm(seq: np.ndarray) -> np.ndarray:
        return seq[~is_cold[seq]]

    train = [warm(s) for s in loo.train]  # step 3
    keep = ~is_cold[loo.valid.targets]  # step 4
    valid = Cases(loo.valid.users[keep], [warm(h) for h, k in zip(loo.valid.histories, keep) if k],
                  loo.valid.targets[keep])
    test = Cases(loo.test.users, [warm(h) for h in loo.test.histories], loo.test.targets)  # 3, 5
    return Split("cold_item", n_items, train, valid, test, cold)


def make_split(dataset: Dataset, protocol: str, cold_fraction: float = 0.1,
               split_seed: int = 0) -> Split:
    if protocol == "loo":
        return leave_one_out(dataset.sequences(), dataset.n_items)
    if protocol == "cold_item":
        return cold_item(dataset.sequences(), dataset.n_items, cold_fraction, split_seed)
    raise BenchmarkError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
