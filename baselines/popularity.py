"""Most-popular baseline: every user gets the items ranked by training interaction count."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from benchmark import register
from benchmark.adapter import AdapterBase, RunContext, TrainData, UserBatch


@register("popularity")
class Popularity(AdapterBase):
    @dataclass
    class Config:
        pass

    def fit(self, train: TrainData, validate: Callable[[], float], ctx: RunContext) -> None:
        # Counts come from the training sequences the harness hands over: validation and test
        # targets (and cold-item interactions under that protocol) are not in them.
        self.counts = torch.as_tensor(train.item_counts, dtype=torch.float32)
        ctx.report_stop("no_training")

    def score(self, users: UserBatch) -> torch.Tensor:
        return self.counts.expand(len(users), -1)

    def diagnostics(self) -> dict:
        counts = self.counts.numpy()
        return {"items_never_seen": int((counts == 0).sum()), "max_count": int(np.max(counts))}
