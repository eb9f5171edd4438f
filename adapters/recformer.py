"""Recformer (Li et al., KDD 2023): items as text only, one encoder for users and items.

Pipeline (model and input construction in ``benchmark/models/recformer.py``):

1. Pretraining on the training sequences of the dataset under test (the paper pretrains on
   other Amazon categories; validation/test targets never enter), or, with ``transfer_from``,
   on another dataset's (below): item-item contrastive loss (prefix vs its next item, in-batch
   negatives, tau = 0.05) plus 0.1 x masked-LM loss through a fresh MLM head tied to the word
   embeddings.
2. Two-stage finetuning with full softmax over the catalogue, tau = 0.05. Stage 1 re-encodes
   every item into a frozen matrix at the start of each epoch; stage 2 reloads the best stage-1
   checkpoint, re-encodes once and keeps that matrix for good. Early stopping on validation
   NDCG@10 (as in the reference code, validation scores use the item matrix of the epoch).

``recformer_pretrained`` (``finetune: false``; called ``recformer_zeroshot`` before result schema
3) is the same class stopped after step 1: pretrained on this dataset's training sequences,
before any finetuning. That is not the paper's zero-shot setting (pretrained on *other* data
only). ``--set pretrain_epochs=0`` gives the raw sentence encoder.
Both variants key the pretraining checkpoint and its item vectors identically, so whichever
runs first builds them and the other loads them.

``recformer_transfer`` (``finetune: false``, ``transfer_from: auto``) is the paper's zero-shot
setting: step 1 on the *other* shipped dataset (ML-100K <-> Amazon Scientific), never on any
sequence of the dataset under test. The runner loads the source (need ``transfer_corpus``,
``benchmark.adapter``) and hands its leave-one-out training sequences and catalogue as
``ctx.transfer``; ``_pretrain`` runs unchanged on them over the source's item sentences, then
this catalogue's items are encoded by the transferred encoder and users scored as
``recformer_pretrained`` scores them. Its checkpoint key holds the source's fingerprints, not
this dataset's: it shares nothing with ``recformer_pretrained`` on the same dataset, and is the
checkpoint ``recformer_pretrained`` builds on the source under ``loo`` where the pretraining
keys agree (recformer_transfer.yaml gives the source the settings recformer.yaml gives it). Its
item vectors are keyed by that checkpoint and this catalogue. Both no-finetuning variants report
``stop_reason`` "no_finetuning". With ``finetune: true`` a transferred encoder is finetuned on
this dataset (the paper's full pipeline; no shipped variant).

Default-profile scale-downs (2-core CPU; the paper profile keeps the paper's sizes):
- Item sentences from the dataset's text fields (``fields``; Amazon: title, brand, categories,
  about 42 MiniLM tokens per item; ML-100K: title, year, genres, about 11). Amazon's
  512-character description, in the sentence before VERSION 2, took two thirds of every item and left 0.27
  items in a 64-token input; add ``description`` to ``fields`` where a budget allows.
- Token budget 128 instead of 1,024: about 11 ML-100K items or 2 Amazon items (items are kept
  whole, newest first); attributes are cut at 32 tokens as in the paper.
- Epochs: an epoch draws one (prefix, next item) pair per user (the reference collator's rate:
  943 on ML-100K); on Amazon an epoch is ``epoch_pairs`` = 2,000 of the 8,317 users' pairs
  (pretraining likewise, ``pretrain_epoch_pairs``), so that validation, the stage-1
  re-encoding and early stopping come within the budget. Stage 1 up to 5 epochs (Amazon 3),
  stage 2 up to 2, each stopped by validation NDCG@10 with patience 1.
- Throughput, measured in the runs (2 threads): MiniLM trains at about 1,600 tokens/s; an
  ML-100K epoch (943 pairs of ~115 tokens) takes ~70 s plus ~15 s to re-encode the catalogue
  and validate; pretraining one epoch ~130 s.
- What validation showed on ML-100K `loo` (``python -m benchmark tune recformer --dataset
  ml-100k --grid finetune_lr=0.00005,0.0001 --set max_tokens=128 ...``, record in
  results/ml-100k/tuning/): the 128-token window lifts the zero-shot model from 0.0227
  (64 tokens) to 0.0310; the first finetuning epoch against the pretrained item matrix reaches
  0.0500 (lr 5e-5) / 0.0494 (1e-4); the second stage-1 epoch, after the catalogue is
  re-encoded by the updated encoder, falls to 0.037, and stage 2 recovers to 0.046 only. The
  item side moves with the user side (one encoder), so each re-encoding costs the user side
  its fit; the paper's many epochs would let the two settle, the CPU budget does not.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.adapter import AdapterBase, RunContext, TrainData, TransferCorpus, UserBatch
from benchmark.config import require_at_least, require_positive, require_probability, require_range
from benchmark.errors import BenchmarkError
from benchmark.models.recformer import (
    PACKAGED_MINILM,
    EncoderInput,
    MLMHead,
    RecformerEncoder,
    collate,
    cosine_logits,
    item_sentences,
    load_backbone,
    mask_tokens,
    sample_pairs,
    sequence_tokens,
)
from benchmark.models.training import get_or_train, train_with_patience
from benchmark.registry import register

VERSION = 2  # 2: item sentences from the dataset's text fields; epochs of epoch_pairs pairs
# Config keys that change the pretraining checkpoint (shared by both variants).
PRETRAIN_KEYS = ("backbone", "fields", "attr_max_tokens", "max_tokens", "max_items", "tau",
                 "pretrain_epochs", "pretrain_pairs_per_user", "pretrain_epoch_pairs",
                 "pretrain_batch_size",
                 "pretrain_lr", "mlm_weight", "mlm_probability")


@register("recformer")
class Recformer(AdapterBase):
    @dataclass
    class Config:
        backbone: str = PACKAGED_MINILM  # any BERT-like HF id or local directory
        finetune: bool = True  # false = evaluate the pretrained encoder (recformer_pretrained)
        # None: pretrain on this dataset's training sequences. A dataset name or path, or "auto"
        # (the other shipped dataset): pretrain on that dataset's training sequences and item
        # text only, never on this dataset's (recformer_transfer; the runner hands the corpus).
        transfer_from: str | None = None
        # Item attributes that make an item's sentence, in this order; None = the dataset's
        # `text_fields` (Amazon: title, brand, categories; ML-100K: every attribute).
        fields: list[str] | None = None
        attr_max_tokens: int = 32  # per attribute key or value (paper: 32)
        max_tokens: int = 64  # token budget of a user sequence (paper: 1,024)
        max_items: int = 50  # most recent items considered (paper: 50)
        tau: float = 0.05
        encode_batch_size: int = 64
        pretrain_epochs: int = 1
        pretrain_pairs_per_user: int = 1
        pretrain_epoch_pairs: int = 0  # > 0: a pretraining epoch is this many pairs (0: all)
        pretrain_batch_size: int = 32  # in-batch negatives = batch size - 1
        pretrain_lr: float = 5e-5
        mlm_weight: float = 0.1  # 0 drops the MLM loss
        mlm_probability: float = 0.15
        finetune_lr: float = 5e-5
        batch_size: int = 16
        pairs_per_user: int = 1  # (prefix, next item) pairs per user per finetuning epoch
        # > 0: a finetuning epoch is this many of those pairs (a random subset, new every
        # epoch), so validation, stage-1 re-encoding and early stopping come more often.
        epoch_pairs: int = 0
        stage1_epochs: int = 1
        stage2_epochs: int = 1
        patience: int = 1  # epochs without a better validation NDCG@10 before a stage stops

        def __post_init__(self) -> None:
            for key in ("attr_max_tokens", "max_tokens", "max_items", "encode_batch_size",
                        "pretrain_pairs_per_user", "batch_size", "pairs_per_user", "patience"):
                require_at_least(key, getattr(self, key), 1)
            # One pair per batch has no in-batch negative: the contrastive loss would be 0.
            require_at_least("pretrain_batch_size", self.pretrain_batch_size, 2)
            for key in ("pretrain_epochs", "stage1_epochs", "stage2_epochs", "epoch_pairs",
                        "pretrain_epoch_pairs"):
                require_at_least(key, getattr(self, key), 0)  # 0 skips that stage
            for key in ("tau", "pretrain_lr", "finetune_lr"):
                require_positive(key, getattr(self, key))
            require_range("mlm_weight", self.mlm_weight, 0)
            require_probability("mlm_probability", self.mlm_probability)
            if self.transfer_from is not None and (not isinstance(self.transfer_from, str)
                                                   or not self.transfer_from):
                raise BenchmarkError("transfer_from must be a dataset name or path, `auto` or "
                                     f"null, got {self.transfer_from!r}")

    needs = frozenset({"item_text", "transfer_corpus"})
    output = "scores"
    wants_gpu = True

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.encoder: RecformerEncoder | None = None
        self.item_matrix: torch.Tensor | None = None  # [n_items, H], L2-normalised
        self.device = "cpu"
        self.show_progress = False
        self.info: dict[str, Any] = {}

    # ------------------------------------------------------------------------------ fit
    def fit(self, train: TrainData, validate: Callable[[], float], ctx: RunContext) -> None:
        cfg = self.config
        self.device, self.show_progress = ctx.device, ctx.show_progress
        backbone, self.tokenizer = load_backbone(cfg.backbone)
        torch.manual_seed(ctx.seed)
        catalog = train.catalog
        self.setup(backbone, self.tokenizer, self.attributes(catalog))
        pretrain_cfg = {k: asdict(cfg)[k] for k in PRETRAIN_KEYS}
        corpus = self.transfer_corpus(ctx)
        if corpus is None:
            pre_key = [VERSION, "pretrain", ctx.train_hash, ctx.catalog_hash, pretrain_cfg,
                       ctx.seed]
            items_key = [pre_key, "items"]
            pre, _ = get_or_train(ctx, "recformer_pretrain", pre_key,
                                  lambda: self._pretrain(train, ctx))
        else:
            # The source's fingerprints only: nothing of this dataset's training data enters
            # the checkpoint (the same pretraining as recformer_pretrained's on the source under
            # `loo`, which shares it where the pretraining keys agree). The item vectors are this
            # catalogue's, encoded by that checkpoint.
            pre_key = [VERSION, "pretrain", corpus.train_hash, corpus.catalog_hash,
                       pretrain_cfg, ctx.seed]
            items_key = [pre_key, "items", "transferred to", ctx.catalog_hash]
            pre, _ = get_or_train(ctx, "recformer_pretrain", pre_key,
                                  lambda: self._pretrain_on(corpus.train, ctx))
            self.info["transfer"] = {"source": corpus.name, "source_users": corpus.train.n_users,
                                     "source_items": corpus.train.n_items}
        self.encoder.load_state_dict(pre["encoder"])
        self.info["pretrain"] = pre["info"]
        self.info["mean_items_per_user_input"] = float(np.mean(
            [sequence_tokens(s, self.sentences, 0, self.max_tokens, cfg.max_items)[2][-1]
             for s in train.sequences if len(s)]))
        # Item vectors are keyed by the checkpoint that made them, never by dataset name alone.
        zero_shot = ctx.cache.get_or_build(
            "recformer_item_vectors", items_key, lambda: self.encode_items().numpy())
        self.item_matrix = torch.as_tensor(zero_shot).to(self.device)
        if not cfg.finetune:
            ctx.report_stop("no_finetuning")
            return
        ft_key = [VERSION, "finetune", ctx.train_hash, ctx.catalog_hash, asdict(cfg), ctx.seed]
        if corpus is not None:  # finetuning starts from the transferred checkpoint
            ft_key.append(pre_key)
        ft, _ = get_or_train(ctx, "recformer_finetune", ft_key,
                             lambda: self._finetune(train, validate, ctx))
        self.encoder.load_state_dict(ft["encoder"])
        self.item_matrix = ft["item_matrix"].to(self.device)
        self.info["finetune"] = ft["info"]

    def attributes(self, catalog: Any) -> list[dict[str, str]]:
        """Each item's text attributes (``fields``, else the catalogue's text fields)."""
        return [catalog.text_attributes(i, self.config.fields) for i in range(len(catalog))]

    def transfer_corpus(self, ctx: RunContext) -> TransferCorpus | None:
        """The source corpus the runner handed in, where ``transfer_from`` is set."""
        if self.config.transfer_from is None:
            return None
        if ctx.transfer is None:
            raise BenchmarkError(f"recformer: transfer_from is {self.config.transfer_from!r} but "
                                 "the run context holds no transfer corpus (the runner loads it)")
        return ctx.transfer

    def setup(self, backbone: torch.nn.Module, tokenizer: Any,
              attributes: list[dict[str, str]]) -> None:
        """Build the encoder around ``backbone`` and tokenise every item's sentence once."""
        cfg = self.config
        self.tokenizer = tokenizer
        self.encoder = RecformerEncoder(backbone, cfg.max_items).to(self.device)
        self.max_tokens = min(cfg.max_tokens, self.encoder.max_tokens)
        self.sentences = item_sentences(attributes, tokenizer, cfg.attr_max_tokens)
        self.info["mean_item_tokens"] = float(np.mean([len(s.ids) for s in self.sentences]))

    # ------------------------------------------------------------------------- encoding
    def token_rows(self, histories: list) -> list[tuple[list[int], list[int], list[int]]]:
        """(ids, types, item positions) of each item-index history (oldest first)."""
        return [sequence_tokens(h, self.sentences, self.tokenizer.cls_token_id, self.max_tokens,
                                self.config.max_items) for h in histories]

    def collate(self, rows: list) -> EncoderInput:
        return collate(rows, self.tokenizer.pad_token_id, self.encoder.item_pad).to(self.device)

    def inputs(self, histories: list) -> EncoderInput:
        """Padded encoder input for item-index histories (oldest first)."""
        return self.collate(self.token_rows(histories))

    @torch.no_grad()
    def encode(self, histories: list, desc: str | None = None) -> torch.Tensor:
        """CLS vectors of many histories in mini-batches, in eval mode, L2-normalised.

        Batches are formed from histories sorted by token length, so a batch pads to a length
        near its rows' own (padding is masked: the vectors do not depend on the batching)."""
        self.encoder.eval()
        rows = self.token_rows(histories)
        order = sorted(range(len(rows)), key=lambda r: len(rows[r][0]))
        step = self.config.encode_batch_size
        starts = range(0, len(rows), step)
        if desc and self.show_progress:
            from tqdm.auto import tqdm
            starts = tqdm(starts, desc=desc, unit="batch", leave=False)
        out = torch.empty(len(rows), self.encoder.hidden_size, device=self.device)
        for i in starts:
            chosen = order[i:i + step]
            out[torch.tensor(chosen, device=self.device)] = self.encoder(
                self.collate([rows[r] for r in chosen]))
        return F.normalize(out, dim=-1)

    def encode_items(self) -> torch.Tensor:
        """Re-encode the whole catalogue ([CLS] + sentence, item position 1) -> [n_items, H]."""
        return self.encode([[i] for i in range(len(self.sentences))],
                           desc="Recformer: encoding catalogue").cpu()

    @torch.no_grad()
    def score(self, users: UserBatch) -> torch.Tensor:
        users_vec = self.encode(list(users.histories))
        return cosine_logits(users_vec, self.item_matrix, self.config.tau).cpu()

    # ------------------------------------------------------------------------- training
    def _batches(self, pairs: list, size: int, desc: str) -> Any:
        starts = range(0, len(pairs), size)
        if self.show_progress:
            from tqdm.auto import tqdm
            starts = tqdm(starts, desc=desc, unit="batch", leave=False)
        return ([pairs[i:i + size]] for i in starts)

    def _step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.encoder.parameters(), 1.0)
        optimizer.step()

    def _pretrain(self, train: TrainData, ctx: RunContext) -> dict:
        """Item-item contrastive (in-batch negatives) + mlm_weight x MLM on training sequences."""
        cfg, enc = self.config, self.encoder
        start = time.perf_counter()
        mlm = MLMHead(enc.word_embeddings).to(self.device)
        params = list(enc.parameters()) + list(mlm.transform.parameters()) + [mlm.bias]
        optimizer = torch.optim.AdamW(params, lr=cfg.pretrain_lr)
        rng = np.random.default_rng(ctx.seed)
        generator = torch.Generator().manual_seed(ctx.seed)
        losses, n_pairs = [], 0
        for epoch in range(cfg.pretrain_epochs):
            pairs = sample_pairs(train.sequences, cfg.pretrain_pairs_per_user, rng)
            pairs = pairs[:cfg.pretrain_epoch_pairs or None]
            n_pairs += len(pairs)
            for (batch,) in self._batches(pairs, cfg.pretrain_batch_size, f"pretrain {epoch + 1}"):
                enc.train()
                targets = torch.tensor([t for _, t in batch], device=self.device)
                seqs = self.inputs([p for p, _ in batch])
                if cfg.mlm_weight > 0:
                    seqs, labels = mask_tokens(seqs.to("cpu"), self.tokenizer.mask_token_id,
                                               enc.word_embeddings.num_embeddings,
                                               cfg.mlm_probability, generator)
                    seqs, labels = seqs.to(self.device), labels.to(self.device)
                hidden = enc.hidden_states(seqs)
                items = enc(self.inputs([[t] for t in batch_targets(batch)]))
                logits = cosine_logits(hidden[:, 0], items, cfg.tau)
                # The same item twice in a batch is not a negative of itself.
                same = (targets[:, None] == targets[None, :]) & ~torch.eye(
                    len(batch), dtype=torch.bool, device=self.device)
                loss = F.cross_entropy(logits.masked_fill(same, float("-inf")),
                                       torch.arange(len(batch), device=self.device))
                if cfg.mlm_weight > 0 and (labels != -100).any():
                    sel = labels != -100
                    loss = loss + cfg.mlm_weight * F.cross_entropy(mlm(hidden[sel]), labels[sel])
                self._step(optimizer, loss)
                ctx.count_examples(len(batch))
                losses.append(loss.item())
        enc.eval()
        info = {"pairs": n_pairs, "seconds": time.perf_counter() - start,
                "loss_first": losses[0] if losses else None,
                "loss_last": float(np.mean(losses[-10:])) if losses else None}
        return {"encoder": enc.state_dict(), "info": info}

    def _pretrain_on(self, source: TrainData, ctx: RunContext) -> dict:
        """:meth:`_pretrain` on another dataset: its sequences over its own item sentences; this
        catalogue's sentences are put back afterwards."""
        own = self.sentences
        self.sentences = item_sentences(self.attributes(source.catalog), self.tokenizer,
                                        self.config.attr_max_tokens)
        try:
            state = self._pretrain(source, ctx)
            state["info"]["source_mean_item_tokens"] = float(np.mean(
                [len(s.ids) for s in self.sentences]))
        finally:
            self.sentences = own
        return state

    def _train_epoch(self, optimizer: torch.optim.Optimizer, train: TrainData,
                     rng: np.random.Generator, ctx: RunContext, desc: str) -> float:
        """One finetuning epoch: full softmax of cos / tau against the frozen item matrix."""
        cfg, enc = self.config, self.encoder
        pairs = sample_pairs(train.sequences, cfg.pairs_per_user, rng)[:cfg.epoch_pairs or None]
        losses = []
        for (batch,) in self._batches(pairs, cfg.batch_size, desc):
            enc.train()
            logits = cosine_logits(enc(self.inputs([p for p, _ in batch])), self.item_matrix,
                                   cfg.tau)
            loss = F.cross_entropy(logits, torch.tensor(batch_targets(batch), device=self.device))
            self._step(optimizer, loss)
            ctx.count_examples(len(batch))
            losses.append(loss.item())
        return float(np.mean(losses)) if losses else float("nan")

    def _finetune(self, train: TrainData, validate: Callable[[], float], ctx: RunContext) -> dict:
        """Two-stage finetuning with early stopping; returns the best state and the losses."""
        cfg, enc = self.config, self.encoder
        start = time.perf_counter()
        rng = np.random.default_rng(ctx.seed + 1)
        zero_shot = best = validate()  # the zero-shot model is the state to beat
        best_state = (copy.deepcopy(enc.state_dict()), self.item_matrix.clone())
        reasons, losses = {}, []
        for stage, epochs in ((1, cfg.stage1_epochs), (2, cfg.stage2_epochs)):
            reasons[stage] = "epoch_cap"
            if epochs == 0:
                continue
            optimizer = torch.optim.AdamW(enc.parameters(), lr=cfg.finetune_lr)
            if stage == 2:  # reload the best checkpoint; its item matrix stays frozen for good
                enc.load_state_dict(best_state[0])
                self.item_matrix = self.encode_items().to(self.device)

            def train_round(epoch: int, stage: int = stage, optimizer=optimizer) -> None:
                if stage == 1 and epoch > 1:  # stage 1 re-encodes the catalogue every epoch
                    self.item_matrix = self.encode_items().to(self.device)
                losses.append({"stage": stage, "epoch": epoch, "train_loss": self._train_epoch(
                    optimizer, train, rng, ctx, f"stage {stage} epoch {epoch}")})

            stopped = train_with_patience(
                train_round, validate, max_rounds=epochs, patience=cfg.patience,
                snapshot=lambda: (copy.deepcopy(enc.state_dict()), self.item_matrix.clone()),
                best=best, best_state=best_state)
            best, best_state, reasons[stage] = stopped.best, stopped.best_state, stopped.reason
        ctx.report_stop(reasons[2])
        info = {"train_loss": losses, "stage_stop_reasons": reasons, "best_valid_ndcg10": best,
                "zero_shot_valid_ndcg10": zero_shot,
                "pairs_per_epoch": sum(min(cfg.pairs_per_user, len(s) - max(1, (len(s) - 1) // 2))
                                       for s in train.sequences if len(s) > 1),
                "seconds": time.perf_counter() - start}
        return {"encoder": best_state[0], "item_matrix": best_state[1].cpu(), "info": info}

    def diagnostics(self) -> dict[str, Any]:
        return {"backbone": self.config.backbone, "token_budget": self.max_tokens, **self.info}


def batch_targets(batch: list[tuple[np.ndarray, int]]) -> list[int]:
    return [t for _, t in batch]
