"""The shared SASRec backbone and the sasrec_id adapter, on tiny synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adapters.sasrec_id import SASRecID
from benchmark.adapter import RunContext, TrainData, UserBatch
from benchmark.cache import Cache
from benchmark.data import ItemCatalog
from benchmark.evaluation import evaluate, metric_values
from benchmark.models.sasrec import IDEmbedder, SASRec, sample_negatives, training_windows
from benchmark.splits import leave_one_out

N_ITEMS = 12


def cyclic_sequences(n_users: int = 60, length: int = 15) -> list[np.ndarray]:
    """User u walks the cycle 0 -> 1 -> ... -> N_ITEMS-1 -> 0 from a start fixed by u."""
    return [(np.arange(length) + u) % N_ITEMS for u in range(n_users)]


def make_run(tmp_path, seed: int = 0):
    split = leave_one_out(cyclic_sequences(), N_ITEMS)
    catalog = ItemCatalog([str(i) for i in range(N_ITEMS)], [{"title": f"item {i}"}
                                                             for i in range(N_ITEMS)],
                          [() for _ in range(N_ITEMS)])
    train = TrainData(N_ITEMS, split.train, catalog, split.item_counts())
    ctx = RunContext(seed=seed, device="cpu", cache=Cache(tmp_path),
                     protocol="loo", catalog_hash="c",
                     train_hash=split.train_fingerprint(), show_progress=False)
    return split, train, ctx


def fit(tmp_path, seed: int = 0, **overrides):
    """Smoke-sized SASRec-ID; the cycle needs no history masking to be learnt."""
    split, train, ctx = make_run(tmp_path, seed)
    cfg = SASRecID.Config(**{"max_len": 10, "hidden": 16, "n_layers": 1, "n_heads": 1,
                             "dropout": 0.0, "lr": 1e-2, "batch_size": 64, "max_epochs": 15,
                             "patience": 15, **overrides})
    adapter = SASRecID(cfg)

    def validate() -> float:  # as the runner's: each call adds a point to the curve
        value = float(metric_values(evaluate(adapter, split.valid, N_ITEMS,
                                             mask_history=False).ranks)["NDCG@10"].mean())
        ctx.add_point(value)
        return value

    adapter.fit(train, validate, ctx)
    return adapter, split, ctx


def hr_at_1(adapter, split) -> float:
    ranks = evaluate(adapter, split.test, N_ITEMS, mask_history=False).ranks
    return float((ranks <= 1).mean())


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_learns_a_cyclic_pattern_with_either_loss(tmp_path, loss):
    adapter, split, ctx = fit(tmp_path, loss=loss)
    assert hr_at_1(adapter, split) >= 0.95
    assert ctx.stop_reason in {"early_stop", "epoch_cap"}
    losses = adapter.training_info["train_loss"]
    assert losses[0] > losses[-1]  # it trained
    # one curve point per epoch; examples = next-item predictions: 13 training items per user
    # (15 minus the validation and test targets) give 12 per user per epoch
    assert [p["examples"] for p in ctx.curve][:2] == [60 * 12, 2 * 60 * 12]


def test_early_stopping_restores_the_best_validation_state(tmp_path):
    adapter, split, ctx = fit(tmp_path, max_epochs=40, patience=2, lr=3e-2)
    curve = [p["valid_ndcg10"] for p in ctx.curve]
    assert ctx.stop_reason == "early_stop" and len(curve) < 40
    assert len(curve) - 1 - int(np.argmax(curve)) == 2  # two evaluations without a new best
    valid = metric_values(evaluate(adapter, split.valid, N_ITEMS, mask_history=False).ranks)
    assert valid["NDCG@10"].mean() == pytest.approx(max(curve))


def test_refit_loads_the_cached_checkpoint_without_training(tmp_path):
    first, split, first_ctx = fit(tmp_path, max_epochs=3)
    assert not first.training_info["cached"] and len(first_ctx.curve) == 3
    second, _, ctx = fit(tmp_path, max_epochs=3)
    assert second.training_info["cached"]
    # the cached checkpoint replays the original training record
    assert ctx.stop_reason == first_ctx.stop_reason and ctx.curve == first_ctx.curve
    assert ctx.examples_seen == first_ctx.examples_seen > 0
    # the fit time counts the original training, not just the load
    assert ctx.restored_seconds > 0 and ctx.elapsed() >= ctx.restored_seconds
    batch = UserBatch(split.test.users, split.test.histories)
    assert torch.equal(first.score(batch), second.score(batch))
    third, _, _ = fit(tmp_path, max_epochs=3, lr=5e-3)  # another config: trains again
    assert not third.training_info["cached"]


def test_same_seed_same_scores_other_seed_other_scores(tmp_path):
    a, split, _ = fit(tmp_path / "a", max_epochs=2)
    b, _, _ = fit(tmp_path / "b", max_epochs=2)
    c, _, _ = fit(tmp_path / "c", seed=1, max_epochs=2)
    batch = UserBatch(split.test.users, split.test.histories)
    assert torch.equal(a.score(batch), b.score(batch))
    assert not torch.equal(a.score(batch), c.score(batch))


def test_attention_is_causal_and_ignores_padding():
    torch.manual_seed(0)
    model = SASRec(IDEmbedder(N_ITEMS, 8), 6, 8, 2, 2, 0.0).eval()
    seqs = torch.tensor([[-1, -1, 3, 4, 5, 6]])
    changed = torch.tensor([[-1, -1, 3, 4, 9, 6]])
    h1, h2 = model(seqs, seqs < 0), model(changed, changed < 0)
    assert torch.allclose(h1[:, :4], h2[:, :4])  # positions before the change are unaffected
    assert not torch.allclose(h1[:, 4:], h2[:, 4:])
    other_pad = torch.tensor([[7, 8, 3, 4, 5, 6]])
    h3 = model(other_pad, torch.tensor([[True, True, False, False, False, False]]))
    assert torch.allclose(h1[:, 2:], h3[:, 2:], atol=1e-6)  # padded items are never seen


def test_empty_histories_get_finite_scores():
    model = SASRec(IDEmbedder(N_ITEMS, 8), 6, 8, 1, 1, 0.0).eval()
    scores = model.score_last(UserBatch(np.array([0, 1]), [np.array([], dtype=np.int64),
                                                           np.array([2, 3])]))
    assert scores.shape == (2, N_ITEMS) and torch.isfinite(scores).all()


def test_training_windows_cover_every_transition_once():
    inputs, targets, owner = training_windows([np.array([0, 1, 2, 3, 4, 5]), np.array([7, 8])], 3)
    assert inputs.tolist() == [[2, 3, 4], [-1, 0, 1], [-1, -1, 7]]
    assert targets.tolist() == [[3, 4, 5], [-1, 1, 2], [-1, -1, 8]]
    assert owner.tolist() == [0, 0, 1]


def test_negatives_avoid_the_users_own_items():
    seen = torch.arange(N_ITEMS - 2)  # user 0 has seen all but items 10 and 11; user 1 nothing
    negs = sample_negatives(torch.tensor([0, 1]), torch.zeros(2, 50, dtype=torch.long), seen,
                            N_ITEMS, torch.Generator().manual_seed(0), tries=100)
    assert set(negs[0].tolist()) <= {10, 11}
    assert len(set(negs[1].tolist())) > 2


def test_the_bce_gradient_is_the_same_on_every_run_with_two_threads():
    """Indexing's backward (``table[items]``) accumulates repeated rows in a thread-dependent
    order: two runs of one seed drifted apart on a 2-thread CPU. The BCE loss gathers item
    vectors with ``F.embedding``, whose gradient is the same on every run."""
    from benchmark.models.sasrec import SASRecConfig, _loss

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        n_items = 300
        model = SASRec(IDEmbedder(n_items, 16), 8, 16, 1, 1, 0.0)
        gen = torch.Generator().manual_seed(0)
        inputs = torch.randint(n_items, (512, 8), generator=gen)
        targets = torch.randint(n_items, (512, 8), generator=gen)
        negatives = torch.randint(5, (512, 8), generator=gen)  # few items, many repeats
        cfg = SASRecConfig(loss="bce", max_len=8, hidden=16)

        def gradient() -> torch.Tensor:
            model.zero_grad(set_to_none=True)
            _loss(model, inputs, targets, cfg, negatives).backward()
            return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

        first = gradient()
        assert all(torch.equal(first, gradient()) for _ in range(10))
    finally:
        torch.set_num_threads(threads)
