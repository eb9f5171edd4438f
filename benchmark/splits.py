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
5. keep every test case; those with a target in C form the ``cold_item`` slice;
6. cold validation: a second, disjoint set C_v of the same size (drawn with the same
   ``split_seed`` from the items outside C) loses its interactions the same way; validation
   cases whose target is in C_v are kept and form the ``cold_valid`` validation slice, so that
   cold-start settings are chosen on validation, never on the test slice. Test cases whose
   target is in C_v form a ``cold_valid`` test slice (as cold as the ``cold_item`` ones).

Both protocols then keep only the validation and test cases of the dataset's evaluation users
(``eval_users`` in its YAML: all users, or a uniform seeded sample, see
:func:`eval_user_sample`), the same users for every method.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    # C_v, step 6 (empty for loo)
    cold_valid_items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def fingerprint(self) -> str:
        parts = [self.protocol, self.train, self.valid.targets, self.valid.users,
                 self.test.targets, self.test.users, self.cold_items]
        if len(self.cold_valid_items):  # a split without C_v hashes as it did before step 6
            parts.append(self.cold_valid_items)
        return stable_hash(parts)

    def held_out_items(self) -> np.ndarray:
        """Items whose interactions no training signal or input history may hold (C and C_v)."""
        return np.union1d(self.cold_items, self.cold_valid_items)

    def train_fingerprint(self) -> str:
        """What a trained model depends on: the training sequences and the validation cases,
        which steer early stopping (the key of every checkpoint trained on this split)."""
        return stable_hash([self.n_items, self.train, self.valid.users, self.valid.targets,
                            self.valid.histories])

    def cold_fingerprint(self) -> str | None:
        return stable_hash(self.cold_items) if self.protocol == "cold_item" else None

    def cold_valid_fingerprint(self) -> str | None:
        return stable_hash(self.cold_valid_items) if self.protocol == "cold_item" else None

    def restrict(self, users: np.ndarray) -> Split:
        """The split with only the validation and test cases of ``users`` (training unchanged)."""
        def keep(cases: Cases) -> Cases:
            mask = np.isin(cases.users, users)
            return Cases(cases.users[mask], [h for h, k in zip(cases.histories, mask) if k],
                         cases.targets[mask])
        return Split(self.protocol, self.n_items, self.train, keep(self.valid), keep(self.test),
                     self.cold_items, self.cold_valid_items)

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


def draw_cold_valid_items(n_items: int, cold: np.ndarray, split_seed: int) -> np.ndarray:
    """Step 6: as many items as C, drawn uniformly from the rest, fixed by ``split_seed``.

    A generator of its own (seeded by ``[split_seed, 1]``) leaves C exactly as step 2 draws it.
    """
    rest = np.setdiff1d(np.arange(n_items), cold)
    if len(rest) < len(cold):
        raise BenchmarkError(f"the catalogue ({n_items} items) is too small for a cold validation "
                             f"set of {len(cold)} items beside the cold set")
    rng = np.random.default_rng([split_seed, 1])
    return np.sort(rng.choice(rest, size=len(cold), replace=False))


def cold_item(sequences: list[np.ndarray], n_items: int, fraction: float, split_seed: int) -> Split:
    loo = leave_one_out(sequences, n_items)  # step 1
    cold = draw_cold_items(n_items, fraction, split_seed)  # step 2
    cold_valid = draw_cold_valid_items(n_items, cold, split_seed)  # step 6
    removed = np.zeros(n_items, dtype=bool)
    removed[cold] = True
    removed[cold_valid] = True
    in_cold = np.zeros(n_items, dtype=bool)
    in_cold[cold] = True

    def warm(seq: np.ndarray) -> np.ndarray:
        return seq[~removed[seq]]

    train = [warm(s) for s in loo.train]  # steps 3 and 6
    keep = ~in_cold[loo.valid.targets]  # step 4 (C_v targets stay: the cold_valid slice)
    valid = Cases(loo.valid.users[keep], [warm(h) for h, k in zip(loo.valid.histories, keep) if k],
                  loo.valid.targets[keep])
    test = Cases(loo.test.users, [warm(h) for h in loo.test.histories], loo.test.targets)  # 3, 5
    return Split("cold_item", n_items, train, valid, test, cold, cold_valid)


def eval_user_sample(sequences: list[np.ndarray], size: int, seed: int) -> np.ndarray:
    """A uniform, seeded sample of ``size`` users (all of them when ``size`` is not smaller).

    Uniform, so every figure on it estimates the figure over all users; the cold slices hold
    only the cold cases the draw happens to contain. (A sample that forced every cold case in
    made the forced users outnumber the rest 4 to 1 on Amazon and reversed a headline
    difference; the shipped datasets are evaluated on every user.)
    """
    n_users = len(sequences)
    if size >= n_users:
        return np.arange(n_users)
    return np.sort(np.random.default_rng(seed).choice(n_users, size=size, replace=False))


def make_split(dataset: Dataset, protocol: str, cold_fraction: float = 0.1,
               split_seed: int = 0) -> Split:
    if protocol == "loo":
        return leave_one_out(dataset.sequences(), dataset.n_items)
    if protocol == "cold_item":
        return cold_item(dataset.sequences(), dataset.n_items, cold_fraction, split_seed)
    raise BenchmarkError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
