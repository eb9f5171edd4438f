"""SASRec-ID: the classic ID-based sequential recommender, our reference method.

A thin adapter over the shared backbone in :mod:`benchmark.models.sasrec` with a plain item-ID
embedding table. ``sasrec_id`` trains with full softmax cross-entropy (the reference of the
statistical tests); ``sasrec_id_bce`` is the same class with the paper's sampled binary
cross-entropy (``loss: bce``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from benchmark.adapter import AdapterBase, RunContext, TrainData, UserBatch
from benchmark.registry import register
from benchmark.models.sasrec import IDEmbedder, SASRec, SASRecConfig, train_sasrec


@register("sasrec_id")
class SASRecID(AdapterBase):
    @dataclass
    class Config(SASRecConfig):
        """All fields are SASRec's (see benchmark.models.sasrec.SASRecConfig)."""

    needs = frozenset()
    output = "scores"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.model: SASRec | None = None
        self.info: dict[str, Any] = {}

    def fit(self, train: TrainData, validate: Callable[[], float], ctx: RunContext) -> None:
        cfg = self.config
        torch.manual_seed(ctx.seed)  # initial weights
        self.model = SASRec(IDEmbedder(train.n_items, cfg.hidden), cfg.max_len, cfg.hidden,
                            cfg.n_layers, cfg.n_heads, cfg.dropout,
                            ffn_mult=cfg.ffn_mult).to(ctx.device)
        self.info = train_sasrec(self.model, train, validate, ctx, cfg)

    @torch.no_grad()
    def score(self, users: UserBatch) -> torch.Tensor:
        assert self.model is not None, "fit() first"
        self.model.eval()
        return self.model.score_last(users).cpu()

    def diagnostics(self) -> dict[str, Any]:
        # fit_seconds is the original training time, also when the checkpoint came from cache
        return {k: self.info[k] for k in ("epochs", "best_valid_ndcg@10", "cached",
                                          "fit_seconds") if k in self.info}
