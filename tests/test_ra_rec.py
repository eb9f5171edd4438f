"""RA-Rec: SASRec-ID vectors as attention prefixes of a frozen LM, two towers.

Everything runs on the tiny random Llama (benchmark.models.llm.tiny_random_lm: 2 layers, 4 query
heads, 2 key/value heads, so the prefix lives in grouped key/value-head space as in SmolLM2).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import smoke_fit

import adapters.ra_rec as ra_rec
from benchmark import registry, runner
from benchmark.adapter import UserBatch
from benchmark.models import sasrec
from benchmark.models.llm import tiny_random_lm
from benchmark.models.prefix_towers import (
    KVShape,
    PrefixAlignment,
    alignment_loss,
    bpr_in_batch,
    encode,
)
from benchmark.models.sasrec import SASRecConfig
from benchmark.models.tuning_data import balanced_sample, select_tuning_data, title_words

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    lm, tok = tiny_random_lm(seed=0)
    prompts = [tok(t, add_special_tokens=False)["input_ids"]
               for t in ("History: Toy Story; Heat. Next:", "Item: Casino.", "Item: Babe.")]
    return lm, tok, prompts


def aligned(lm, prompts, pad, id_tokens=2, context_tokens=2, id_dim=8):
    torch.manual_seed(0)
    align = PrefixAlignment(KVShape.of(lm), id_dim, id_tokens, context_tokens)
    align.calibrate(lm, prompts, pad)
    return align


# ------------------------------------------------------------------------------ the prefix


def test_prefix_lives_in_key_value_head_space_per_layer(tiny):
    lm, tok, prompts = tiny
    shape = KVShape.of(lm)
    assert (shape.layers, shape.kv_heads, shape.head_dim) == (2, 2, 16)  # 4 query heads: GQA
    keys, values = aligned(lm, prompts, tok.pad_token_id)("user", torch.randn(3, 8))
    assert keys.shape == values.shape == (2, 3, 2, 4, 16)  # layers, batch, kv heads, P, dim


def test_prefix_changes_the_output_only_through_attention(tiny):
    lm, tok, prompts = tiny
    pad = tok.pad_token_id
    with torch.no_grad():
        hard = encode(lm, prompts, pad)
        prefix = aligned(lm, prompts, pad)("user", torch.randn(3, 8))
        masked = encode(lm, prompts, pad, prefix, prefix_mask=torch.zeros(3, 4))
        empty = encode(lm, prompts, pad, aligned(lm, prompts, pad, 0, 0)("user", torch.randn(3, 8)))
        hybrid = encode(lm, prompts, pad, prefix)
    # The text starts at position P, but RoPE is relative among text tokens: masked = hard-only
    torch.testing.assert_close(masked, hard, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(empty, hard, atol=1e-5, rtol=1e-5)
    assert (hybrid - hard).abs().max() > 1e-2


def test_gradients_reach_the_alignment_module_and_the_lm_stays_frozen(tiny):
    lm, tok, prompts = tiny
    lm.requires_grad_(False)
    align = aligned(lm, prompts, tok.pad_token_id)
    out = encode(lm, prompts, tok.pad_token_id, align("item", torch.randn(3, 8)))
    out.sum().backward()
    assert align.id_map.weight.grad.abs().sum() > 0
    assert align.context["item"].grad.abs().sum() > 0 and align.context["user"].grad is None
    assert all(p.grad is None for p in lm.parameters())


def test_hard_variant_trains_the_context_prefixes_only(tiny):
    lm, tok, prompts = tiny
    s = KVShape.of(lm)
    soft = aligned(lm, prompts, tok.pad_token_id)
    hard = aligned(lm, prompts, tok.pad_token_id, id_tokens=0)
    context = 2 * s.layers * 2 * 2 * s.kv_heads * s.head_dim  # towers x layers x k/v x tokens
    assert sum(p.numel() for p in hard.parameters()) == context
    id_map = (8 + 1) * s.layers * 2 * 2 * s.kv_heads * s.head_dim  # Linear(8 -> ...), bias
    assert sum(p.numel() for p in soft.parameters()) == context + id_map


def test_losses_by_hand():
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # cosine 1 for the target, 0 for the other: softplus(-(1 - 0) / 0.5) for both users
    expected = torch.nn.functional.softplus(torch.tensor(-2.0))
    torch.testing.assert_close(bpr_in_batch(u, v, torch.tensor([3, 5]), 0.5), expected)
    # the same target twice is no negative: nothing to rank against
    assert bpr_in_batch(u, v, torch.tensor([3, 3]), 0.5) == 0
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    torch.testing.assert_close(alignment_loss(u, v, 0.5),
                               torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])))


# ------------------------------------------------------------------------------ tuning data


def test_title_words_ignore_years_and_stop_words():
    assert title_words("The Rock (1996)") == {"rock"}
    assert title_words("Star Wars: A New Hope") == {"star", "wars", "new", "hope"}


def test_denoising_drops_a_target_that_shares_no_word_with_its_history():
    titles = ["Star Wars (1977)", "Star Trek (1979)", "Pride and Prejudice (1995)"]
    seqs = [np.array([0, 1, 2])]
    sel = select_tuning_data(seqs, titles, np.array([1, 1, 1]), 10, "paper")
    assert sel.stats["candidates"] == 2 and sel.stats["dropped_by_denoising"] == 1
    assert sel.positions.tolist() == [1]  # Star Trek after Star Wars stays
    rand = select_tuning_data(seqs, titles, np.array([1, 1, 1]), 10, "random")
    assert rand.stats["dropped_by_denoising"] == 0 and sorted(rand.positions.tolist()) == [1, 2]


def test_round_robin_takes_the_same_number_from_every_cell():
    cells = np.array([0] * 100 + [1] * 10 + [2] * 5 + [3] * 50)
    picked = balanced_sample(cells, 20, np.random.default_rng(0))
    assert np.bincount(cells[picked]).tolist() == [5, 5, 5, 5]
    # cell 2 runs out at 5, cell 1 at 10; the others share the rest in turn (cell 0 first)
    picked = balanced_sample(cells, 40, np.random.default_rng(0))
    assert np.bincount(cells[picked]).tolist() == [13, 10, 5, 12]


def test_paper_selection_is_balanced_over_length_and_popularity_buckets():
    # 10 long users (20 items: 0, 1, 0, 1, ... with tail items at positions 5 and 15) and 10
    # short users (0, a tail item, 1). Edges: length 11.5 (between 3 and 20); popularity 6
    # (tail items are seen 5 or 6 times, items 0 and 1 over 100; an edge value belongs to the
    # lower bucket). Cells (length,
    # popularity): (short, tail) 20 candidates, (short, head) 110, (long, tail) 10, (long,
    # head) 70; uniform sampling would draw mostly (short, head).
    long_users = []
    for u in range(10):
        seq = np.array([0, 1] * 10)
        seq[5], seq[15] = 4 + (u + 1) % 6, 4 + u % 6
        long_users.append(seq)
    short_users = [np.array([0, 4 + u % 6, 1]) for u in range(10)]
    seqs = long_users + short_users
    counts = np.bincount(np.concatenate(seqs), minlength=10)
    titles = ["Movie"] * 10  # every pair shares a word: nothing is denoised
    sel = select_tuning_data(seqs, titles, counts, 16, "paper", n_buckets=2)
    assert sel.stats["dropped_by_denoising"] == 0 and sel.stats["selected"] == 16
    assert sel.stats["history_length_edges"] == [11.5] and sel.stats["popularity_edges"] == [6]
    assert sel.stats["per_cell"] == {"len0_pop0": 4, "len0_pop1": 4, "len1_pop0": 4,
                                     "len1_pop1": 4}
    rand = select_tuning_data(seqs, titles, counts, 16, "random", n_buckets=2)
    assert rand.stats["selected"] == 16  # the same size, for a like-for-like comparison


# ------------------------------------------------------------------------------ the adapter


def test_fit_loads_sasrec_id_from_the_cache_and_scores_every_item(tiny_atomic, cache_dir,
                                                                   monkeypatch):
    reference, _, _, _ = smoke_fit("sasrec_id", "cold_item", tiny_atomic, cache_dir)
    monkeypatch.setattr(sasrec, "_train", lambda *a, **k: pytest.fail("SASRec-ID retrained"))
    encoded = []
    real = ra_rec.RARec.encode_catalogue
    monkeypatch.setattr(ra_rec.RARec, "encode_catalogue",
                        lambda self: encoded.append(1) or real(self))
    adapter, ctx, dataset, split = smoke_fit("ra_rec", "cold_item", tiny_atomic, cache_dir)
    diag = adapter.diagnostics()
    assert diag["id_model"]["cached"] is True
    for name, p in reference.model.state_dict().items():  # the very same ID model
        torch.testing.assert_close(adapter.id_model.state_dict()[name], p)
    assert encoded == [1]  # the one validate() after the one epoch
    users = np.arange(dataset.n_users)
    batch = UserBatch(users, [split.train[u] for u in users])
    first, second = adapter.score(batch), adapter.score(batch)
    assert encoded == [1], "the item tower is encoded once and reused"
    assert first.shape == (dataset.n_users, dataset.n_items)
    assert torch.isfinite(first).all() and torch.equal(first, second)
    cold = split.cold_items
    assert len(cold) and scores_vary(first[:, cold])
    assert len(ctx.curve) == 1  # RA-Rec's own point; SASRec's are in the diagnostics
    sel = diag["selection"]
    assert sel["selection"] == "paper" and 0 < sel["selected"] <= 24
    assert diag["tuning"]["examples"] == sel["selected"]
    trainable, total = adapter.parameter_counts()
    assert trainable == diag["trainable_parameters"] == sum(
        p.numel() for p in adapter.align.parameters()) and total > trainable


def scores_vary(scores: torch.Tensor) -> bool:
    return bool(torch.isfinite(scores).all() and scores.std() > 0)


def test_random_selection_and_the_hard_variant_train_too(tiny_atomic, cache_dir):
    adapter, _, dataset, _ = smoke_fit("ra_rec_hard", "loo", tiny_atomic, cache_dir,
                                       selection="random")
    diag = adapter.diagnostics()
    assert diag["selection"]["selection"] == "random" and diag["prefix"]["id_tokens"] == 0
    assert adapter.align.id_map is None and diag["id_model"]["cached"] is False
    scores = adapter.score(UserBatch(np.arange(3), [np.array([0, 1]), np.array([]), np.array([2])]))
    assert scores.shape == (3, dataset.n_items) and torch.isfinite(scores).all()


def test_bfloat16_runs_every_frozen_lm_pass_and_keys_only_a_non_default_precision(
        tiny_atomic, cache_dir):
    """Under bfloat16 the LM's Linear weights are cast once, so a pass outside autocast would
    fail: fitting and scoring must all run under it. float32 is not part of the checkpoint
    key (checkpoints from before the setting stay valid); bfloat16 is."""
    adapter, ctx, dataset, _ = smoke_fit("ra_rec_hard", "loo", tiny_atomic, cache_dir,
                                         precision="bfloat16")
    assert adapter.lm.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    assert adapter.lm.model.embed_tokens.weight.dtype == torch.float32
    assert adapter.diagnostics()["tuning"]["cached"] is False
    scores = adapter.score(UserBatch(np.arange(2), [np.array([0, 1]), np.array([2])]))
    assert scores.dtype == torch.float32 and torch.isfinite(scores).all()
    f32, _, _, _ = smoke_fit("ra_rec_hard", "loo", tiny_atomic, cache_dir)
    assert f32.diagnostics()["tuning"]["cached"] is False  # not the bfloat16 checkpoint
    assert f32.lm.model.layers[0].self_attn.q_proj.weight.dtype == torch.float32
    with pytest.raises(ValueError, match="precision"):
        ra_rec.RARec.Config(precision="float16")


# ------------------------------------------------------------------------------ configs


def test_hard_variant_is_ra_rec_without_the_id_prompt():
    assert registry.method_yaml("ra_rec_hard") == {**registry.method_yaml("ra_rec"),
                                                   "id_prompt": False}


@pytest.mark.parametrize("dataset", ["ml-100k", "amazon-scientific"])
def test_the_id_model_is_configured_as_sasrec_id(dataset):
    sasrec_keys = [f.name for f in SASRecConfig.__dataclass_fields__.values()]
    for method in ("ra_rec", "ra_rec_hard"):
        for profile in ("smoke", "default", "gpu", "paper"):
            _, ours = runner.resolve_config(method, profile, {}, dataset)
            _, ref = runner.resolve_config("sasrec_id", profile, {}, dataset)
            assert {k: getattr(ours, k) for k in sasrec_keys} == \
                {k: getattr(ref, k) for k in sasrec_keys}, (method, profile)
            assert ours.id_soft_tokens == (0 if method == "ra_rec_hard" else ours.id_tokens)


def test_smoke_run_through_the_cli(tiny_atomic, tmp_path, cache_dir, capsys):
    import json

    from benchmark.cli import main

    out = tmp_path / "results"
    code = main(["--methods", "ra_rec", "--dataset", str(tiny_atomic), "--profile", "smoke",
                 "--results-dir", str(out), "--cache-dir", str(cache_dir), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    for protocol in ("loo", "cold_item"):
        result = json.loads((out / "tiny" / protocol / "ra_rec" / "seed0.json").read_text())
        diag = result["diagnostics"]
        assert diag["selection"]["selected"] == diag["tuning"]["examples"] > 0
        assert "dropped_by_denoising" in diag["selection"] and diag["trainable_parameters"] > 0
        assert result["metrics"]["all"]["all"]["HR@100"]["mean"] >= 0
    assert "### ra_rec" in (out / "REPORT-details.md").read_text()  # its diagnostics
