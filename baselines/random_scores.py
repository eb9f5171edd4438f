"""Random baseline: i.i.d. uniform scores per (user, item), seeded; the floor of the table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from benchmark import register
from benchmark.adapter import AdapterBase, RunContext, TrainData, UserBatch


@register("random")
class Random(AdapterBase):
    @dataclass
    class Config:
        pass

    def fit(self, train: TrainData, validate: Callable[[], float], ctx: RunContext) -> None:
        self.n_items = train.n_items
        self.seed = ctx.seed
        ctx.report_stop("no_training")

    def score(self, users: UserBatch) -> torch.Tensor:
        # One generator per user, seeded by (seed, user): a user's scores do not depend on
        # which batch it lands in, so reruns and batch sizes give identical ranks.
        rows = []
        for u in users.users:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(u))
            rows.append(torch.rand(self.n_items, generator=gen))
        return torch.stack(rows) if rows else torch.zeros(0, self.n_items)
