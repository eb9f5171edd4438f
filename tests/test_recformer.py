"""Recformer: input construction, cold items, identical texts, finetuning beats zero-shot.

A tiny randomly initialised BERT (hidden 32, 2 layers) and a word-level tokenizer written here
stand in for MiniLM, so these tests take seconds; the packaged MiniLM is loaded once, in the
slow test at the end.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adapters import recformer as recformer_module
from adapters.recformer import Recformer
from benchmark.adapter import RunContext, TrainData, TransferCorpus, UserBatch
from benchmark.cache import Cache
from benchmark.evaluation import evaluate, metric_values
from benchmark.models.recformer import (
    CLS_TYPE,
    KEY_TYPE,
    PAD_TYPE,
    VALUE_TYPE,
    collate,
    item_sentences,
    sequence_tokens,
)


class WordTokenizer:
    """Whitespace tokenizer with a growing vocabulary; ids 0-2 are [PAD], [CLS], [MASK]."""

    pad_token_id, cls_token_id, mask_token_id = 0, 1, 2

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self.vocab.setdefault(w, len(self.vocab) + 3) for w in text.lower().split()]


def tiny_bert(vocab_size: int = 200) -> torch.nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertModel(config, add_pooling_layer=False)


def test_two_item_history_input_is_cls_then_newest_item_first_with_types_and_positions():
    tok = WordTokenizer()
    attrs = [{"title": "alpha beta", "year": "1995"}, {"title": "gamma", "year": ""}]
    sents = item_sentences(attrs, tok, attr_max_tokens=32)
    t, a, b, y, n95, g = (tok.vocab[w] for w in ("title", "alpha", "beta", "year", "1995", "gamma"))
    # Item 0: key "title", values "alpha beta", key "year", value "1995"; empty values dropped.
    assert sents[0].ids == (t, a, b, y, n95)
    assert sents[0].types == (KEY_TYPE, VALUE_TYPE, VALUE_TYPE, KEY_TYPE, VALUE_TYPE)
    assert sents[1].ids == (t, g)

    ids, types, positions = sequence_tokens([0, 1], sents, cls_id=1, max_tokens=64, max_items=50)
    # History oldest-first [0, 1] -> [CLS], item 1 (most recent, position 1), item 0 (position 2).
    assert ids == [1, t, g, t, a, b, y, n95]
    assert types == [CLS_TYPE, KEY_TYPE, VALUE_TYPE, KEY_TYPE, VALUE_TYPE, VALUE_TYPE, KEY_TYPE,
                     VALUE_TYPE]
    assert positions == [0, 1, 1, 2, 2, 2, 2, 2]

    batch = collate([(ids, types, positions), ([1], [CLS_TYPE], [0])], pad_id=0, item_pad=51)
    assert batch.input_ids[1].tolist() == [1] + [0] * 7
    assert batch.token_types[1].tolist() == [CLS_TYPE] + [PAD_TYPE] * 7
    assert batch.item_positions[1].tolist() == [0] + [51] * 7
    assert batch.attention_mask.sum(dim=1).tolist() == [8, 1]


def test_truncation_cuts_the_oldest_items_and_attributes_at_their_limit():
    tok = WordTokenizer()
    attrs = [{"title": "one two three four"}, {"title": "five"}, {"title": "six"}]
    sents = item_sentences(attrs, tok, attr_max_tokens=2)
    assert len(sents[0].ids) == 3  # key + the first 2 of 4 value tokens
    # Budget 6 = [CLS] + 2 + 2 tokens: items 2 and 1 fit, the oldest (item 0, 3 tokens) is cut.
    ids, _, positions = sequence_tokens([0, 1, 2], sents, cls_id=1, max_tokens=6, max_items=50)
    assert ids == [1, tok.vocab["title"], tok.vocab["six"], tok.vocab["title"], tok.vocab["five"]]
    assert positions == [0, 1, 1, 2, 2]
    # max_items keeps only the most recent items as well.
    ids, _, _ = sequence_tokens([0, 1, 2], sents, cls_id=1, max_tokens=64, max_items=1)
    assert ids == [1, tok.vocab["title"], tok.vocab["six"]]


def _adapter(attrs: list[dict[str, str]], **overrides) -> Recformer:
    adapter = Recformer(Recformer.Config(**overrides))
    adapter.setup(tiny_bert(), WordTokenizer(), attrs)
    return adapter


def test_cold_item_is_scored_and_identical_texts_score_identically():
    attrs = [{"title": f"movie {w}", "genres": g} for w, g in
             [("red", "drama"), ("blue", "comedy"), ("green", "drama"), ("red", "drama")]]
    adapter = _adapter(attrs)
    # Item 2 never appears in any history (a cold item); items 0 and 3 share their text.
    adapter.item_matrix = adapter.encode_items()
    scores = adapter.score(UserBatch(np.array([0, 1, 2]),
                                     [np.array([0, 1]), np.array([1]), np.array([], dtype=int)]))
    assert scores.shape == (3, 4)
    assert torch.isfinite(scores).all()
    assert torch.equal(scores[:, 0], scores[:, 3])
    assert not torch.equal(scores[:, 0], scores[:, 2])


def test_vectors_do_not_depend_on_the_batching_of_histories():
    attrs = [{"title": " ".join(f"w{i}" for i in range(k + 1))} for k in range(12)]
    adapter = _adapter(attrs, encode_batch_size=4)
    rng = np.random.default_rng(0)
    histories = [rng.integers(0, 12, size=rng.integers(0, 5)) for _ in range(19)]
    together = adapter.encode(histories)  # length-sorted batches of 4
    alone = torch.cat([adapter.encode([h]) for h in histories])
    assert torch.allclose(together, alone, atol=1e-5)


def test_item_sentences_use_the_datasets_text_fields_unless_fields_is_set(tmp_path, monkeypatch):
    from benchmark.data import ItemCatalog

    catalog = ItemCatalog(["a", "b"], [{"title": "red lamp", "brand": "acme",
                                        "description": "a very long story about lamps"},
                                       {"title": "blue lamp", "brand": "", "description": "x"}],
                          [(), ()], text_fields=("title", "brand"))
    train = TrainData(2, [np.array([0, 1]), np.array([1, 0])], catalog, np.array([2, 2]))
    monkeypatch.setattr(recformer_module, "load_backbone", lambda name: (tiny_bert(),
                                                                         WordTokenizer()))
    ctx = RunContext(seed=0, device="cpu", cache=Cache(tmp_path),
                     protocol="loo", catalog_hash="c", train_hash="t", show_progress=False)
    default = Recformer(Recformer.Config(finetune=False, pretrain_epochs=0))
    default.fit(train, lambda: 0.0, ctx)
    vocab = default.tokenizer.vocab
    assert "description" not in vocab and "story" not in vocab  # not a text field
    assert [len(s.ids) for s in default.sentences] == [5, 3]  # title red lamp brand acme
    chosen = Recformer(Recformer.Config(finetune=False, pretrain_epochs=0,
                                        fields=["description", "title"]))
    chosen.fit(train, lambda: 0.0, ctx)
    words = {v: k for k, v in chosen.tokenizer.vocab.items()}
    assert [words[i] for i in chosen.sentences[1].ids] == ["description", "x", "title", "blue",
                                                         "lamp"]


def _smoke_data(tmp_path, n_users: int = 40):
    """The project's smoke data (users walk a cycle over 30 movies), split leave-one-out."""
    from conftest import synthetic_rows, write_atomic

    from benchmark.data import Preprocessing, load_atomic
    from benchmark.splits import make_split

    rows, items = synthetic_rows(n_users=n_users)
    dataset = load_atomic(write_atomic(tmp_path / "smoke", "smoke", rows, items), "smoke",
                          Preprocessing())
    split = make_split(dataset, "loo")
    train = TrainData(dataset.n_items, split.train, dataset.catalog, split.item_counts())
    return train, split.valid


def test_finetuning_improves_validation_ndcg_over_the_zero_shot_model(tmp_path, monkeypatch):
    train, valid = _smoke_data(tmp_path, n_users=24)
    monkeypatch.setattr(recformer_module, "load_backbone", lambda name: (tiny_bert(),
                                                                         WordTokenizer()))
    config = Recformer.Config(max_tokens=40, pretrain_epochs=1, pretrain_batch_size=8,
                              batch_size=8, finetune_lr=2e-3, pairs_per_user=4, stage1_epochs=3,
                              stage2_epochs=1, patience=3)
    adapter = Recformer(config)
    ctx = RunContext(seed=0, device="cpu", cache=Cache(tmp_path),
                     protocol="loo", catalog_hash="c", train_hash="t", show_progress=False)

    def validate() -> float:
        ranks = evaluate(adapter, valid, train.n_items).ranks
        return float(metric_values(ranks)["NDCG@10"].mean())

    adapter.fit(train, validate, ctx)
    info = adapter.diagnostics()["finetune"]
    assert info["best_valid_ndcg10"] > info["zero_shot_valid_ndcg10"] + 0.1
    assert validate() == pytest.approx(info["best_valid_ndcg10"])  # the best state is restored

    # A second fit with the same keys loads both checkpoints instead of training.
    calls = []
    again = Recformer(config)
    again.fit(train, lambda: calls.append(1) or 0.0, ctx)
    assert calls == []
    assert torch.equal(again.item_matrix, adapter.item_matrix)


def test_zero_shot_variant_shares_the_pretraining_checkpoint(tmp_path, monkeypatch):
    train, _ = _smoke_data(tmp_path, n_users=8)
    monkeypatch.setattr(recformer_module, "load_backbone", lambda name: (tiny_bert(),
                                                                         WordTokenizer()))
    ctx = RunContext(seed=0, device="cpu", cache=Cache(tmp_path),
                     protocol="loo", catalog_hash="c", train_hash="t", show_progress=False)
    zero = Recformer(Recformer.Config(finetune=False, max_tokens=40))
    zero.fit(train, lambda: pytest.fail("zero-shot must not validate"), ctx)
    assert ctx.stop_reason == "no_finetuning"
    assert len(list((tmp_path / "recformer_pretrain").iterdir())) == 1
    # Finetuning-only keys do not change the pretraining key: no second checkpoint.
    full = Recformer(Recformer.Config(finetune=True, max_tokens=40, stage1_epochs=1,
                                      stage2_epochs=0))
    full.fit(train, lambda: 0.0, ctx)
    assert len(list((tmp_path / "recformer_pretrain").iterdir())) == 1


def _transfer_corpus(tmp_path, n_users: int = 16) -> TransferCorpus:
    """A source dataset unlike the smoke data: other users, 20 items titled "gadget"."""
    from conftest import synthetic_rows, write_atomic

    from benchmark.data import Preprocessing, load_atomic
    from benchmark.splits import make_split

    rows, _ = synthetic_rows(n_users=n_users, n_items=20, seed=7)
    items = [(i, f"Gadget {i}", 2010 + i % 5, "Tools") for i in range(1, 21)]
    source = load_atomic(write_atomic(tmp_path / "source", "source", rows, items), "source",
                         Preprocessing())
    split = make_split(source, "loo")
    train = TrainData(source.n_items, split.train, source.catalog, split.item_counts())
    return TransferCorpus("source", train, split.train_fingerprint(),
                          source.catalog.fingerprint())


def test_transfer_pretrains_on_the_source_only_and_encodes_the_target_catalogue(
        tmp_path, monkeypatch):
    target, _ = _smoke_data(tmp_path, n_users=8)
    corpus = _transfer_corpus(tmp_path)
    monkeypatch.setattr(recformer_module, "load_backbone", lambda name: (tiny_bert(),
                                                                         WordTokenizer()))
    seen = []
    real = Recformer._pretrain

    def spy(self, train, ctx):
        words = {v: k for k, v in self.tokenizer.vocab.items()}
        seen.append((train, {words[i] for s in self.sentences for i in s.ids}))
        return real(self, train, ctx)

    monkeypatch.setattr(Recformer, "_pretrain", spy)

    def context(train_hash: str, catalog_hash: str, transfer=None) -> RunContext:
        return RunContext(seed=0, device="cpu", cache=Cache(tmp_path), protocol="loo",
                          catalog_hash=catalog_hash, train_hash=train_hash,
                          show_progress=False, transfer=transfer)

    config = Recformer.Config(finetune=False, max_tokens=40, transfer_from="source")
    ctx = context("target-train", "target-catalog", corpus)
    adapter = Recformer(config)
    adapter.fit(target, lambda: pytest.fail("no finetuning: no validation"), ctx)
    assert ctx.stop_reason == "no_finetuning"
    [(pretrained_on, words)] = seen
    assert pretrained_on is corpus.train  # the source's sequences, nothing of the target's
    assert "gadget" in words and "movie" not in words  # over the source's item sentences
    assert ctx.examples_seen == corpus.train.n_users  # one pair per source user
    # This catalogue's items, encoded by the transferred encoder, are what users are scored on.
    assert adapter.item_matrix.shape[0] == target.n_items == len(adapter.sentences)
    assert torch.allclose(adapter.item_matrix, adapter.encode_items())
    assert adapter.diagnostics()["transfer"]["source"] == "source"

    checkpoints = tmp_path / "recformer_pretrain"
    assert len(list(checkpoints.iterdir())) == 1
    # recformer_pretrained on the target shares nothing with it: a checkpoint of its own.
    Recformer(Recformer.Config(finetune=False, max_tokens=40)).fit(
        target, lambda: 0.0, context("target-train", "target-catalog"))
    assert len(list(checkpoints.iterdir())) == 2 and len(seen) == 2
    assert seen[1][0] is target
    # recformer_pretrained on the source is the same pretraining: loaded, not trained again.
    Recformer(Recformer.Config(finetune=False, max_tokens=40)).fit(
        corpus.train, lambda: 0.0, context(corpus.train_hash, corpus.catalog_hash))
    assert len(list(checkpoints.iterdir())) == 2 and len(seen) == 2


def test_transfer_without_a_corpus_in_the_context_is_an_error(tmp_path, monkeypatch):
    from benchmark.errors import BenchmarkError

    target, _ = _smoke_data(tmp_path, n_users=4)
    monkeypatch.setattr(recformer_module, "load_backbone", lambda name: (tiny_bert(),
                                                                         WordTokenizer()))
    ctx = RunContext(seed=0, device="cpu", cache=Cache(tmp_path), protocol="loo",
                     catalog_hash="c", train_hash="t", show_progress=False)
    with pytest.raises(BenchmarkError, match="holds no transfer corpus"):
        Recformer(Recformer.Config(finetune=False, transfer_from="auto")).fit(
            target, lambda: 0.0, ctx)


def test_epoch_pairs_sets_the_examples_of_an_epoch(tmp_path, monkeypatch):
    train, _ = _smoke_data(tmp_path, n_users=24)
    monkeypatch.setattr(recformer_module, "load_backbone", lambda name: (tiny_bert(),
                                                                         WordTokenizer()))
    ctx = RunContext(seed=0, device="cpu", cache=Cache(tmp_path),
                     protocol="loo", catalog_hash="c", train_hash="t", show_progress=False)
    config = Recformer.Config(max_tokens=40, pretrain_epochs=2, pretrain_epoch_pairs=7,
                              epoch_pairs=5, stage1_epochs=2, stage2_epochs=1, patience=9)
    validations = []
    Recformer(config).fit(train, lambda: validations.append(ctx.examples_seen) or 0.0, ctx)
    # 2 x 7 pretraining pairs, then validation before finetuning and after each 5-pair epoch.
    assert validations == [14, 19, 24, 29]


@pytest.mark.slow
def test_packaged_minilm_encodes_items_like_a_sentence_encoder():
    from benchmark.models.recformer import PACKAGED_MINILM, load_backbone

    backbone, tokenizer = load_backbone(PACKAGED_MINILM)
    attrs = [{"title": "Toy Story", "genres": "Animation, Comedy"},
             {"title": "Toy Story 2", "genres": "Animation, Comedy"},
             {"title": "Schindler's List", "genres": "Drama, War"}]
    adapter = Recformer(Recformer.Config())
    adapter.setup(backbone, tokenizer, attrs)
    items = adapter.encode_items()
    assert items.shape == (3, 384)
    sims = items @ items.T
    assert sims[0, 1] > sims[0, 2]  # the pretrained encoder's knowledge survives the widening
