"""Leave-one-out and the five steps of the cold-start item protocol, each pinned."""

import numpy as np

from benchmark.splits import cold_item, draw_cold_items, leave_one_out

SEQS = [np.array([0, 1, 2, 3, 4]), np.array([5, 6, 7]), np.array([2, 8, 9, 5])]


def test_leave_one_out():
    s = leave_one_out(SEQS, 10)
    assert [t.tolist() for t in s.train] == [[0, 1, 2], [5], [2, 8]]
    assert s.valid.targets.tolist() == [3, 6, 9]
    assert [h.tolist() for h in s.valid.histories] == [[0, 1, 2], [5], [2, 8]]
    assert s.test.targets.tolist() == [4, 7, 5]
    assert [h.tolist() for h in s.test.histories] == [[0, 1, 2, 3], [5, 6], [2, 8, 9]]


def test_step2_cold_set_depends_on_split_seed_only():
    a = draw_cold_items(100, 0.1, split_seed=7)
    assert len(a) == 10 and len(set(a.tolist())) == 10
    assert np.array_equal(a, draw_cold_items(100, 0.1, split_seed=7))
    assert not np.array_equal(a, draw_cold_items(100, 0.1, split_seed=8))


def test_cold_protocol_steps(monkeypatch):
    import benchmark.splits as splits

    # Fix C = {2, 5} to check steps 3-5 by hand.
    monkeypatch.setattr(splits, "draw_cold_items", lambda n, f, s: np.array([2, 5]))
    s = cold_item(SEQS, 10, 0.2, split_seed=0)
    # step 1 + 3: the leave-one-out training sequences lose every cold interaction
    assert [t.tolist() for t in s.train] == [[0, 1], [], [8]]
    # step 4: user 2's validation target (9) is warm and kept; no validation target is cold
    assert s.valid.users.tolist() == [0, 1, 2]
    assert [h.tolist() for h in s.valid.histories] == [[0, 1], [], [8]]
    # step 3 on test inputs, step 5: every test case is kept, cold targets included
    assert s.test.users.tolist() == [0, 1, 2]
    assert [h.tolist() for h in s.test.histories] == [[0, 1, 3], [6], [8, 9]]
    assert s.test.targets.tolist() == [4, 7, 5]
    assert s.item_counts()[[2, 5]].tolist() == [0, 0]


def test_cold_protocol_drops_validation_cases_with_cold_targets(monkeypatch):
    import benchmark.splits as splits

    monkeypatch.setattr(splits, "draw_cold_items", lambda n, f, s: np.array([3, 9]))
    s = cold_item(SEQS, 10, 0.2, split_seed=0)
    assert s.valid.users.tolist() == [1]  # users 0 and 2 had cold validation targets
    assert s.test.users.tolist() == [0, 1, 2]
    assert [h.tolist() for h in s.test.histories] == [[0, 1, 2], [5, 6], [2, 8]]


def test_split_fingerprint_changes_with_the_split():
    a = leave_one_out(SEQS, 10)
    assert a.fingerprint() == leave_one_out([s.copy() for s in SEQS], 10).fingerprint()
    assert a.fingerprint() != cold_item(SEQS, 10, 0.2, 0).fingerprint()
