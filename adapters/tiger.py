"""TIGER: generative retrieval over semantic IDs, without a language model (Rajput et al., 2023).

An encoder-decoder transformer trained from scratch (``benchmark.models.tiger``) reads the user's
history as semantic-ID tokens, plus a hashed user token, and writes the next item's ID one code
per level. It is the control between SASRec-SID (scores items by their code embeddings) and the
SID-LLM (writes codes with a pretrained LLM): what the LLM adds is the SID-LLM minus TIGER.

- Training: every training prefix of every user (history = the items before it, the last
  ``history_items`` of them; target = the item), teacher forcing, cross-entropy summed over
  the ID's levels, AdamW. An epoch is every prefix, or a seeded sample of ``epoch_examples``
  of them where the profile caps it (said in the config).
- Model selection: ``validate()`` (NDCG@10 by beam search, over every validation user or a
  fixed sample of ``validate_cases``) after each epoch, early stopping with ``patience``, the
  best epoch's weights kept.
- Ranking: beam search over the trie of valid IDs minus the user's history
  (``benchmark.models.sid_decoding``, the decoder the SID-LLM uses), ``beam_width`` wide in
  validation (top-20 lists) and ``list_length`` wide at test, so the test list holds 100 items
  and HR@100 is defined. Items that share a full ID are one leaf: they are tied, pessimistically
  (``tie_groups``; the one collision rule of every SID method).
- Semantic IDs: ``semantic_ids`` holds SemanticIDConfig keys, the same artefact SASRec-SID and the
  SID-LLM build (our RQ-VAE by default; ``source: published:<variant>`` reads a published index).

Deviations from the paper (sizes in configs/methods/tiger.yaml): the default profile's network is
scaled down to what a 2-core CPU trains to its validation optimum within the budget; the `gpu`
and `paper` profiles use the paper's size (4 + 4 layers, d_model 128, 6 heads of 64, FFN 1024,
dropout 0.1, history 20, 2,000 user buckets).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.adapter import AdapterBase, RunContext, TrainData, UserBatch
from benchmark.cache import stable_hash
from benchmark.config import require_at_least, require_nested, require_positive, require_range
from benchmark.models.semantic_ids import SemanticIDConfig, build_semantic_ids, semantic_id_config
from benchmark.models.sid_decoding import SIDTrie, trie_beam_search
from benchmark.models.tiger import TigerBeamScorer, TigerModel
from benchmark.models.training import get_or_train, train_with_patience
from benchmark.registry import register


def training_prefixes(sequences: list[np.ndarray], history_items: int
                      ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """(user, history, target) of every training prefix: each item after a user's first, with
    the (at most ``history_items``) items before it."""
    users, histories, targets = [], [], []
    for u, seq in enumerate(sequences):
        for t in range(1, len(seq)):
            users.append(u)
            histories.append(seq[max(0, t - history_items):t])
            targets.append(seq[t])
    return (np.asarray(users, dtype=np.int64), histories, np.asarray(targets, dtype=np.int64))


def length_buckets(order: torch.Tensor, lengths: torch.Tensor, batch_size: int,
                   gen: torch.Generator, pool: int = 32) -> list[torch.Tensor]:
    """Batches of ``order`` (already shuffled) in which examples have similar history lengths:
    each pool of ``pool`` batches is sorted by length and cut, then the batches are shuffled.
    The encoder drops the columns a batch does not use, so short histories train cheaply."""
    batches: list[torch.Tensor] = []
    for lo in range(0, len(order), batch_size * pool):
        part = order[lo:lo + batch_size * pool]
        part = part[torch.argsort(lengths[part], stable=True)]
        batches.extend(part.split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


@register("tiger")
class TIGER(AdapterBase):
    @dataclass
    class Config:
        semantic_ids: dict = field(default_factory=dict)  # SemanticIDConfig keys
        d_model: int = 128
        n_heads: int = 6
        head_dim: int = 64
        ffn_dim: int = 1024
        encoder_layers: int = 4
        decoder_layers: int = 4
        dropout: float = 0.1
        history_items: int = 20
        user_buckets: int = 2000  # 0 = no user token
        lr: float = 1e-3
        # Learning rate on a plateau: after this many validations without a new best, the rate
        # is multiplied by lr_decay (and the count restarts); 0 = a constant rate.
        lr_decay_patience: int = 0
        lr_decay: float = 0.5
        weight_decay: float = 0.01
        batch_size: int = 256
        max_epochs: int = 100
        patience: int = 3
        epoch_examples: int = 0  # prefixes per epoch: 0 = every one, else a seeded sample
        validate_cases: int = 0  # validation cases per validate(): 0 = every one
        beam_width: int = 20  # validation beam (>= the harness's top_k)
        list_length: int = 100  # the test list and its beam
        eval_batch: int = 64  # users per beam-search batch

        def __post_init__(self) -> None:
            for key in ("d_model", "n_heads", "head_dim", "ffn_dim", "encoder_layers",
                        "decoder_layers", "history_items", "batch_size", "max_epochs",
                        "patience", "beam_width", "list_length", "eval_batch"):
                require_at_least(key, getattr(self, key), 1)
            for key in ("user_buckets", "epoch_examples", "validate_cases", "lr_decay_patience"):
                require_at_least(key, getattr(self, key), 0)
            require_positive("lr", self.lr)
            require_range("weight_decay", self.weight_decay, 0)
            require_range("dropout", self.dropout, 0, 1)
            require_range("lr_decay", self.lr_decay, 0, 1)
            require_nested("semantic_ids", SemanticIDConfig, self.semantic_ids)

    needs = frozenset({"item_text"})
    output = "ranking"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.list_length = config.list_length
        self.model: TigerModel | None = None
        self.info: dict[str, Any] = {}

    # ------------------------------------------------------------------ fit

    def fit(self, train: TrainData, validate: Callable[..., float], ctx: RunContext) -> None:
        cfg = self.config
        sids = build_semantic_ids(train.catalog, semantic_id_config(cfg.semantic_ids, ctx.seed),
                                  cache=ctx.cache, device=ctx.device,
                                  show_progress=ctx.show_progress, protocol=ctx.protocol)
        self.codes, self.sid_diagnostics = sids.codes, sids.diagnostics
        self.trie = SIDTrie(sids.codes, sids.level_sizes)
        self.tie_groups = sids.tie_groups()
        torch.manual_seed(ctx.seed)  # initial weights
        self.model = TigerModel(
            sids.level_sizes, history_items=cfg.history_items, user_buckets=cfg.user_buckets,
            d_model=cfg.d_model, n_heads=cfg.n_heads, head_dim=cfg.head_dim,
            ffn_dim=cfg.ffn_dim, encoder_layers=cfg.encoder_layers,
            decoder_layers=cfg.decoder_layers, dropout=cfg.dropout).to(ctx.device)
        key = [ctx.train_hash, ctx.catalog_hash, dataclasses.asdict(cfg), ctx.seed,
               stable_hash(sids.codes)]

        def train_now() -> dict:
            info = self._train(train, validate, ctx)
            return {"state": self.model.state_dict(), "info": info}

        saved, cached = get_or_train(ctx, "tiger", key, train_now, map_location=ctx.device)
        self.model.load_state_dict(saved["state"])
        self.model.eval()
        self.info = {**saved["info"], "cached": cached}

    def _train(self, train: TrainData, validate: Callable[..., float], ctx: RunContext) -> dict:
        cfg, model = self.config, self.model
        gen = torch.Generator().manual_seed(ctx.seed)  # shuffling and epoch samples
        users, histories, targets = training_prefixes(train.sequences, cfg.history_items)
        src = model.source(users, histories, self.codes).cpu()
        tgt = torch.as_tensor(self.codes[targets])
        optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr,
                                      weight_decay=cfg.weight_decay)
        losses: list[float] = []
        per_epoch = min(cfg.epoch_examples or len(src), len(src))

        lengths = (src != 0).sum(1)

        def epoch(number: int) -> None:
            model.train()
            order = torch.randperm(len(src), generator=gen)[:per_epoch]
            batches = length_buckets(order, lengths, cfg.batch_size, gen)
            total = 0.0
            bar = tqdm(batches, desc=f"TIGER epoch {number}/{cfg.max_epochs}", leave=False,
                       disable=not ctx.show_progress)
            for idx in bar:
                loss = model.loss(src[idx].to(model.device), tgt[idx].to(model.device))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                ctx.count_examples(len(idx))
                total += loss.item() * len(idx)
                bar.set_postfix(loss=f"{loss.item():.4f}")
            losses.append(total / max(len(order), 1))

        plateau = {"best": -math.inf, "since": 0}
        rates: list[list[float]] = []  # [validation number, learning rate after it] per decay

        @torch.no_grad()
        def evaluate() -> float:
            model.eval()
            value = validate(cases=cfg.validate_cases or None)
            if cfg.lr_decay_patience:
                plateau["since"] = 0 if value > plateau["best"] else plateau["since"] + 1
                plateau["best"] = max(plateau["best"], value)
                if plateau["since"] >= cfg.lr_decay_patience:
                    for group in optimiser.param_groups:
                        group["lr"] *= cfg.lr_decay
                    plateau["since"] = 0
                    rates.append([len(losses), optimiser.param_groups[0]["lr"]])
            return value

        if not len(src):
            ctx.report_stop("no_training")
            return {"epochs": 0, "train_loss": [], "best_valid_ndcg10": None,
                    "examples_per_epoch": 0}
        stopped = train_with_patience(epoch, evaluate, max_rounds=cfg.max_epochs,
                                      patience=cfg.patience,
                                      snapshot=lambda: copy.deepcopy(model.state_dict()))
        if stopped.best_state is not None:
            model.load_state_dict(stopped.best_state)
        ctx.report_stop(stopped.reason)
        extra = {"lr_decays": rates} if cfg.lr_decay_patience else {}
        return {**extra, "epochs": stopped.rounds, "train_loss": [round(x, 5) for x in losses],
                "best_valid_ndcg10": stopped.best if math.isfinite(stopped.best) else None,
                "examples_per_epoch": per_epoch, "training_prefixes": len(src)}

    # ------------------------------------------------------------------ ranking

    @torch.no_grad()
    def rank(self, users: UserBatch, k: int) -> torch.Tensor:
        assert self.model is not None, "fit() first"
        self.model.eval()
        width = max(self.config.beam_width, k)
        out = []
        step = self.config.eval_batch
        for lo in range(0, len(users), step):
            hs = list(users.histories[lo:lo + step])
            src = self.model.source(users.users[lo:lo + step], hs, self.codes)
            items, _ = trie_beam_search(TigerBeamScorer(self.model, src), self.trie, hs,
                                        width=width, k=k)
            out.append(items)
        return torch.as_tensor(np.concatenate(out) if out else np.zeros((0, k), np.int64))

    def diagnostics(self) -> dict[str, Any]:
        return {**{k: self.info[k] for k in ("epochs", "best_valid_ndcg10", "cached",
                                             "examples_per_epoch", "training_prefixes",
                                             "lr_decays")
                   if k in self.info},
                "semantic_ids": self.sid_diagnostics, "list_length": self.list_length,
                "tied_items": int(0 if self.tie_groups is None else
                                  len(self.tie_groups) - len(np.unique(self.tie_groups)))}
