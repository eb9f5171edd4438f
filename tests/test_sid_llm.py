"""SID-LLM: vocabulary extension, trie decoding, training, and the recommend command.

Everything runs on a tiny random Llama (benchmark.models.llm.tiny_random_lm) except one slow test that
loads the packaged SmolLM2 once per session. Semantic IDs are random codes of the real shape
(last column = disambiguation), so these tests do not depend on the semantic-ID builder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from adapters.sid_llm import SIDLLM
from benchmark.adapter import RunContext, TrainData, UserBatch
from benchmark.cache import Cache
from benchmark.data import ItemCatalog
from benchmark.models.llm import tiny_random_lm
from benchmark.models.sid_lm import (
    SIDTrie,
    SIDVocab,
    constrained_beam_search,
    greedy,
    inference_weights,
    shared_prefix,
)

torch.set_num_threads(1)  # tiny models: threads only add contention on a shared CPU


def random_codes(n_items: int, sizes=(4, 4, 4), seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Random 3-level codes plus a disambiguation column that makes every row unique."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, sizes, (n_items, len(sizes)))
    dis = np.zeros(n_items, dtype=np.int64)
    seen: dict[tuple, int] = {}
    for i, row in enumerate(map(tuple, base)):
        dis[i] = seen.get(row, 0)
        seen[row] = dis[i] + 1
    return np.column_stack([base, dis]), [*sizes, int(dis.max()) + 1]


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model, tok = tiny_random_lm(seed=0)
    codes, sizes = random_codes(40)
    vocab = SIDVocab(codes, sizes)
    vocab.extend(tok, model, seed=0)
    return model.eval(), tok, vocab


def test_extend_creates_its_rows_on_the_models_device():
    """The device-mismatch class of bug (a CPU tensor added to GPU rows) without a GPU: on the
    `meta` device every operation with a CPU tensor fails the same way."""
    model, tok = tiny_random_lm(seed=0)
    model = model.to("meta")
    codes, sizes = random_codes(10)
    SIDVocab(codes, sizes).extend(tok, model, seed=0)
    assert model.get_input_embeddings().weight.device.type == "meta"


def test_sid_strings_round_trip_through_the_tokenizer(tiny):
    _, tok, vocab = tiny
    text = f"History: {vocab.item_text(3)}{vocab.item_text(17)} next"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    sid_ids = [i for i in ids if i in set(vocab.new_ids)]
    expected = [vocab.start_id, *[int(vocab.level_token_ids[lv][c])
                                  for lv, c in enumerate(vocab.codes[3])], vocab.end_id]
    assert sid_ids[:6] == expected  # one token per level, no sub-word splits
    assert len(sid_ids) == 12
    assert tok.decode(ids) == text
    assert vocab.parse(tok.decode(ids)) == [3, 17]


def test_resized_model_scores_the_new_tokens_with_average_rows(tiny):
    model, tok, vocab = tiny
    logits = model(torch.tensor([[vocab.start_id, vocab.new_ids[5]]])).logits
    assert logits.shape[-1] == len(tok) and max(vocab.new_ids) == len(tok) - 1
    emb = model.get_input_embeddings().weight.detach()
    old, new = emb[: min(vocab.new_ids)], emb[vocab.new_ids]
    # mean of the old rows plus small noise: closer to the mean than any typical old row
    dist_new = (new - old.mean(0)).norm(dim=1).mean()
    dist_old = (old - old.mean(0)).norm(dim=1).mean()
    assert dist_new < 0.2 * dist_old
    assert torch.unique(new, dim=0).shape[0] == len(vocab.new_ids)


def _decode(model, tok, vocab, codes, excluded, k, width=8):
    trie = SIDTrie(codes, vocab.level_sizes)
    prompts = [[5, 6, 7], [8], [9, 10, 11, 12]][: len(excluded)]
    return constrained_beam_search(model, prompts, excluded, trie, vocab, width=width, k=k,
                                   pad=tok.pad_token_id)


def test_constrained_decoding_emits_only_real_unseen_items(tiny):
    model, tok, vocab = tiny
    excluded = [np.array([0, 1, 2, 3, 4]), np.zeros(0, np.int64), np.arange(0, 40, 2)]
    items, scores = _decode(model, tok, vocab, vocab.codes, excluded, k=12)
    for row, ex in zip(items, excluded):
        real = row[row >= 0]
        assert len(real) == 12 and len(set(real.tolist())) == 12  # full lists, no duplicates
        assert not set(real.tolist()) & set(ex.tolist())  # history items never emitted
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    again, _ = _decode(model, tok, vocab, vocab.codes, excluded, k=12)
    np.testing.assert_array_equal(items, again)  # deterministic


def test_constrained_decoding_with_a_single_branch_and_exhausted_trie(tiny):
    model, tok, vocab = tiny
    # Items 0-2 share every code but the disambiguation one: a single-branch trie.
    codes = np.array([[1, 2, 3, 0], [1, 2, 3, 1], [1, 2, 3, 2]])
    small = SIDVocab(codes, vocab.level_sizes[:3] + [3])
    small.bind(tok)
    trie = SIDTrie(codes, small.level_sizes)
    items, _ = constrained_beam_search(model, [[5], [6]], [np.array([1]), np.array([0, 1, 2])],
                                       trie, small, width=5, k=4, pad=tok.pad_token_id)
    assert sorted(items[0][items[0] >= 0].tolist()) == [0, 2] and items[0][2:].tolist() == [-1, -1]
    assert items[1].tolist() == [-1, -1, -1, -1]  # everything seen: nothing to recommend


def _exhaustive(model, prompt, excluded, codes, vocab):
    """Every unseen item's constrained log-probability from one plain forward pass each:
    at each level, log-softmax over the codes that still lead to an unseen item."""
    alive = np.setdiff1d(np.arange(len(codes)), excluded)
    out = {}
    for i in alive:
        codes_i = codes[i]
        seq = prompt + [vocab.start_id] + [int(vocab.level_token_ids[lv][c])
                                           for lv, c in enumerate(codes_i[:-1])]
        with torch.no_grad():
            logits = model(torch.tensor([seq])).logits[0, -len(codes_i):].float()
        total = 0.0
        for lv, c in enumerate(codes_i):
            same = alive[(codes[alive, :lv] == codes_i[:lv]).all(1)]
            allowed = np.unique(codes[same, lv])
            lp = torch.log_softmax(logits[lv, vocab.level_token_ids[lv][allowed]], dim=-1)
            total += float(lp[np.searchsorted(allowed, c)])
        out[int(i)] = total
    return out


def _trained_peft(model, vocab):
    """A peft model whose LoRA and trained token rows are away from their (no-op) start."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(
        r=4, target_modules=["q_proj", "v_proj", "up_proj"],
        trainable_token_indices={"embed_tokens": vocab.new_ids}))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name:
                p.add_(0.5 * torch.randn_like(p))
    return peft_model.eval()


@pytest.mark.parametrize("prompts", [[[5, 6, 7, 8, 9, 10], [11], [12, 13, 14]],
                                     [[3, 4, 5, 6, 7, 8, 9, 10], [3, 4, 5, 11], [3, 4, 5, 12, 13]]],
                         ids=["no shared prefix", "shared prefix"])
def test_tree_beam_search_is_exact_when_the_beam_holds_every_item(tiny, prompts):
    """A beam as wide as the catalogue makes beam search exhaustive, so its lists and scores
    must equal plain teacher-forced scoring: this pins the shared-cache tree attention (masks,
    positions, left padding), the prompts' shared prefix computed once (padding between it and
    each prompt's own tokens), the level-restricted head and the last-level skipping, on a peft
    model whose LoRA and trained token rows are not at their (no-op) initial values."""
    model, tok, vocab = tiny
    peft_model = _trained_peft(model, vocab)
    excluded = [np.array([0, 1, 2, 3, 4]), np.zeros(0, np.int64), np.arange(0, 40, 3)]
    trie = SIDTrie(vocab.codes, vocab.level_sizes)
    items, scores = constrained_beam_search(peft_model, prompts, excluded, trie, vocab,
                                            width=64, k=10, pad=tok.pad_token_id)
    for row, (prompt, ex) in enumerate(zip(prompts, excluded)):
        exact = _exhaustive(peft_model, prompt, ex, vocab.codes, vocab)
        best = sorted(exact, key=lambda i: -exact[i])[:10]
        assert items[row].tolist() == best
        np.testing.assert_allclose(scores[row], [exact[i] for i in best], atol=1e-4)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_inference_weights_change_no_output_and_restore_every_weight(tiny, precision):
    """Merging the trained token rows (and, under bfloat16, the LoRA updates) and casting Linear
    weights once: under float32 bit-identical rankings and generations to the per-call path;
    under bfloat16 the LoRA update is rounded into the weight (each merged weight is
    bf16(W + B A scale)), so scores agree with the per-call path to bfloat16 rounding only. The
    (tied) embedding stays float32, and every parameter is left as it was, also after an
    error."""
    from peft.tuners.lora import LoraLayer
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    from benchmark.models.llm import compute_precision

    model, tok, vocab = tiny
    peft_model = _trained_peft(model, vocab)
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    prompts = [[3, 4, 5, 6, 7], [3, 4, 9], [11, 12, 13, 14]]
    excluded = [np.array([0, 1]), np.zeros(0, np.int64), np.arange(0, 40, 5)]
    trie = SIDTrie(vocab.codes, vocab.level_sizes)

    def outputs():
        with compute_precision("cpu", precision):
            items, scores = constrained_beam_search(peft_model, prompts, excluded, trie, vocab,
                                                    width=8, k=6, pad=tok.pad_token_id)
            text = greedy(peft_model, prompts, 6, tok.pad_token_id, tok.eos_token_id)
        return items, scores, text

    plain = outputs()
    layers = [m for m in peft_model.modules() if isinstance(m, TrainableTokensLayer)]
    loras = [m for m in peft_model.modules() if isinstance(m, LoraLayer)]
    q = peft_model.get_base_model().model.layers[0].self_attn.q_proj
    merged_q = (q.base_layer.weight + q.get_delta_weight("default")).detach()
    with inference_weights(peft_model, precision):
        assert layers and all(m.merged for m in layers)
        assert q.base_layer.weight.dtype == getattr(torch, precision)
        assert peft_model.get_base_model().lm_head.weight.dtype == torch.float32  # tied
        assert all(m.merged for m in loras) == (precision == "bfloat16") and loras
        if precision == "bfloat16":
            assert torch.equal(q.base_layer.weight, merged_q.to(torch.bfloat16))
        fast = outputs()
    if precision == "float32":
        np.testing.assert_array_equal(fast[0], plain[0])
        np.testing.assert_array_equal(fast[1], plain[1])
        assert fast[2] == plain[2]
    else:
        np.testing.assert_allclose(fast[1], plain[1], atol=0.1)

    with pytest.raises(RuntimeError, match="boom"), inference_weights(peft_model, precision):
        raise RuntimeError("boom")
    assert not any(m.merged for m in layers) and not any(m.merged for m in loras)
    for name, p in peft_model.named_parameters():
        assert p.dtype == torch.float32 and torch.equal(p, before[name]), name


def test_bfloat16_training_with_frozen_weights_cast_once_equals_autocast_alone(tiny):
    """frozen_precision casts the frozen Linear weights once per block instead of autocast
    casting them per call: the trained rows and LoRA weights must come out bit-identical, and
    every frozen weight float32 again after the block."""
    import copy

    from benchmark.models.llm import compute_precision, frozen_precision
    from benchmark.models.sid_lm import Example, train_steps

    model, tok, vocab = tiny
    examples = [Example([3, 4, 5, 6 + i % 5], [int(vocab.new_ids[2 + i % 7]), tok.eos_token_id])
                for i in range(12)]
    trained = []
    for block in (lambda m: compute_precision("cpu", "bfloat16"),
                  lambda m: frozen_precision(m, "cpu", "bfloat16")):
        torch.manual_seed(0)  # LoRA's A matrices start from the global RNG
        peft_model = _trained_peft(copy.deepcopy(model), vocab).train()
        with block(peft_model):
            train_steps(peft_model, examples, steps=3, batch_size=4, lr=1e-2,
                        pad=tok.pad_token_id, max_len=16, seed=0)
        trained.append({n: p.detach().clone() for n, p in peft_model.named_parameters()})
        assert all(p.dtype == torch.float32 for p in peft_model.parameters())
    assert trained[0].keys() == trained[1].keys()
    for name, value in trained[0].items():
        assert torch.equal(value, trained[1][name]), name
    moved = [n for n in trained[0] if "lora_" in n or "trainable_tokens" in n]
    assert moved  # (the trained parameters exist and are compared above)


def test_the_shared_prefix_leaves_every_prompt_a_token_of_its_own():
    assert shared_prefix([[1, 2, 3, 4], [1, 2, 3, 5, 6]]) == 3
    assert shared_prefix([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter keeps its last token
    assert shared_prefix([[1, 2], [2, 2]]) == 0
    assert shared_prefix([[7, 8, 9]]) == 2


# --------------------------------------------------------------------------- the adapter


def pattern_data(n_users=24, n_items=30, favourite=7, seed=0):
    """Every other interaction is the favourite item: the pattern a model can learn."""
    rng = np.random.default_rng(seed)
    others = [i for i in range(n_items) if i != favourite]
    seqs = []
    for _ in range(n_users):
        seq = []
        for _ in range(5):
            seq += [int(rng.choice(others)), favourite]
        seqs.append(np.array(seq, dtype=np.int64))
    genres = ["Action", "Comedy", "Drama"]
    catalog = ItemCatalog([str(i) for i in range(n_items)],
                          [{"title": f"Film {i}", "year": str(1990 + i % 7),
                            "genres": genres[i % 3]} for i in range(n_items)],
                          [(genres[i % 3],) for i in range(n_items)])
    counts = np.bincount(np.concatenate(seqs), minlength=n_items)
    return TrainData(n_items, seqs, catalog, counts)


def tiny_config(**changes):
    cfg = SIDLLM.Config(backbone="tiny:random", history_items=3, max_len=96, stage1_steps=4,
                        stage1_batch=8, stage1_lr=0.01, stage2_steps=40, stage2_batch=8,
                        stage2_lr=0.01, lora_r=4, lora_alpha=8, steer_users=4, steer_genres=2,
                        roundtrip_items=4, invalid_sample=4, eval_batch=16, explain_users=4,
                        explain_max_new=8)
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


@pytest.fixture
def random_sids(monkeypatch):
    monkeypatch.setattr(SIDLLM, "_semantic_ids",
                        lambda self, train, ctx: random_codes(train.n_items, seed=1))


def fit(cfg, train, tmp_path, seed=0):
    torch.manual_seed(seed)
    ctx = RunContext(seed=seed, device="cpu", cache=Cache(tmp_path / "cache"),
                     protocol="loo", catalog_hash="cat", train_hash="train",
                     show_progress=False)
    adapter = SIDLLM(cfg)
    adapter.fit(train, lambda: 0.0, ctx)
    return adapter, ctx


def test_trained_tiny_model_ranks_the_pattern_item_above_chance(random_sids, tmp_path):
    train = pattern_data()
    adapter, ctx = fit(tiny_config(), train, tmp_path)
    histories = [np.array([i]) for i in range(30) if i != 7]
    lists = adapter.rank(UserBatch(np.arange(len(histories)), histories), 10).numpy()
    hit = (lists == 7).any(axis=1).mean()
    assert hit > 0.9  # chance: 10 of 29 candidates, about 0.34
    assert ctx.stop_reason == "step_cap"
    diag = adapter.diagnostics()
    assert {"stage1", "stage2", "roundtrip_after_stage1", "roundtrip_after_stage2",
            "invalid_id_rate_unconstrained", "steerability"} <= set(diag)
    assert set(diag["steerability"]["genres"]) == {"Action", "Comedy"}
    # the explanations are the model's, measured beside the count-based baseline
    explained = diag["explanations"]
    assert explained["users"] == 4 and explained["model"]["n"] == 4
    assert explained["count_based"]["n"] == 4 and len(explained["examples"]) == 4
    ceiling = explained["model"]["facts_with_history"]  # the share of picks whose facts link
    assert ceiling == explained["count_based"]["facts_with_history"] and 0 <= ceiling <= 1
    assert {"facts", "explanation", "baseline"} <= set(explained["examples"][0])


def test_stage1_trains_only_new_rows_and_checkpoints_are_reused(random_sids, tmp_path):
    train = pattern_data()
    cfg = tiny_config(stage2_steps=2)
    adapter, _ = fit(cfg, train, tmp_path)
    base, _ = tiny_random_lm(seed=0)
    emb = adapter.model.get_input_embeddings()
    weights = emb.weight if hasattr(emb, "weight") else emb.base_layer.weight
    n_old = base.get_input_embeddings().weight.shape[0]
    # peft keeps the original rows untouched and holds the new ones as a trained delta
    assert torch.equal(weights[:n_old], base.get_input_embeddings().weight)
    ckpts = list((tmp_path / "cache" / "sid_llm").glob("*.pt"))
    assert len(ckpts) == 2  # stage 1 and stage 2
    for path in ckpts:
        names = torch.load(path, weights_only=False)["state"]["weights"].keys()
        assert all("trainable_tokens" in n or "lora_" in n for n in names)
    first = adapter.rank(UserBatch(np.arange(3), [np.array([1]), np.array([2, 3]),
                                                  np.zeros(0, np.int64)]), 5)
    again, _ = fit(cfg, train, tmp_path)  # a cache hit: same weights, same lists
    second = again.rank(UserBatch(np.arange(3), [np.array([1]), np.array([2, 3]),
                                                 np.zeros(0, np.int64)]), 5)
    assert torch.equal(first, second)


def test_a_trained_model_is_ranked_at_another_precision_without_retraining(random_sids,
                                                                          tmp_path):
    """Without stage-2 validation the ranking precision does not enter the stage-2 checkpoint
    (one trained model, ranked at both precisions); with validation it does, since the
    validation ranking picks the kept state."""
    train = pattern_data()
    fit(tiny_config(stage2_steps=2, steer_users=0), train, tmp_path)
    fit(tiny_config(stage2_steps=2, steer_users=0, precision="bfloat16", explain_users=2),
        train, tmp_path)
    assert len(list((tmp_path / "cache" / "sid_llm").glob("*.pt"))) == 2  # stages 1 and 2
    validated = {"validate_every": 1, "stage2_steps": 2, "steer_users": 0}
    fit(tiny_config(**validated), train, tmp_path)
    fit(tiny_config(**validated, precision="bfloat16"), train, tmp_path)
    assert len(list((tmp_path / "cache" / "sid_llm").glob("*.pt"))) == 4
    # the training precision is part of both stages' keys (float32 by its absence)
    assert "train_precision" not in SIDLLM(tiny_config())._stage1_config()
    fit(tiny_config(stage2_steps=2, steer_users=0, train_precision="bfloat16"), train, tmp_path)
    assert len(list((tmp_path / "cache" / "sid_llm").glob("*.pt"))) == 6


def test_training_does_not_depend_on_the_global_rng_state_left_by_earlier_work(random_sids,
                                                                                 tmp_path):
    """Whatever ran before fit (e.g. a semantic-ID build on a cache miss) must not change the
    model: the same seed gives the same trained weights either way."""
    train, cfg = pattern_data(), tiny_config(stage2_steps=2)
    states = []
    for run, draws in enumerate([0, 1000]):
        torch.manual_seed(0)
        torch.rand(draws)  # earlier work consumed the RNG (or did not)
        ctx = RunContext(seed=0, device="cpu",
                         cache=Cache(tmp_path / f"cache{run}"),
                         protocol="loo", catalog_hash="cat", train_hash="train",
                         show_progress=False)
        adapter = SIDLLM(cfg)
        adapter.fit(train, lambda: 0.0, ctx)
        states.append(adapter._trainable_state())
    assert states[0].keys() == states[1].keys() and any("lora_A" in n for n in states[0])
    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name]), name


def test_validation_keeps_the_best_state_and_stops_early(random_sids, tmp_path):
    train = pattern_data()
    cfg = tiny_config(stage2_steps=12, validate_every=4, patience=1)
    scores = iter([0.5, 0.2, 0.9])  # the second chunk is worse: stop, restore the first
    states = []
    torch.manual_seed(0)
    ctx = RunContext(seed=0, device="cpu", cache=Cache(tmp_path / "cache"),
                     protocol="loo", catalog_hash="cat", train_hash="train",
                     show_progress=False)
    adapter = SIDLLM(cfg)

    def validate() -> float:
        states.append(adapter._trainable_state())
        ctx.add_point(next(scores))
        return ctx.curve[-1]["valid_ndcg10"]

    adapter.fit(train, validate, ctx)
    assert ctx.stop_reason == "early_stop" and len(states) == 2
    assert [p["valid_ndcg10"] for p in ctx.curve] == [0.5, 0.2]
    # examples: stage 1's, then 4 steps of stage 2 per validation
    stage1 = cfg.stage1_steps * cfg.stage1_batch
    assert [p["examples"] for p in ctx.curve] == [stage1 + 4 * cfg.stage2_batch,
                                                  stage1 + 8 * cfg.stage2_batch]
    now = adapter._trainable_state()
    assert all(torch.equal(now[n], states[0][n]) for n in now)


def test_full_fine_tuning_trains_the_backbone_too(random_sids, tmp_path):
    adapter, _ = fit(tiny_config(finetune="full", stage2_steps=2), pattern_data(), tmp_path)
    trainable = adapter._trainable_state()
    assert any("self_attn.q_proj.base_layer" in n for n in trainable)


def test_recommend_command_prints_real_titles(random_sids, tiny_atomic, cache_dir, capsys):
    from benchmark.cli import main

    code = main(["recommend", "--method", "sid_llm", "--user", "3", "--prompt",
                 "Something from the Comedy genre, please.", "--dataset", str(tiny_atomic),
                 "--profile", "smoke", "--cache-dir", str(cache_dir), "--no-progress", "-k", "5",
                 "--explain"])
    out = capsys.readouterr().out
    assert code == 0
    listed = [line for line in out.splitlines() if line.strip()[:3].strip(". ").isdigit()]
    assert len(listed) == 5
    titles = {f"Movie {i}" for i in range(1, 31)}
    for line in listed:
        title = line.split(".", 1)[1].split("<|sid_start|>")[0].strip()
        assert title in titles
    assert "Why:" in out


def test_chat_keeps_the_conversation_and_leaves_on_quit(random_sids, tiny_atomic, cache_dir):
    from benchmark import conversation, runner
    from benchmark.config import parse_overrides  # noqa: F401  (runner API check)
    from benchmark.settings import harness_settings

    req = runner.RunRequest(method="sid_llm", dataset=str(tiny_atomic), protocol="loo", seed=0,
                            profile="smoke", overrides={}, meta=None, cache_dir=cache_dir,
                            show_progress=False)
    settings = harness_settings("smoke")
    dataset, split = runner.prepare(req, settings)
    adapter, _, _ = runner.fit_adapter(req, settings, dataset, split)
    inputs = iter(["something like Movie 4", "why?", "tell me about Movie 4", "quit",
                   "never read"])
    lines: list[str] = []
    asked: list[list[int]] = []
    model_reason = adapter.explain
    adapter.explain = lambda h, items, p: asked.append(list(items)) or model_reason(h, items, p)
    conversation.chat(adapter, dataset, split, "3", lambda _: next(inputs), lines.append)
    text = "\n".join(lines)
    assert "Movie" in text and "Why:" in text
    # "why?" goes to the model's explanation of the five picks just listed
    assert len(asked) == 2 and len(asked[1]) == 5 and asked[0] == asked[1]
    # "tell me about <title>" answers with the item's ID and what the model writes for it
    movie4 = dataset.catalog.item_ids.index("4")
    assert adapter.vocab.item_text(movie4) + " is " in text
    assert next(inputs) == "never read"


def test_a_piped_chat_prints_as_a_transcript(random_sids, tiny_atomic, cache_dir, capsys,
                                             monkeypatch):
    """Piped input is echoed after each prompt, so the output reads as the README's transcript:
    the turns in order, each followed by the model's answer."""
    import io

    from benchmark.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("something like Movie 4\nwhy\nquit\n"))
    code = main(["chat", "--method", "sid_llm", "--user", "3", "--dataset", str(tiny_atomic),
                 "--profile", "smoke", "--cache-dir", str(cache_dir), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    turns = [line for line in out.splitlines() if line.startswith("> ")]
    assert turns == ["> something like Movie 4", "> why", "> quit"]
    after = out.split("> something like Movie 4\n", 1)[1]
    assert after.startswith("Here is what I would pick:\n1. Movie ")


def _film_catalog() -> ItemCatalog:
    films = [("M", "1931"), ("Movie 4", "1994"), ("Movie 40", "1995"), ("Jaws", "1975"),
             ("Heat", "1995"), ("In the Heat of the Night", "1967"), ("Ran", "1985"),
             ("Hamlet", "1948"), ("Hamlet", "1996"), ("Airplane!", "1980")]
    return ItemCatalog([str(i) for i in range(len(films))],
                       [{"title": t, "year": y} for t, y in films], [()] * len(films))


@pytest.mark.parametrize("message, named", [
    ("more movies, maybe a mystery from the museum", []),  # "m" is not the film "M"
    ("Have you seen M?", []),  # a bare title under 4 characters is a word, not a title
    ("I liked m (1931) a lot", ["M"]),  # ... but is named with its year
    ("i ran out of ideas", []),
    ("Ran (1985), then", ["Ran"]),
    ("something like Movie 40", ["Movie 40"]),  # not "Movie 4" too
    ("movie 4 and MOVIE   40", ["Movie 4", "Movie 40"]),  # case and spaces; in message order
    ("jaws! and heat.", ["Jaws", "Heat"]),
    ("Jawsome heated debates", []),  # whole words only
    ("In the Heat of the Night", ["In the Heat of the Night"]),  # not "Heat" inside it
    ("hamlet", ["Hamlet", "Hamlet"]),  # both films of that title
    ("Hamlet (1996)", ["Hamlet"]),  # the year picks one
    ("Airplane! again", ["Airplane!"]),
])
def test_chat_title_matching_takes_whole_titles_only(message, named):
    from adapters.sid_llm_diagnostics import _titles_in

    catalog = _film_catalog()
    found = _titles_in(catalog, message)
    assert [catalog.title(i) for i in found] == named
    if message == "Hamlet (1996)":
        assert found == [8]


def test_chat_history_is_unchanged_by_a_message_that_names_no_title():
    from types import SimpleNamespace

    from adapters.sid_llm_diagnostics import respond

    contexts = []

    def recommend_for(context, request, k):
        contexts.append(context.tolist())
        return [1]

    vocab = SimpleNamespace(parse=lambda text: [], item_text=lambda i: "")
    adapter = SimpleNamespace(catalog=_film_catalog(), vocab=vocab, recommend_for=recommend_for,
                              explain=lambda history, items, request: "")
    history = np.array([3, 4], dtype=np.int64)
    respond(adapter, [{"role": "user", "content": "More films for a Monday, please"}], history)
    respond(adapter, [{"role": "user", "content": "Something like M (1931)"}], history)
    assert contexts == [[3, 4], [3, 4, 0]]


@pytest.mark.slow
def test_packaged_backbone_round_trips_sid_tokens():
    from benchmark.models.llm import load_causal_lm

    model, tok = load_causal_lm("packaged:smollm2")
    codes, sizes = random_codes(20)
    vocab = SIDVocab(codes, sizes)
    vocab.extend(tok, model)
    text = "Like " + vocab.item_text(4) + " and " + vocab.item_text(9)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text and vocab.parse(text) == [4, 9]
    assert sum(i in set(vocab.new_ids) for i in ids) == 12
    assert model.dtype == torch.float32
    logits = model(torch.tensor([ids])).logits
    assert logits.shape[-1] == len(tok)


def test_text_initialised_rows_start_at_the_mean_title_embedding_of_their_items():
    from benchmark.models.sid_lm import Prompter  # noqa: F401  (the module under test)

    model, tok = tiny_random_lm(seed=0)
    codes, sizes = random_codes(12)
    titles = [f"Item number {i}" for i in range(12)]
    emb = model.get_input_embeddings().weight.detach().clone()
    vocab = SIDVocab(codes, sizes)
    vocab.extend(tok, model, noise=0.0, seed=0, titles=titles)
    rows = model.get_input_embeddings().weight.detach()
    level, code = 0, int(codes[0, 0])
    members = np.flatnonzero(codes[:, level] == code)
    ids = tok([titles[i] for i in members], add_special_tokens=False)["input_ids"]
    expected = torch.stack([emb[torch.tensor(x)].mean(0) for x in ids]).mean(0)
    token = int(vocab.level_token_ids[level][code])
    assert torch.allclose(rows[token], expected, atol=1e-6)
    # start / end stay at the mean of the old rows; an unused code too
    assert torch.allclose(rows[vocab.start_id], emb.mean(0), atol=1e-6)
    unused = [c for c in range(sizes[1]) if not (codes[:, 1] == c).any()]
    if unused:
        assert torch.allclose(rows[int(vocab.level_token_ids[1][unused[0]])], emb.mean(0),
                              atol=1e-6)


def three_item_prompter_parts(titles: list[str], labels: list[tuple[str, ...]]):
    """(tokenizer, SID vocabulary, catalogue) of three items on a tiny random LM."""
    model, tok = tiny_random_lm(seed=0)
    codes, sizes = random_codes(3)
    vocab = SIDVocab(codes, sizes)
    vocab.extend(tok, model, seed=0)
    return tok, vocab, ItemCatalog(["a", "b", "c"], [{"title": t} for t in titles], labels)


def test_history_titles_and_the_steering_label_level_shape_the_prompt():
    from benchmark.models.sid_lm import Prompter

    tok, vocab, catalog = three_item_prompter_parts(
        ["Red Widget Deluxe Edition", "Blue Gadget", "Green Thing"],
        [("Lab", "Glassware"), ("Tools",), ("Lab", "Pipettes")])
    plain = tok.decode(Prompter(tok, vocab, catalog, 5).next_item(np.array([0, 1])))
    assert "Red" not in plain and vocab.item_text(0) in plain
    titled = tok.decode(Prompter(tok, vocab, catalog, 5, history_titles=2).next_item(
        np.array([0, 1])))
    assert f"Red Widget {vocab.item_text(0)}; Blue Gadget {vocab.item_text(1)}" in titled
    assert "Deluxe" not in titled
    first = Prompter(tok, vocab, catalog, 5, steer_label_level=0)
    assert first.steer_labels(0) == ("Lab",) and first.steer_labels(1) == ("Tools",)
    assert Prompter(tok, vocab, catalog, 5).steer_labels(0) == ("Lab", "Glassware")
    examples = first.next_item_examples([np.array([0, 2, 0, 2])], 20,
                                        np.random.default_rng(0), steer_share=1.0)
    requests = {tok.decode(e.prompt).split("Request: ")[1].split("\n")[0] for e in examples}
    assert requests == {"Lab"}  # never the second level


def test_the_request_task_asks_for_an_item_by_one_of_its_labels():
    """request_to_sid: the steering prompt with an empty history, one example per label of
    the item (a random one in stage 2's mix), answered by the item's SID; the item's own text
    never appears in the prompt. Off by default: the three original tasks only."""
    from benchmark.models.sid_lm import ALIGNMENT_TASKS, Prompter

    tok, vocab, catalog = three_item_prompter_parts(
        ["Red Widget", "Blue Gadget", "Green Thing"], [("Lab", "Glassware"), ("Tools",), ()])
    plain = Prompter(tok, vocab, catalog, 5)
    assert plain.tasks == ALIGNMENT_TASKS and len(plain.alignment_examples(np.arange(3))) == 9
    asked = Prompter(tok, vocab, catalog, 5, request_alignment=True,
                     steer_template="Something {genre}, please.")
    examples = asked.alignment_examples(np.arange(3))
    assert len(examples) == 9 + 3  # two labels, one label, none
    requests = [e for e in examples if "Request:" in tok.decode(e.prompt)]
    decoded = [(tok.decode(e.prompt), tok.decode(e.target)) for e in requests]
    assert [p.split("Request: ")[1].split("\n")[0] for p, _ in decoded] == [
        "Something Lab, please.", "Something Glassware, please.", "Something Tools, please."]
    assert all("History: (none)" in p for p, _ in decoded)
    assert [t.split("<|sid_end|>")[0] + "<|sid_end|>" for _, t in decoded] == [
        vocab.item_text(0), vocab.item_text(0), vocab.item_text(1)]
    assert not any(w in p for p, _ in decoded for w in ("Red", "Widget", "Blue", "Gadget"))
    # stage 2's mix: one random task per item; an unlabelled item asked by request gets the
    # title task instead
    mixed = asked.alignment_examples(np.full(200, 2), np.random.default_rng(0))
    assert len(mixed) == 200 and not any("Request:" in tok.decode(e.prompt) for e in mixed)
    assert any('ID of "Green Thing"' in tok.decode(e.prompt) for e in mixed)
    mixed = asked.alignment_examples(np.zeros(400, dtype=np.int64), np.random.default_rng(0))
    shown = {tok.decode(e.prompt).split("Request: ")[1].split("\n")[0] for e in mixed
             if "Request:" in tok.decode(e.prompt)}
    assert shown == {"Something Lab, please.", "Something Glassware, please."}


def test_the_request_task_enters_stage_1_and_its_cache_key(random_sids, tmp_path):
    train = pattern_data()
    adapter, _ = fit(tiny_config(request_alignment=True, stage2_steps=4), train, tmp_path)
    key = adapter._stage1_config()
    assert key["request_alignment"] is True and key["steer_template"] == adapter.config.steer_template
    assert "request_to_sid" in adapter.prompter.tasks
    assert "request_alignment" not in SIDLLM(tiny_config())._stage1_config()


def test_the_sample_efficiency_levers_train_and_rank(random_sids, tmp_path):
    """Text-initialised rows, titles in the history and first-level steering, end to end."""
    train = pattern_data()
    adapter, _ = fit(tiny_config(init_rows="text", history_titles=2, steer_label_level=0,
                                 stage2_steps=10), train, tmp_path)
    lists = adapter.rank(UserBatch(np.arange(3), [np.array([1]), np.array([2]),
                                                  np.array([3])]), 5).numpy()
    assert lists.shape == (3, 5) and (lists >= 0).all()
    assert set(adapter.diagnostics()["steerability"]["genres"]) == {"Action", "Comedy"}
    # the text initialisation is part of stage 1's cache key: a noise-initialised run trains anew
    assert adapter._stage1_config()["init_rows"] == "text"


def test_code_rows_start_from_the_chosen_text():
    """`text` reads titles; `item_text` reads every text field's value, genres included, so a
    genre word in a request has embedding rows to match; `noise` reads none."""
    catalog = pattern_data().catalog
    texts = {}
    for mode in ("noise", "text", "item_text"):
        adapter = SIDLLM(tiny_config(init_rows=mode))
        adapter.catalog = catalog
        texts[mode] = adapter._init_texts()
    assert texts["noise"] is None
    assert texts["text"][4] == "Film 4"
    assert texts["item_text"][4] == "Film 4 1994 Comedy"


def test_the_attribute_task_asks_for_the_configured_fields():
    from benchmark.models.sid_lm import Prompter

    model, tok = tiny_random_lm(seed=0)
    codes, sizes = random_codes(1)
    vocab = SIDVocab(codes, sizes)
    vocab.extend(tok, model, seed=0)
    catalog = ItemCatalog(["a"], [{"title": "Beaker", "brand": "Pyrex", "categories": "Lab",
                                   "description": "A long text " * 20}], [("Lab",)])
    default = Prompter(tok, vocab, catalog, 5).sid_to_attributes(0)
    assert tok.decode(default.target).startswith("brand: Pyrex; categories: Lab; description:")
    assert "Genres and year of" in tok.decode(default.prompt)
    short = Prompter(tok, vocab, catalog, 5, attribute_fields=["brand", "categories"],
                     attribute_question="Brand and categories of {sid}?").sid_to_attributes(0)
    assert tok.decode(short.target).startswith("brand: Pyrex; categories: Lab")
    assert "description" not in tok.decode(short.target)
    assert f"Brand and categories of {vocab.item_text(0)}?" in tok.decode(short.prompt)
    with pytest.raises(ValueError, match="{sid}"):
        SIDLLM.Config(attribute_question="Tell me")


def test_stage2_trained_in_parts_equals_one_pass(random_sids, tmp_path):
    """Validation between parts of stage 2 must not restart the optimiser or the schedule:
    with a validate() that never improves after the last part, the weights equal the
    uninterrupted run's."""
    train = pattern_data()
    one, _ = fit(tiny_config(stage2_steps=12), train, tmp_path / "a")
    cfg = tiny_config(stage2_steps=12, validate_every=4, patience=5)
    scores = iter([0.1, 0.2, 0.3])  # rising: the last part's state is kept
    torch.manual_seed(0)
    ctx = RunContext(seed=0, device="cpu", cache=Cache(tmp_path / "b"), protocol="loo",
                     catalog_hash="cat", train_hash="train", show_progress=False)
    parts = SIDLLM(cfg)
    parts.fit(train, lambda: next(scores), ctx)
    a, b = one._trainable_state(), parts._trainable_state()
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


def test_validate_cases_asks_the_harness_for_a_sample(random_sids, tmp_path):
    cfg = tiny_config(stage2_steps=8, validate_every=4, validate_cases=5)
    asked = []
    ctx = RunContext(seed=0, device="cpu", cache=Cache(tmp_path / "c"), protocol="loo",
                     catalog_hash="cat", train_hash="train", show_progress=False)
    SIDLLM(cfg).fit(pattern_data(), lambda cases=None: asked.append(cases) or 0.1, ctx)
    assert asked == [5, 5]


def test_the_throughput_tool_times_both_steps_on_a_tiny_model(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "t.json"
    subprocess.run([sys.executable, "tools/llm_step_throughput.py", "--backbone", "tiny:random",
                    "--steps", "1", "--rounds", "1", "--threads", "1", "--out", str(out)],
                   check=True, capture_output=True, cwd=Path(__file__).resolve().parents[1])
    got = json.loads(out.read_text())
    assert got["ours_tokens_per_s"] > 0 and got["bare_tokens_per_s"] > 0
    assert got["ratio_ours_over_bare"] == pytest.approx(
        got["ours_tokens_per_s"] / got["bare_tokens_per_s"], rel=1e-2)


def test_bfloat16_compute_ranks_real_unseen_items(random_sids, tmp_path):
    train = pattern_data()
    adapter, _ = fit(tiny_config(stage2_steps=4, precision="bfloat16",
                                 train_precision="bfloat16", steer_users=0, explain_users=0),
                     train, tmp_path)
    histories = [np.array([i, i + 1]) for i in range(5)]
    lists = adapter.rank(UserBatch(np.arange(5), histories), 6).numpy()
    for row, hist in zip(lists, histories, strict=True):
        assert len(set(row.tolist())) == 6 and not set(row.tolist()) & set(hist.tolist())
        assert ((row >= 0) & (row < train.n_items)).all()
    with pytest.raises(ValueError, match="precision"):
        tiny_config(precision="float16").__post_init__()


def test_the_precision_tool_times_both_precisions_on_a_tiny_model(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "p.json"
    subprocess.run([sys.executable, "tools/llm_precision.py", "--backbone", "tiny:random",
                    "--steps", "1", "--rounds", "1", "--users", "2", "--items", "50",
                    "--threads", "1", "--out", str(out)],
                   check=True, capture_output=True, cwd=Path(__file__).resolve().parents[1])
    got = json.loads(out.read_text())
    for precision in ("float32", "bfloat16"):
        assert set(got[precision]) == {"train_tokens_per_s", "forward_tokens_per_s",
                                       "rank_seconds_per_user"}
        assert all(v > 0 for v in got[precision].values())
    assert got["bfloat16_speedup"]["rank_seconds_per_user"] == pytest.approx(
        got["float32"]["rank_seconds_per_user"] / got["bfloat16"]["rank_seconds_per_user"],
        rel=0.05)


@pytest.mark.parametrize("tool", ["sid_llm_precision", "sid_llm_train_precision"])
def test_the_trained_model_precision_tools_run_on_the_smoke_profile(tool, tiny_atomic,
                                                                     tmp_path):
    """Both tools fit the method as the benchmark does and rank validation cases: the ranking
    tool one model at both precisions, the training tool a model per training precision."""
    import subprocess
    import sys

    out = tmp_path / "p.json"
    subprocess.run([sys.executable, f"tools/{tool}.py", "--profile", "smoke",
                    "--dataset", str(tiny_atomic), "--cache-dir", str(tmp_path / "cache"),
                    "--threads", "1", "--cases", "6", "--out", str(out)],
                   check=True, capture_output=True, cwd=Path(__file__).resolve().parents[1])
    got = json.loads(out.read_text())
    assert got["validation_cases"] == 6
    diff = got["bfloat16_minus_float32_ndcg10"]
    assert diff["ci95"][0] <= diff["mean"] <= diff["ci95"][1]
    for precision in ("float32", "bfloat16"):
        assert 0 <= got[precision]["validation_ndcg10"] <= 1
    if tool == "sid_llm_train_precision":
        assert got["float32"]["stage2"]["tokens_per_s"] > 0
        assert got["bfloat16"]["stage2"]["tokens_per_s"] > 0
        assert got["fit_speedup"] > 0
    else:
        assert got["float32"]["seconds_per_user"] > 0 and got["speedup"] > 0


def test_greedy_takes_the_most_probable_allowed_token_where_a_hook_restricts(tiny):
    model, tok, _ = tiny
    prompts = [tok.encode("abc", add_special_tokens=False), tok.encode("hello", add_special_tokens=False)]
    free = greedy(model, prompts, 5, tok.pad_token_id, tok.eos_token_id)
    only = [tok.convert_tokens_to_ids("x"), tok.convert_tokens_to_ids("y")]
    calls = []

    def allowed(row, tokens):
        calls.append((row, len(tokens)))
        return only if row == 1 and len(tokens) >= 2 else None

    held = greedy(model, prompts, 5, tok.pad_token_id, tok.eos_token_id, allowed=allowed)
    assert held[0] == free[0]  # the free row decodes as without a hook
    assert held[1][:2] == free[1][:2] and set(held[1][2:]) <= set(only)
    assert (1, 0) in calls and (0, 4) in calls
