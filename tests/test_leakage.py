"""Leakage guard: what the runner feeds every registered adapter holds no held-out signal.

For every method, the adapter's own ``fit``/``score``/``rank`` are replaced by spies, and the
real runner is driven through both protocols. No validation or test target may appear in the
training data (sequences or item counts), and under ``cold_item`` no cold-item interaction may
appear in any training sequence or in any input history the adapter is shown.
"""

import numpy as np
import pytest
import torch

from benchmark import registry, runner
from benchmark.data import Preprocessing, load_atomic
from benchmark.settings import harness_settings
from benchmark.splits import draw_cold_items, draw_cold_valid_items

METHODS = sorted(registry.available())


def test_the_sweep_covers_the_methods_that_train_a_downstream_model_on_sequences():
    # SAID's stage 2 and its MiniLM variant train SASRec on the runner's training data.
    assert {"sasrec_id", "sasrec_sid", "said", "said_minilm"} <= set(METHODS)
    # RA-Rec's ID model is SASRec-ID trained on the runner's training data too.
    assert {"ra_rec", "ra_rec_hard"} <= set(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_runner_feeds_no_held_out_interaction(method, tiny_atomic, tmp_path, monkeypatch):
    cls = registry.adapter_class(method)
    seen: dict = {"histories": []}

    def fit(self, train, validate, ctx):
        seen["train"] = train
        validate()

    def score(self, users):
        seen["histories"].extend(users.histories)
        return torch.zeros(len(users), seen["train"].n_items)

    def rank(self, users, k):
        seen["histories"].extend(users.histories)
        return torch.arange(k).repeat(len(users), 1)

    monkeypatch.setattr(cls, "fit", fit)
    monkeypatch.setattr(cls, "score", score, raising=False)
    monkeypatch.setattr(cls, "rank", rank, raising=False)
    monkeypatch.setattr(cls, "diagnostics", lambda self: {}, raising=False)
    monkeypatch.setattr(cls, "parameter_counts", lambda self: (0, 0), raising=False)

    full = load_atomic(tiny_atomic, "tiny", Preprocessing()).sequences()
    settings = harness_settings("smoke")
    drawn = draw_cold_items(30, settings.cold_fraction, settings.split_seed)
    # C and the cold-validation set C_v: neither may reach training or an input history
    cold = set(drawn.tolist()) | set(
        draw_cold_valid_items(30, drawn, settings.split_seed).tolist())
    for protocol in ("loo", "cold_item"):
        seen["histories"].clear()
        runner.run(runner.RunRequest(method=method, dataset=str(tiny_atomic), protocol=protocol,
                                     profile="smoke", results_dir=tmp_path / "r",
                                     cache_dir=tmp_path / "c", show_progress=False))
        train = seen["train"]
        counts = np.zeros(train.n_items, dtype=int)
        for user, seq in enumerate(train.sequences):
            held_out = full[user][-2:]  # validation and test targets, by position
            expected = full[user][:-2]
            if protocol == "cold_item":
                expected = expected[~np.isin(expected, list(cold))]
                assert not set(seq.tolist()) & cold
            assert seq.tolist() == expected.tolist(), f"user {user}: training sequence leaks"
            assert len(seq) + len(held_out) <= len(full[user])
            np.add.at(counts, seq, 1)
        assert counts.tolist() == train.item_counts.tolist()
        assert seen["histories"], "the adapter was never asked to score"
        if protocol == "cold_item":
            for h in seen["histories"]:
                assert not set(np.asarray(h).tolist()) & cold
