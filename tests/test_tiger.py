"""TIGER, the shared trie decoder, and the collision rule every SID method follows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adapters.tiger import TIGER, length_buckets, training_prefixes
from benchmark.adapter import RunContext, TrainData, UserBatch
from benchmark.cache import Cache
from benchmark.data import ItemCatalog
from benchmark.evaluation import evaluate, tied_list_ranks, tied_scores
from benchmark.models.semantic_ids import SemanticIDs
from benchmark.models.sid_decoding import SIDTrie, trie_beam_search
from benchmark.splits import Cases

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------- the collision rule


def test_tied_scores_give_every_member_its_groups_best_score():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.2]])
    groups = torch.tensor([0, 1, 0, 2])
    assert tied_scores(scores, groups)[0].tolist() == pytest.approx([0.5, 0.9, 0.5, 0.2])


def test_a_target_in_a_tied_group_ranks_below_its_group_mates():
    groups = torch.tensor([0, 0, 0, 1, 2])  # items 0, 1, 2 share one ID
    lists = torch.tensor([[3, 0, 1, 2], [3, 0, 1, 2], [0, 1, 2, 3]])
    targets = torch.tensor([0, 2, 3])
    # user 0: target 0, group at position 2 with 2 other candidates -> rank 4
    # user 1: item 1 is in the history, so one other candidate -> rank 3
    # user 2: target 3 is alone in its group -> its position, 4
    hist = [np.array([], dtype=np.int64), np.array([1]), np.array([], dtype=np.int64)]
    assert tied_list_ranks(lists, targets, groups, hist).tolist() == [4.0, 3.0, 4.0]
    # a group whose pessimistic rank falls past the list's end is a miss
    short = tied_list_ranks(lists[:, :3], targets, groups, hist)
    assert short.tolist() == [float("inf"), 3.0, float("inf")]


class _Constant:
    """A scoring adapter that cannot tell items 0 and 1 apart but scores item 0 higher."""

    tie_groups = np.array([0, 0, 1, 2])

    def score(self, users: UserBatch) -> torch.Tensor:
        return torch.tensor([[0.9, 0.1, 0.5, 0.0]] * len(users))


def test_the_evaluator_applies_tie_groups_to_scores():
    cases = Cases(np.array([0, 1]), [np.array([3]), np.array([3])], np.array([0, 1]))
    out = evaluate(_Constant(), cases, 4, mask_history=True)
    assert out.ranks.tolist() == [2.0, 2.0]  # both members of the top group rank 2
    no_ties = _Constant()
    no_ties.tie_groups = None
    assert evaluate(no_ties, cases, 4).ranks.tolist() == [1.0, 3.0]


# ----------------------------------------------------------------- the shared decoder


class _Fixed:
    """Fixed logits per level: prefers the lowest code at every level."""

    def __init__(self, sizes, b):
        self.sizes, self.b = sizes, b
        self.selected = []

    def logits(self, level, allowed):
        return -torch.arange(self.sizes[level], dtype=torch.float32).expand(self.b, 1, -1)

    def select(self, level, parent, code):
        self.selected.append(code.clone())


def test_trie_search_writes_whole_groups_and_skips_history_members():
    codes = np.array([[0, 0], [0, 0], [0, 1], [1, 0]])  # items 0 and 1 collide
    trie = SIDTrie(codes, [2, 2])
    assert not trie.unique and trie.group.tolist() == [0, 0, 1, 2]
    items, scores = trie_beam_search(_Fixed([2, 2], 2), trie, [np.array([], np.int64),
                                                               np.array([0])], width=3, k=4)
    # item 3 is the only child of code 1, so renormalised it beats item 2 (code 1 at level 2)
    assert items[0].tolist() == [0, 1, 3, 2]
    assert scores[0, 0] == scores[0, 1]  # one leaf, one score
    assert items[1].tolist() == [1, 3, 2, -1]  # item 0 is in the history; its group mate stays


def test_a_group_whose_members_are_all_in_the_history_is_never_written():
    codes = np.array([[0, 0], [0, 0], [1, 0]])
    items, _ = trie_beam_search(_Fixed([2, 1], 1), SIDTrie(codes, [2, 1]),
                                [np.array([0, 1])], width=2, k=3)
    assert items[0].tolist() == [2, -1, -1]


# ----------------------------------------------------------------- TIGER itself


N_ITEMS = 16
CODES = np.array([[i // 4, i % 4, 0] for i in range(N_ITEMS)], dtype=np.int64)


def _train_data() -> TrainData:
    rng = np.random.default_rng(0)
    sequences = [(int(rng.integers(N_ITEMS)) + np.arange(8)) % N_ITEMS for _ in range(60)]
    counts = np.bincount(np.concatenate(sequences), minlength=N_ITEMS)
    catalog = ItemCatalog([str(i) for i in range(N_ITEMS)],
                          [{"title": f"m{i}"} for i in range(N_ITEMS)], [()] * N_ITEMS)
    return TrainData(N_ITEMS, sequences, catalog, counts)


def _fit(cache_dir, codes=CODES, scores=None, **overrides) -> tuple[TIGER, list[float]]:
    config = TIGER.Config(**{"d_model": 32, "n_heads": 2, "head_dim": 16, "ffn_dim": 64,
                             "encoder_layers": 1, "decoder_layers": 1, "dropout": 0.0,
                             "history_items": 4, "user_buckets": 8, "lr": 1e-2,
                             "batch_size": 32, "max_epochs": 30, "patience": 30,
                             "list_length": 8, "beam_width": 4, **overrides})
    adapter = TIGER(config)
    ctx = RunContext(seed=0, device="cpu", cache=Cache(cache_dir), protocol="loo",
                     catalog_hash=str(codes.tolist()), train_hash="toy", show_progress=False)
    sids = SemanticIDs(codes=codes, level_sizes=[int(c.max()) + 1 for c in codes.T],
                       diagnostics={})
    calls: list[float] = []

    def validate(cases=None):
        calls.append(cases)
        # always improving (train to max_epochs) unless the test gives the scores
        return float(len(calls)) if scores is None else scores[len(calls) - 1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("adapters.tiger.build_semantic_ids", lambda *a, **k: sids)
        adapter.fit(_train_data(), validate, ctx)
    return adapter, calls


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return _fit(tmp_path_factory.mktemp("tiger"))


def test_training_prefixes_cover_every_item_after_the_first():
    users, hist, targets = training_prefixes([np.array([5, 6, 7]), np.array([1])], 1)
    assert users.tolist() == [0, 0] and targets.tolist() == [6, 7]
    assert [h.tolist() for h in hist] == [[5], [6]]


def test_length_buckets_keep_every_example_once():
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(50, generator=gen)
    batches = length_buckets(order, torch.arange(50) % 7, 8, gen, pool=2)
    assert sorted(torch.cat(batches).tolist()) == list(range(50))


def test_tiger_learns_the_sequential_pattern_and_ranks_unseen_valid_items(trained):
    adapter, calls = trained
    assert len(calls) == 30 and adapter.info["epochs"] == 30
    users = UserBatch(np.arange(3), [np.array([2, 3, 4]), np.array([9, 10]), np.array([15])])
    lists = adapter.rank(users, 8).numpy()
    assert lists[:, 0].tolist() == [5, 11, 0]  # the cycle's next item, first
    for row, hist in zip(lists, users.histories, strict=True):
        assert len(set(row.tolist())) == 8 and not set(row.tolist()) & set(hist.tolist())


def test_the_checkpoint_is_reused_and_validation_uses_the_configured_sample(tmp_path):
    first, calls = _fit(tmp_path, max_epochs=2, validate_cases=5)
    assert calls == [5, 5]
    again, calls = _fit(tmp_path, max_epochs=2, validate_cases=5)
    assert not first.info["cached"] and again.info["cached"] and calls == []


def test_the_learning_rate_decays_after_validations_without_a_new_best(tmp_path):
    scores = [1.0, 2.0, 2.0, 1.5, 3.0, 3.0, 3.0, 3.0, 2.0]
    adapter, _ = _fit(tmp_path, scores=scores, max_epochs=9, lr_decay_patience=2, lr_decay=0.5)
    # two validations without a new best: after the 4th, the 7th (the count restarts at a
    # decay) and the 9th
    assert adapter.info["lr_decays"] == [[4, 5e-3], [7, 2.5e-3], [9, 1.25e-3]]
    assert adapter.diagnostics()["lr_decays"] == adapter.info["lr_decays"]
    constant, _ = _fit(tmp_path / "c", scores=scores, max_epochs=9)
    assert "lr_decays" not in constant.info


def test_colliding_ids_are_written_together_and_declared_tied(tmp_path):
    codes = CODES.copy()
    codes[1] = codes[0]  # items 0 and 1 share a full ID
    adapter, _ = _fit(tmp_path, codes=codes, max_epochs=1)
    assert adapter.tie_groups is not None and adapter.tie_groups[0] == adapter.tie_groups[1]
    lists = adapter.rank(UserBatch(np.arange(1), [np.array([5])]), 8).numpy()[0].tolist()
    if 0 in lists:  # the group's members sit side by side
        assert lists[lists.index(0) + 1] == 1
    assert adapter.diagnostics()["tied_items"] == 1


def test_the_smoke_run_lists_its_configured_length(tiny_atomic, cache_dir, tmp_path):
    from benchmark.cli import main

    main(["--profile", "smoke", "--methods", "tiger", "--dataset", str(tiny_atomic),
          "--protocol", "loo", "--no-report", "--cache-dir", str(cache_dir),
          "--results-dir", str(tmp_path / "res"), "--no-progress"])
    result = json.loads(next((tmp_path / "res").rglob("seed0.json")).read_text())
    assert result["list_length"] == 30 and "HR@100" not in result["metrics"]["all"]["all"]
    assert result["diagnostics"]["semantic_ids"]["n_items"] == 30


def test_a_method_at_an_index_names_the_published_source():
    from benchmark import registry
    from benchmark.errors import BenchmarkError
    from benchmark.runner import resolve_config

    _, config = resolve_config("tiger@rqvae_native", "smoke",
                               {"tiger@rqvae_native.d_model": 24})
    assert config.semantic_ids["source"] == "published:rqvae_native"
    assert config.semantic_ids["codebook_size"] == 8  # the profile's block is kept
    assert config.d_model == 24
    assert "tiger@rqvae_native" not in registry.available()  # never part of --all
    with pytest.raises(BenchmarkError, match="has no semantic IDs"):
        resolve_config("popularity@rqvae_native", "smoke", {})
    with pytest.raises(BenchmarkError, match="not a published index name"):
        resolve_config("tiger@../x", "smoke", {})
