"""RecBole peers: trained by RecBole on our training sequences, scored by our evaluator."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import baselines.recbole_peers as peers
from benchmark.adapter import RunContext, TrainData
from benchmark.cache import Cache
from benchmark.data import ItemCatalog
from benchmark.evaluation import evaluate, metric_values
from benchmark.splits import leave_one_out

N_ITEMS = 30


def cyclic_split():
    """User u walks 0 -> 1 -> ... -> 29 -> 0 from item u, with 6 to 14 interactions."""
    sequences = [(np.arange(6 + u % 9) + u) % N_ITEMS for u in range(50)]
    return leave_one_out(sequences, N_ITEMS)


def fit_peer(cls, tmp_path, epochs: int = 8):
    split = cyclic_split()
    catalog = ItemCatalog([f"i{i}" for i in range(N_ITEMS)], [{"title": f"item {i}"}
                                                              for i in range(N_ITEMS)],
                          [() for _ in range(N_ITEMS)])
    ctx = RunContext(seed=0, device="cpu", cache=Cache(tmp_path),
                     protocol="loo", catalog_hash="c",
                     train_hash=split.train_fingerprint(), show_progress=False)
    adapter = cls(cls.Config(max_len=10, hidden=16, n_layers=1, n_heads=1, inner_size=32,
                             lr=1e-2, epochs=epochs, patience=8))
    adapter.fit(TrainData(N_ITEMS, split.train, catalog, split.item_counts()),
                lambda: pytest.fail("the peer stops on RecBole's own validation"), ctx)
    return adapter, split, ctx


def test_recbole_sasrec_trains_and_is_scored_by_our_evaluator(tmp_path, monkeypatch):
    adapter, split, ctx = fit_peer(peers.RecBoleSASRec, tmp_path)
    assert ctx.stop_reason in {"early_stop", "epoch_cap"}
    assert len(ctx.curve) == adapter.info["epochs"]  # RecBole's own validation, every epoch
    assert ctx.examples_seen == adapter.info["epochs"] * adapter.info["samples_per_epoch"]
    ranks = evaluate(adapter, split.test, N_ITEMS, mask_history=False).ranks
    assert np.isfinite(ranks).all() and ranks.min() >= 1 and ranks.max() <= N_ITEMS
    # A deterministic cycle: far above chance (HR@10 = 1/3 for a random scorer).
    assert metric_values(ranks)["HR@10"].mean() >= 0.8

    # Refit with the same inputs loads the saved model instead of running RecBole again.
    monkeypatch.setattr(peers, "run_recbole", lambda *a, **k: pytest.fail("retrained"))
    again, _, _ = fit_peer(peers.RecBoleSASRec, tmp_path)
    np.testing.assert_array_equal(
        evaluate(again, split.test, N_ITEMS, mask_history=False).ranks, ranks)

    # A model that a RecBole subprocess left behind (its parent died before caching it) is
    # taken as it is, and its training counts at the time the subprocess recorded, not at 0 s.
    shutil.rmtree(tmp_path / "recbole_peer")
    assert len(list((tmp_path / "recbole").glob("*/result.pt"))) == 1
    taken, _, taken_ctx = fit_peer(peers.RecBoleSASRec, tmp_path)
    assert adapter.info["fit_seconds"] > 0
    assert taken_ctx.restored_seconds == pytest.approx(adapter.info["fit_seconds"])
    assert taken_ctx.elapsed() >= adapter.info["fit_seconds"]
    np.testing.assert_array_equal(
        evaluate(taken, split.test, N_ITEMS, mask_history=False).ranks, ranks)


def test_empty_histories_are_scored(tmp_path):
    from benchmark.adapter import UserBatch

    adapter, _, _ = fit_peer(peers.RecBoleGRU4Rec, tmp_path, epochs=1)
    scores = adapter.score(UserBatch(np.array([0, 1]), [np.zeros(0, dtype=np.int64),
                                                        np.array([3, 4])]))
    assert scores.shape == (2, N_ITEMS) and np.isfinite(scores.numpy()).all()


def test_recbole_leave_one_out_targets_equal_ours(tmp_path):
    """Our atomic-file hand-off keeps the order: RecBole's own valid_and_test split of the full
    sequences picks the same validation and test targets as ours, user by user."""
    split = cyclic_split()
    full = [np.append(h, t) for h, t in zip(split.test.histories, split.test.targets)]
    peers.write_atomic_files(full, N_ITEMS, tmp_path / "data" / "peer")
    settings = {**peers.base_settings(tmp_path, "valid_and_test", 0, "cpu"),
                **peers.recbole_settings("SASRec", peers.RecBolePeerConfig(max_len=10))}
    peers.run_recbole(tmp_path, {"model": "SASRec", "mode": "split", "settings": settings})
    got = json.loads((tmp_path / "split.json").read_text())
    assert {int(u): i for u, i in got["test"].items()} == dict(
        zip(split.test.users.tolist(), split.test.targets.tolist()))
    assert {int(u): i for u, i in got["valid"].items()} == dict(
        zip(split.valid.users.tolist(), split.valid.targets.tolist()))


@pytest.mark.parametrize("before", [False, True])
def test_importing_recbole_models_leaves_torchs_anomaly_mode_as_it_was(before):
    """RecBole's sine.py switches anomaly detection on when imported, which slowed every later
    backward pass of the process (a tiny TIGER fit: 25 s against 4 s)."""
    import torch

    from baselines import recbole_compat

    torch.autograd.set_detect_anomaly(before)
    try:
        recbole_compat.install()
        import recbole.model.sequential_recommender.sasrec  # noqa: F401  (what unpickling does)

        assert torch.is_anomaly_enabled() is before
    finally:
        torch.autograd.set_detect_anomaly(False)
