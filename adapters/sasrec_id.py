"""SASRec-ID: the classic ID-based sequential recommender, our reference method.

The shared backbone and adapter in :mod:`benchmark.models.sasrec` with a plain item-ID
embedding table (:func:`~benchmark.models.sasrec.fit_sasrec_id`, which RA-Rec's ID model shares,
checkpoint included). ``sasrec_id`` trains with full softmax cross-entropy (the reference of the
statistical tests); ``sasrec_id_bce`` is the same class with the paper's sampled binary
cross-entropy (``loss: bce``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from benchmark.adapter import RunContext, TrainData
from benchmark.models.sasrec import SASRecAdapter, SASRecConfig, build_sasrec_id, fit_sasrec_id
from benchmark.registry import register


@register("sasrec_id")
class SASRecID(SASRecAdapter):
    @dataclass
    class Config(SASRecConfig):
        """All fields are SASRec's (see benchmark.models.sasrec.SASRecConfig)."""

    needs = frozenset()

    def fit(self, train: TrainData, validate: Callable[[], float], ctx: RunContext) -> None:
        # The shared path: RA-Rec's ID model is this very checkpoint (same key, same training).
        self.model = build_sasrec_id(train.n_items, ctx, self.config)
        self.training_info = fit_sasrec_id(self.model, train, validate, ctx, self.config)
