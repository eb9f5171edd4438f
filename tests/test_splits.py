"""Leave-one-out and the five steps of the cold-start item protocol, each pinned."""

import numpy as np

from benchmark.splits import (
    cold_item,
    draw_cold_items,
    draw_cold_valid_items,
    eval_user_sample,
    leave_one_out,
)

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
    monkeypatch.setattr(splits, "draw_cold_valid_items", lambda n, c, s: np.zeros(0, int))
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
    monkeypatch.setattr(splits, "draw_cold_valid_items", lambda n, c, s: np.zeros(0, int))
    s = cold_item(SEQS, 10, 0.2, split_seed=0)
    assert s.valid.users.tolist() == [1]  # users 0 and 2 had cold validation targets
    assert s.test.users.tolist() == [0, 1, 2]
    assert [h.tolist() for h in s.test.histories] == [[0, 1, 2], [5, 6], [2, 8]]


def test_split_fingerprint_changes_with_the_split():
    a = leave_one_out(SEQS, 10)
    assert a.fingerprint() == leave_one_out([s.copy() for s in SEQS], 10).fingerprint()
    assert a.fingerprint() != cold_item(SEQS, 10, 0.2, 0).fingerprint()


def test_step6_cold_validation_set_is_disjoint_and_fixed_by_the_split_seed():
    cold = draw_cold_items(100, 0.1, split_seed=7)
    cv = draw_cold_valid_items(100, cold, split_seed=7)
    assert len(cv) == len(cold) == 10 and not set(cv.tolist()) & set(cold.tolist())
    assert np.array_equal(cv, draw_cold_valid_items(100, cold, split_seed=7))
    assert not np.array_equal(cv, draw_cold_valid_items(100, cold, split_seed=8))


def test_step6_cold_validation_by_hand(monkeypatch):
    import benchmark.splits as splits

    # C = {4} (user 0's test target), C_v = {6, 9}: user 1's validation target is 6, user 2's 9.
    monkeypatch.setattr(splits, "draw_cold_items", lambda n, f, s: np.array([4]))
    monkeypatch.setattr(splits, "draw_cold_valid_items", lambda n, c, s: np.array([6, 9]))
    s = cold_item(SEQS, 10, 0.1, split_seed=0)
    assert s.cold_valid_items.tolist() == [6, 9]
    assert s.held_out_items().tolist() == [4, 6, 9]
    # C_v interactions leave training and every input history, like C's
    assert [t.tolist() for t in s.train] == [[0, 1, 2], [5], [2, 8]]
    # validation cases with a C_v target are kept: they are the cold_valid validation slice
    assert s.valid.users.tolist() == [0, 1, 2]
    assert s.valid.targets.tolist() == [3, 6, 9]
    # test inputs lose the C_v items (user 1's 6, user 2's 9); every test case is kept
    assert [h.tolist() for h in s.test.histories] == [[0, 1, 2, 3], [5], [2, 8]]
    assert s.test.targets.tolist() == [4, 7, 5]


def test_restrict_keeps_training_and_the_given_users_cases():
    s = leave_one_out(SEQS, 10).restrict(np.array([0, 2]))
    assert [t.tolist() for t in s.train] == [[0, 1, 2], [5], [2, 8]]
    assert s.valid.users.tolist() == [0, 2] and s.test.users.tolist() == [0, 2]
    assert s.test.targets.tolist() == [4, 5]
    assert [h.tolist() for h in s.test.histories] == [[0, 1, 2, 3], [2, 8, 9]]


def test_eval_user_sample_is_uniform_and_seeded():
    """No user is forced in: a sample estimates the all-user figure (a sample that forced the
    cold cases in reversed a headline difference on Amazon)."""
    rng = np.random.default_rng(0)
    seqs = [rng.choice(200, size=6, replace=False) for _ in range(500)]
    sample = eval_user_sample(seqs, 150, seed=1)
    assert len(sample) == 150 and len(set(sample.tolist())) == 150
    assert np.array_equal(sample, eval_user_sample(seqs, 150, 1))
    assert not np.array_equal(sample, eval_user_sample(seqs, 150, 2))
    # a sample as large as the users is every user
    assert eval_user_sample(seqs, 500, 1).tolist() == list(range(500))
    # uniform: over many draws every user is drawn about equally often (150/500 = 0.3)
    counts = np.zeros(500)
    for s in range(200):
        counts[eval_user_sample(seqs, 150, s)] += 1
    assert abs(counts.mean() / 200 - 0.3) < 1e-9 and counts.std() / 200 < 0.05


def test_a_dataset_yaml_eval_users_sample_is_what_every_run_evaluates(tiny_atomic, tmp_path,
                                                                      monkeypatch):
    import json

    import benchmark.datasets as datasets
    from benchmark import runner
    from benchmark.settings import harness_settings

    monkeypatch.setattr(datasets, "DATASET_CONFIG_DIR", tmp_path)
    datasets.load_dataset.cache_clear()
    (tmp_path / "sampled.yaml").write_text(
        f"loader: atomic\npath: {tiny_atomic}\neval_users: {{sample: 12, seed: 3}}\n")
    try:
        users = {}
        for protocol in ("loo", "cold_item"):
            path = runner.run(runner.RunRequest(
                method="popularity", dataset="sampled", protocol=protocol, profile="smoke",
                results_dir=tmp_path / "r", cache_dir=tmp_path / "c", show_progress=False))
            result = json.loads(path.read_text())
            assert result["eval_users"] == {"sample": 12, "seed": 3}
            _, split = runner.prepare(runner.RunRequest("popularity", "sampled", protocol,
                                                        profile="smoke"), harness_settings("smoke"))
            users[protocol] = split.test.users.tolist()
            assert result["n_test_cases"] == len(split.test) >= 12
            assert set(split.valid.users.tolist()) <= set(users[protocol])
            assert len(split.train) == 40  # training keeps every user
        assert users["loo"] == users["cold_item"]  # the same users under both protocols
    finally:
        datasets.load_dataset.cache_clear()
