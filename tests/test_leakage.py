"""Leakage guard: what the runner feeds every registered adapter holds no held-out signal.

For every method, the adapter's own ``fit``/``score``/``rank`` are replaced by spies, and the
real runner is driven through both protocols. No validation or test target may appear in the
training data (sequences or item counts), and under ``cold_item`` no cold-item interaction may
appear in any training sequence or in any input history the adapter is shown.

A method pretrained on another dataset (need ``transfer_corpus``: ``recformer_transfer``) is
driven with a second tiny dataset as its source: the corpus it is handed holds the source's
training sequences only (no source validation or test target), and its pretraining sees no
sequence of the dataset under test.

Exempt, by decision: the published semantic-ID indexes that were built from interactions
(``benchmark.models.published_ids.PUBLISHED_WITH_INTERACTIONS``: ``letter_native``,
``letter_zcr``, ``rkmeans_zcr_cf``; data/amazon-scientific/PROVENANCE.md). They are fixed inputs
made by others from interactions of a split that is not published, which may hold our test
targets and cold items, so no spy on the runner can prove them clean. A run that reads one says
``uses_interactions: true`` in its semantic-ID diagnostics, and such a run is refused under
``cold_item``, so the report shows no cold-slice figure for them; their ``loo`` figures stand
with that flag. The sweep below runs every method at its default (our own semantic IDs, built
from item text only).
"""

import numpy as np
import pytest
import torch

from benchmark import registry, runner
from benchmark.adapter import TransferCorpus
from benchmark.data import ItemCatalog, Preprocessing, load_atomic
from benchmark.errors import BenchmarkError
from benchmark.models.published_ids import PUBLISHED_WITH_INTERACTIONS
from benchmark.models.semantic_ids import published_semantic_ids
from benchmark.settings import harness_settings
from benchmark.splits import draw_cold_items, draw_cold_valid_items

METHODS = sorted(registry.available())


def test_the_sweep_covers_the_methods_that_train_a_downstream_model_on_sequences():
    # SAID's stage 2 and its MiniLM variant train SASRec on the runner's training data;
    # TIGER trains its encoder-decoder on every prefix of the same data.
    assert {"sasrec_id", "sasrec_sid", "said", "said_minilm", "tiger"} <= set(METHODS)
    # RA-Rec's ID model is SASRec-ID trained on the runner's training data too.
    assert {"ra_rec", "ra_rec_hard"} <= set(METHODS)


def write_source(tmp_path):
    """A transfer source unlike ``tiny_atomic``: 25 other users over 20 "Gadget" items."""
    from conftest import synthetic_rows, write_atomic

    rows, _ = synthetic_rows(n_users=25, n_items=20, seed=7)
    items = [(i, f"Gadget {i}", 2010 + i % 5, "Tools") for i in range(1, 21)]
    return write_atomic(tmp_path / "source", "source", rows, items)


def transfer_overrides(method: str, source) -> dict:
    """``transfer_from`` pointed at ``source`` for a method that transfers, else nothing."""
    _, config = runner.resolve_config(method, "smoke", {})
    return {} if getattr(config, "transfer_from", None) is None else {"transfer_from": str(source)}


def check_corpus(corpus, source) -> None:
    """The corpus is the source's leave-one-out training data: no validation or test target."""
    full = load_atomic(source, "source", Preprocessing()).sequences()
    assert corpus.name == "source" and corpus.train.n_items == 20
    assert [s.tolist() for s in corpus.train.sequences] == [s[:-2].tolist() for s in full]
    counts = np.zeros(20, dtype=int)
    for seq in corpus.train.sequences:
        np.add.at(counts, seq, 1)
    assert counts.tolist() == corpus.train.item_counts.tolist()


@pytest.mark.parametrize("method", METHODS)
def test_runner_feeds_no_held_out_interaction(method, tiny_atomic, tmp_path, monkeypatch):
    cls = registry.adapter_class(method)
    seen: dict = {"histories": []}
    source = write_source(tmp_path)
    overrides = transfer_overrides(method, source)

    def fit(self, train, validate, ctx):
        seen["train"] = train
        seen["transfer"] = ctx.transfer
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
                                     cache_dir=tmp_path / "c", show_progress=False,
                                     overrides=overrides))
        train = seen["train"]
        if overrides:
            check_corpus(seen["transfer"], source)
        else:
            assert seen["transfer"] is None
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


def test_published_ids_built_from_interactions_are_exempt_and_never_run_under_cold_item():
    """The exemption of the module docstring: exactly these variants, each refused under
    cold_item before its file is read (the report then has no cold-slice figure for it)."""
    assert PUBLISHED_WITH_INTERACTIONS == {"letter_native", "letter_zcr", "rkmeans_zcr_cf"}
    catalog = ItemCatalog([], [], [], source_dir=registry.REPO_ROOT / "data/amazon-scientific")
    for variant in sorted(PUBLISHED_WITH_INTERACTIONS):
        with pytest.raises(BenchmarkError, match="not run under the cold_item protocol"):
            published_semantic_ids(catalog, variant, protocol="cold_item")


TRANSFER_METHODS = [m for m in METHODS
                    if "transfer_corpus" in registry.adapter_class(m).needs
                    and transfer_overrides(m, "x")]


def test_the_transfer_sweep_covers_recformer_transfer():
    assert "recformer_transfer" in TRANSFER_METHODS


@pytest.mark.parametrize("method", TRANSFER_METHODS)
def test_transfer_pretraining_never_sees_a_sequence_of_the_dataset_under_test(
        method, tiny_atomic, tmp_path, monkeypatch):
    """The real fit (a tiny random encoder for MiniLM): what pretraining is given."""
    from test_recformer import WordTokenizer, tiny_bert

    from adapters import recformer as recformer_module

    monkeypatch.setattr(recformer_module, "load_backbone",
                        lambda name: (tiny_bert(), WordTokenizer()))
    cls = registry.adapter_class(method)
    pretrained_on = []
    real = cls._pretrain

    def spy(self, train, ctx):
        pretrained_on.append(train)
        words = {v: k for k, v in self.tokenizer.vocab.items()}
        pretrained_on.append({words[i] for s in self.sentences for i in s.ids})
        return real(self, train, ctx)

    monkeypatch.setattr(cls, "_pretrain", spy)
    source = write_source(tmp_path)
    target = load_atomic(tiny_atomic, "tiny", Preprocessing()).sequences()
    for protocol in ("loo", "cold_item"):
        pretrained_on.clear()
        path = runner.run(runner.RunRequest(
            method=method, dataset=str(tiny_atomic), protocol=protocol, profile="smoke",
            results_dir=tmp_path / "r", cache_dir=tmp_path / f"c-{protocol}",
            show_progress=False, overrides={"transfer_from": str(source)}))
        [train, words] = pretrained_on
        # The source's training sequences, never the target's (30 items, other users).
        check_corpus(TransferCorpus("source", train, "", ""), source)
        assert train.n_users == 25 != len(target)
        assert "gadget" in words and "movie" not in words  # the source's item sentences
        assert '"stop_reason": "no_finetuning"' in path.read_text()


@pytest.mark.parametrize("transfer_from, problem", [
    ("{target}", "transfers from .*, the dataset under test; transfer_from must name another"),
    ("auto", "transfer_from: auto means the one shipped dataset other than 'tiny', but there "
             "are 2"),
])
def test_transfer_from_the_dataset_under_test_is_refused(transfer_from, problem, tiny_atomic,
                                                          tmp_path):
    with pytest.raises(BenchmarkError, match=problem) as info:
        runner.run(runner.RunRequest(
            method="recformer_transfer", dataset=str(tiny_atomic), profile="smoke",
            cache_dir=tmp_path / "c", show_progress=False,
            overrides={"transfer_from": transfer_from.format(target=tiny_atomic)}))
    assert "\n" not in str(info.value)


def test_transfer_from_a_shipped_dataset_under_its_own_name_is_refused(tmp_path):
    with pytest.raises(BenchmarkError, match="'ml-100k', the dataset under test"):
        runner.run(runner.RunRequest(
            method="recformer_transfer", dataset="ml-100k", profile="smoke",
            cache_dir=tmp_path / "c", show_progress=False,
            overrides={"transfer_from": "ml-100k"}))
