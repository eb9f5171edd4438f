"""SAID: item virtual tokens aligned with a frozen LM (stage 1), a frozen table under SASRec.

Everything runs on the tiny random Llama (benchmark.models.llm.tiny_random_lm); the MiniLM
variant's encoder is replaced by a fake one (the real encoder is tested in test_text_encoder).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import smoke_fit

import adapters.said as said
from benchmark import registry, runner
from benchmark.data import ItemCatalog
from benchmark.models.llm import tiny_random_lm
from benchmark.models.llm_alignment import (
    VIRTUAL,
    AlignmentPrompt,
    AlignmentSettings,
    VirtualTokens,
    batch_inputs,
    example_ids,
    target_ids,
    text_loss,
    train_alignment,
)
from benchmark.models.sasrec import SASRecConfig

TITLES = ["Toy Story", "GoldenEye", "Four Rooms", "Get Shorty"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny():
    model, tok = tiny_random_lm(seed=0)
    return model, tok, AlignmentPrompt.from_template(tok, "{item} Title:", 2)


def loss_matrix(model, tok, prompt, tokens, targets) -> np.ndarray:
    """[text i, tokens of item j]: per-token loss of text i read after item j's tokens."""
    n = len(targets)
    out = np.zeros((n, n))
    with torch.no_grad():
        for i in range(n):
            for j in range(n):
                loss, _ = text_loss(model, prompt, tokens(torch.tensor([j])), [targets[i]],
                                    tok.pad_token_id)
                out[i, j] = loss.item()
    return out


def test_stage1_lowers_the_text_loss_and_makes_it_item_specific(tiny):
    model, tok, prompt = tiny
    frozen = {n: p.clone() for n, p in model.named_parameters()}
    targets = [target_ids(tok, t, 12) for t in TITLES]
    torch.manual_seed(0)
    tokens = VirtualTokens(len(TITLES), 16, 2, model.get_input_embeddings().weight)
    before = loss_matrix(model, tok, prompt, tokens, targets)
    stats = train_alignment(model, tokens, prompt, targets, tok.pad_token_id,
                            AlignmentSettings(epochs=100, batch_size=4, lr=1e-2, item_lr=5e-2,
                                              seed=0))
    after = loss_matrix(model, tok, prompt, tokens, targets)
    own, other = np.diag(after), after[~np.eye(len(TITLES), dtype=bool)]
    # A random two-layer LM can only be steered a little; it is steered, per item.
    assert own.mean() < np.diag(before).mean() - 0.05
    assert own.mean() < other.mean() - 0.02
    assert stats["loss_last10"] < stats["loss_first10"] and stats["steps"] == 100
    for name, p in model.named_parameters():  # the LM stayed frozen
        assert torch.equal(p, frozen[name]), name
    # exported: one row per item, the mean of its k tokens (or all k side by side)
    assert tokens.export().shape == (len(TITLES), 64)
    assert tokens.export("concat").shape == (len(TITLES), 2 * 64)
    torch.testing.assert_close(tokens.export()[1], tokens(torch.tensor([1]))[0].mean(0))


def test_no_token_of_the_items_text_comes_before_the_first_labelled_position(tiny):
    model, tok, prompt = tiny
    texts = ["Zyx Qwv", "Heat"]  # no character of the first occurs in " Title:"
    targets = [target_ids(tok, t, 12) for t in texts]
    rows = [example_ids(prompt, t) for t in targets]
    starts = [next(j for j, y in enumerate(labels) if y != -100) for _, labels in rows]
    assert starts == [len(prompt.prefix_ids())] * 2
    prefixes = [ids[:start] for (ids, _), start in zip(rows, starts)]
    assert prefixes[0] == prefixes[1] == prompt.prefix_ids()  # the text does not change it
    assert prefixes[0].count(VIRTUAL) == 2
    text_ids = set(tok(" Zyx Qwv", add_special_tokens=False)["input_ids"]) - {
        tok(" ", add_special_tokens=False)["input_ids"][0]}
    assert not text_ids & set(prefixes[0])
    # What the LM reads up to there is the same whatever the text (same virtual tokens).
    virtual = torch.randn(1, 2, 64)
    embeds = [batch_inputs(model, prompt, virtual, [t], tok.pad_token_id)[0] for t in targets]
    start = starts[0]
    torch.testing.assert_close(embeds[0][:, :start], embeds[1][:, :start])
    torch.testing.assert_close(embeds[0][0, prompt.slots], virtual[0])


def test_long_texts_are_cut_and_short_ones_end_with_eos(tiny):
    _, tok, _ = tiny
    assert target_ids(tok, "abc", 8) == [*tok(" abc")["input_ids"], tok.eos_token_id]
    assert target_ids(tok, "abcdefghijkl", 8) == tok(" abcdefghijkl")["input_ids"][:8]
    catalog = ItemCatalog(["1"], [{"title": "Heat", "year": "1995", "genres": "Crime"}], [()])
    assert said.item_text(catalog, 0, ["title"]) == "Heat"
    assert said.item_text(catalog, 0, ["title", "genres"]) == "Heat; genres: Crime"


def fake_encode(texts, *args, **kwargs):
    """A deterministic stand-in for MiniLM: 8-d vectors from the text's characters."""
    return np.stack([np.bincount([ord(c) % 8 for c in t], minlength=8) for t in texts]
                    ).astype(np.float32) + 1e-3


@pytest.fixture
def no_minilm(monkeypatch):
    monkeypatch.setattr(said, "encode_texts", fake_encode)


def test_fit_scores_every_item_and_the_second_protocol_reuses_stage1(tiny_atomic, cache_dir,
                                                                      monkeypatch):
    calls = []
    real = said.train_alignment
    monkeypatch.setattr(said, "train_alignment",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    adapter, ctx, dataset, split = smoke_fit("said", "cold_item", tiny_atomic, cache_dir)
    from benchmark.adapter import UserBatch

    users = np.arange(dataset.n_users)
    scores = adapter.score(UserBatch(users, [split.train[u] for u in users]))
    assert scores.shape == (dataset.n_users, dataset.n_items)
    assert torch.isfinite(scores).all()
    cold = split.cold_items
    assert len(cold) and torch.isfinite(scores[:, cold]).all()
    assert scores[:, cold].std() > 0  # cold items are told apart by their text's embedding
    assert adapter.table.shape == (dataset.n_items, 64)  # one row per item, the LM's width
    diag = adapter.diagnostics()
    stage1 = diag["stage1"]
    assert {"loss_first10", "loss_last10", "greedy", "parameters"} <= set(stage1)
    assert 0 <= stage1["greedy"]["exact_match_rate"] <= 1 and stage1["greedy"]["items"] == 8
    assert stage1["parameters"]["total"] > stage1["parameters"]["trainable"] > 0
    trainable, total = adapter.parameter_counts()
    assert total == trainable + dataset.n_items * 64
    assert ctx.stop_reason in ("early_stop", "epoch_cap") and calls == [1]

    again, _, _, _ = smoke_fit("said", "loo", tiny_atomic, cache_dir)  # other training data
    assert calls == [1], "stage 1 depends on item text only: loaded, not retrained"
    assert again.diagnostics()["stage1"]["cached"] is True
    torch.testing.assert_close(again.table, adapter.table)


def test_bfloat16_stage1_runs_under_autocast_and_keys_only_a_non_default_precision(
        tiny_atomic, cache_dir, monkeypatch):
    """Under bfloat16 the frozen LM's Linear weights are cast once, so a stage-1 pass outside
    autocast would fail; the float32 key is the one from before the setting existed."""
    seen = []
    real = said.train_alignment
    monkeypatch.setattr(said, "train_alignment", lambda lm, *a, **k: seen.append(
        lm.model.layers[0].self_attn.q_proj.weight.dtype) or real(lm, *a, **k))
    adapter, _, _, _ = smoke_fit("said", "loo", tiny_atomic, cache_dir, precision="bfloat16")
    assert seen == [torch.bfloat16] and adapter.diagnostics()["stage1"]["cached"] is False
    assert adapter.table.dtype == torch.float32 and torch.isfinite(adapter.table).all()
    f32, _, _, _ = smoke_fit("said", "loo", tiny_atomic, cache_dir)
    assert seen == [torch.bfloat16, torch.float32]  # its own stage 1, not the bfloat16 one
    assert not torch.equal(f32.table, adapter.table)
    with pytest.raises(ValueError, match="precision"):
        said.SAID.Config(precision="float16")


def test_minilm_variant_is_said_with_the_sentence_embeddings_as_its_table(
        tiny_atomic, cache_dir, no_minilm, monkeypatch):
    ours, parent = registry.method_yaml("said_minilm"), registry.method_yaml("said")
    # the text side is said's; stage 2's optimiser keeps SASRec-ID's (said_minilm.yaml)
    for key in ("text_fields", "max_text_tokens", "text_model", "loss"):
        assert ours.get(key) == parent.get(key), key
    assert ours["table_source"] == "minilm" and parent["table_source"] == "llm"
    assert {**ours, "table_source": "llm", "patience": parent["patience"],
            "datasets": parent["datasets"]} == parent
    _, minilm = runner.resolve_config("said_minilm", "default", {}, "ml-100k")
    _, ref = runner.resolve_config("sasrec_id", "default", {}, "ml-100k")
    assert (minilm.lr, minilm.patience) == (ref.lr, ref.patience)
    monkeypatch.setattr(said, "train_alignment", lambda *a, **k: pytest.fail("no LM here"))
    adapter, _, dataset, _ = smoke_fit("said_minilm", "loo", tiny_atomic, cache_dir)
    texts = [dataset.catalog.title(i) for i in range(dataset.n_items)]
    torch.testing.assert_close(adapter.table, torch.as_tensor(fake_encode(texts)))
    assert adapter.diagnostics()["stage1"] == "none (no LLM alignment)"


@pytest.mark.parametrize("dataset", ["ml-100k", "amazon-scientific"])
def test_said_differs_from_sasrec_id_only_in_the_item_table_and_its_optimiser(dataset):
    """Stage 2's stopping rule and learning rate are SAID's own (configs/methods/said.yaml:
    its curve over a frozen table has long plateaus; the rate was chosen on validation); every
    other backbone setting is SASRec-ID's."""
    sasrec_keys = [f.name for f in SASRecConfig.__dataclass_fields__.values()
                   if f.name not in ("patience", "lr")]
    for profile in ("default", "gpu", "paper"):
        _, ours = runner.resolve_config("said", profile, {}, dataset)
        _, ref = runner.resolve_config("sasrec_id", profile, {}, dataset)
        assert {k: getattr(ours, k) for k in sasrec_keys} == \
            {k: getattr(ref, k) for k in sasrec_keys}, profile
        assert ours.patience > ref.patience, profile


def test_smoke_run_through_the_cli(tiny_atomic, tmp_path, cache_dir, no_minilm, capsys):
    from benchmark.cli import main

    out = tmp_path / "results"
    code = main(["--methods", "said,said_minilm", "--dataset", str(tiny_atomic), "--profile",
                 "smoke", "--results-dir", str(out), "--cache-dir", str(cache_dir),
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    for protocol in ("loo", "cold_item"):
        for method in ("said", "said_minilm"):
            result = json.loads((out / "tiny" / protocol / method / "seed0.json").read_text())
            assert result["diagnostics"]["table_source"] == result["config"]["table_source"]
            assert result["metrics"]["all"]["all"]["NDCG@10"]["mean"] >= 0
        stage1 = result_of(out, protocol, "said")["diagnostics"]["stage1"]
        assert stage1["steps"] > 0
        assert stage1["cached"] is (protocol == "cold_item")  # built by loo, then shared
    details = (out / "REPORT-details.md").read_text()  # the diagnostics
    assert "stage1.greedy.exact_match_rate" in details and "### said_minilm" in details


def result_of(out, protocol, method):
    return json.loads((out / "tiny" / protocol / method / "seed0.json").read_text())


def test_the_stage1_probe_trains_each_grid_point_and_picks_the_lowest_item_loss(tiny_atomic):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "said_stage1_probe.py"
    spec = importlib.util.spec_from_file_location("said_stage1_probe", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    grid = probe.parse_grid(["stage1_item_lr=0.02,0.5"])
    assert grid == [{"stage1_item_lr": 0.02}, {"stage1_item_lr": 0.5}]
    with pytest.raises(SystemExit, match="stage1_item_lr"):
        probe.parse_grid(["lr=0.1"])  # only stage 1's own learning rates may be probed
    record = probe.probe(str(tiny_atomic), grid, epochs=3, eval_items=6, seed=0,
                         backbone="tiny:random", device="cpu")
    rows = record["rows"]
    assert [r["settings"]["stage1_item_lr"] for r in rows] == [0.02, 0.5]
    assert all(r["steps"] > 0 for r in rows)
    # Every point starts from the same seeded tokens, so the loss before training is shared.
    assert rows[0]["loss_before"] == rows[1]["loss_before"]
    assert min(r["loss_after"] for r in rows) < rows[0]["loss_before"]
    assert record["chosen"] == min(rows, key=lambda r: r["loss_after"])["settings"]


def test_table_spectrum_counts_the_directions_the_items_spread_over():
    # Four items on two orthogonal axes, centred, unit rows: two equal directions.
    two = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    out = said.table_spectrum(two)
    assert out["effective_rank"] == pytest.approx(2.0)
    assert out["top1"] == pytest.approx(0.5) and out["top5"] == pytest.approx(1.0)
    assert out["s1_over_s50"] is None  # fewer than 50 directions
    # A shared offset is centred away, so items along one axis use one direction.
    one = torch.tensor([[3.0, 5.0], [1.0, 5.0], [2.0, 5.0]])
    assert said.table_spectrum(one)["effective_rank"] == pytest.approx(1.0)
    # 60 independent directions with singular values 60, 59, ..., 1: s1 / s50 = 60 / 11.
    scale = torch.arange(60, 0, -1, dtype=torch.float64)
    basis = torch.cat([torch.diag(scale), -torch.diag(scale)])
    assert said.table_spectrum(basis)["s1_over_s50"] == pytest.approx(60 / 11)


def test_the_spectrum_tool_builds_each_table_as_a_run_does(tiny_atomic, cache_dir):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "said_table_spectrum.py"
    spec = importlib.util.spec_from_file_location("said_table_spectrum", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    overrides = {"backbone": "tiny:random", "stage1_epochs": 1, "stage1_batch": 8,
                 "match_items": 0, "max_text_tokens": 4, "item_dim": 8}
    rows = tool.spectrum_rows(str(tiny_atomic), [0, 1], ["said"], cache_dir, overrides)
    assert [r["seed"] for r in rows] == [0, 1]
    n_items = len(tool.load_dataset(str(tiny_atomic)).catalog)
    assert all(r["shape"][0] == n_items and r["stage1_cached"] is False for r in rows)
    assert all(1.0 <= r["effective_rank"] <= r["shape"][1] for r in rows)
    assert rows[0]["effective_rank"] != rows[1]["effective_rank"]  # per-seed stage 1
    # A second call reads stage 1 from the cache, as a run after the first one does.
    again = tool.spectrum_rows(str(tiny_atomic), [0], ["said"], cache_dir, overrides)
    assert again[0]["stage1_cached"] is True
    assert again[0]["effective_rank"] == pytest.approx(rows[0]["effective_rank"])
