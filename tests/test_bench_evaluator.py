"""Throughput of the evaluator on the full ML-100K catalogue (pytest-benchmark).

CI runs it once as a plain test (`--benchmark-disable` in pyproject); for timings run
`python -m pytest tests/test_bench_evaluator.py --benchmark-enable`.
"""

import numpy as np
import torch

from benchmark.evaluation import evaluate, metric_values
from benchmark.splits import Cases

N_USERS, N_ITEMS = 943, 1682


class _RandomScores:
    output = "scores"

    def __init__(self):
        self.scores = torch.rand(N_USERS, N_ITEMS, generator=torch.Generator().manual_seed(0))

    def score(self, users):
        return self.scores[torch.as_tensor(users.users)]


def test_full_catalogue_evaluation_throughput(benchmark):
    rng = np.random.default_rng(0)
    histories = [rng.choice(N_ITEMS, size=rng.integers(20, 200), replace=False)
                 for _ in range(N_USERS)]
    cases = Cases(np.arange(N_USERS), histories, rng.integers(N_ITEMS, size=N_USERS))
    adapter = _RandomScores()
    out = benchmark(evaluate, adapter, cases, N_ITEMS, batch_size=256)
    assert out.ranks.shape == (N_USERS,)
    # a random scorer's mean rank sits near the middle of the unmasked candidates
    mean_candidates = N_ITEMS - np.mean([len(h) for h in histories])
    assert abs(out.ranks.mean() / mean_candidates - 0.5) < 0.1
    assert metric_values(out.ranks)["HR@100"].mean() < 0.2
