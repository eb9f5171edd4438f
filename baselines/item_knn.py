"""Item-KNN: item-item cosine similarity on training co-occurrence.

sim(i, j) = |U_i & U_j| / (sqrt(|U_i|) sqrt(|U_j|) + shrink), where U_i is the set of users whose
training sequence holds item i. Each item keeps its ``neighbours`` most similar items; a user's
score for j is the sum of sim(h, j) over the history items h. The neighbourhood size is chosen on
validation NDCG@10 from ``neighbour_grid`` (the same tuning effort the neural methods get from
early stopping), then the best is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from benchmark import register
from benchmark.adapter import AdapterBase, RunContext, TrainData, UserBatch
from benchmark.config import require_each, require_range


@register("item_knn")
class ItemKNN(AdapterBase):
    @dataclass
    class Config:
        neighbour_grid: list[int] = field(default_factory=lambda: [20, 50, 100, 200, 400, 800, 1600])
        shrink: float = 10.0

        def __post_init__(self) -> None:
            require_each("neighbour_grid", self.neighbour_grid, 1, non_empty=True)
            require_range("shrink", self.shrink, 0)

    def fit(self, train: TrainData, validate: Callable[[], float], ctx: RunContext) -> None:
        users, items = train.pairs()
        x = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)),
                          shape=(train.n_users, train.n_items))
        x.data[:] = 1.0  # binary: a repeated interaction counts once
        co = (x.T @ x).toarray().astype(np.float32)
        norms = np.sqrt(np.diag(co).copy())
        sim = co / (np.outer(norms, norms) + self.config.shrink)
        np.fill_diagonal(sim, 0.0)
        self.full_sim = torch.as_tensor(sim)
        self.n_items = train.n_items
        self.tuning: dict[int, float] = {}
        for k in self.config.neighbour_grid:
            self.sim = self._top_k(self.full_sim, k)
            self.tuning[k] = validate()
        self.best_k = max(self.tuning, key=lambda k: (self.tuning[k], -k))
        self.sim = self._top_k(self.full_sim, self.best_k)
        del self.full_sim
        ctx.report_stop("grid_search")

    @staticmethod
    def _top_k(sim: torch.Tensor, k: int) -> torch.Tensor:
        k = min(k, sim.shape[1])
        values, index = sim.topk(k, dim=1)
        return torch.zeros_like(sim).scatter_(1, index, values)

    def score(self, users: UserBatch) -> torch.Tensor:
        hist = torch.zeros(len(users), self.n_items)
        for row, h in enumerate(users.histories):
            if len(h):
                hist[row, torch.as_tensor(h)] = 1.0
        return hist @ self.sim

    def diagnostics(self) -> dict:
        return {"neighbours": self.best_k, "validation_ndcg10_by_neighbours": self.tuning}
