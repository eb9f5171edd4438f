"""SASRec-ID: the classic ID-based sequential recommender, our reference method.

The shared backbone and adapter in :mod:`benchmark.models.sasrec` with a plain item-ID
embedding table. ``sasrec_id`` trains with full softmax cross-entropy (the reference of the
statistical tests); ``sasrec_id_bce`` is the same class with the paper's sampled binary
cross-entropy (``loss: bce``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from benchmark.adapter import RunContext, TrainData
from benchmark.models.sasrec import IDEmbedder, SASRecAdapter, SASRecConfig
from benchmark.registry import register


@register("sasrec_id")
class SASRecID(SASRecAdapter):
    @dataclass
    class Config(SASRecConfig):
        """All fields are SASRec's (see benchmark.models.sasrec.SASRecConfig)."""

    needs = frozenset()

    def item_embedder(self, train: TrainData, ctx: RunContext) -> nn.Module:
        return IDEmbedder(train.n_items, self.config.hidden)
