"""Amazon's popularity figures, recomputed from the raw shipped file by code that shares
nothing with the harness, equal the committed result: every user evaluated, counts from the
training sequences only, the full catalogue, history masked, ties pessimistic."""

import gzip
import json
import math
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_popularity_on_amazon_loo_equals_an_independent_computation():
    sequences = json.loads(gzip.open(ROOT / "data/amazon-scientific/Scientific.inter.json.gz")
                           .read().decode())
    items = sorted({i for seq in sequences.values() for i in seq})
    counts = Counter(i for seq in sequences.values() for i in seq[:-2])  # training only
    ndcg = hits = 0.0
    for seq in sequences.values():
        history, target = set(seq[:-1]), seq[-1]
        score = counts[target]
        # pessimistic: every unmasked item scoring >= the target ranks above it
        rank = 1 + sum(1 for i in items
                       if i != target and i not in history and counts[i] >= score)
        if rank <= 10:
            hits += 1
            ndcg += 1 / math.log2(rank + 1)
    n = len(sequences)
    result = json.loads((ROOT / "results/amazon-scientific/loo/popularity/seed0.json").read_text())
    metrics = result["metrics"]["all"]["all"]
    assert result["n_test_cases"] == n == 8317
    assert abs(metrics["NDCG@10"]["mean"] - ndcg / n) < 1e-12
    assert abs(metrics["HR@10"]["mean"] - hits / n) < 1e-12
    assert (round(ndcg / n, 4), round(hits / n, 4)) == (0.0167, 0.0244)
