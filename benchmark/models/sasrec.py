"""The shared SASRec backbone (Kang & McAuley, 2018) and its training loop.

Used by SASRec-ID, SASRec-SID, SAID and as RA-Rec's ID model; only the item embedder changes.

Model (nanoGPT style): item vectors from a pluggable ``item_embedder`` + learned absolute
positions, ``n_layers`` pre-LN transformer blocks with causal self-attention, a final LayerNorm.
The score of item j at a position is ``h . item_embedder.all_items()[j]`` (shared input/output
embeddings). Decisions where the paper is open or we deviate from it:

- Pre-LN blocks (as nanoGPT and SASRec.pytorch; the paper is post-LN like RecBole): steadier
  with a single learning rate and no warm-up.
- The feed-forward layer is ``ffn_mult * hidden`` wide (4x, so hidden 64 gives RecBole's
  ``inner_size: 256``; the paper uses 1x) with GELU (RecBole's default activation).
- Sequences are left-padded; pad positions get a zero vector (+ position) and are never attended
  to as keys. Every query may attend to itself, so an all-pad row (an empty history, cold
  protocol) is well defined: it scores from position embeddings alone.
- Training covers every transition of every training sequence once per epoch: a long sequence
  is cut into consecutive windows of ``max_len`` inputs from its end, and every position of a
  window is trained at once (the paper takes only the last window per user per epoch).
- Loss: full softmax cross-entropy over the catalogue (``loss: ce``, the default: it is what
  RecBole's SASRec uses and what full-ranking evaluation rewards), or the paper's binary
  cross-entropy with one sampled negative per position (``loss: bce``); negatives are drawn
  uniformly from items outside the user's training sequence, from a seeded generator.
- Early stopping on ``validate()`` (the harness's NDCG@10 on validation targets) every
  ``eval_every`` epochs with ``patience`` evaluations without improvement
  (:func:`benchmark.models.training.train_with_patience`); the best state is restored before
  returning.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from benchmark.adapter import AdapterBase, RunContext, TrainData, UserBatch
from benchmark.config import (
    require_at_least,
    require_divisible,
    require_positive,
    require_probability,
    require_range,
)
from benchmark.models.training import get_or_train, train_with_patience

VERSION = 1  # bump when the model or training loop changes what a checkpoint means


@dataclass
class SASRecConfig:
    """SASRec architecture and training hyperparameters (the ML-100K `default` profile).

    Defaults chosen on validation NDCG@10 of ML-100K leave-one-out (see configs/methods/
    sasrec_id.yaml for what was tried).
    """

    max_len: int = 50
    hidden: int = 64
    n_layers: int = 2
    n_heads: int = 2
    ffn_mult: int = 4
    dropout: float = 0.2
    loss: Literal["ce", "bce"] = "ce"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 10  # evaluations without a new best validation NDCG@10
    eval_every: int = 1  # epochs between validate() calls

    def __post_init__(self) -> None:
        for key in ("max_len", "hidden", "n_layers", "n_heads", "ffn_mult", "batch_size",
                    "max_epochs", "patience", "eval_every"):
            require_at_least(key, getattr(self, key), 1)
        require_divisible("hidden", self.hidden, "n_heads", self.n_heads)
        require_probability("dropout", self.dropout, below_one=True)
        require_positive("lr", self.lr)
        require_range("weight_decay", self.weight_decay, 0)


class IDEmbedder(nn.Module):
    """A plain item-ID table: item index -> vector, shared by input and output."""

    def __init__(self, n_items: int, hidden: int) -> None:
        super().__init__()
        self.table = nn.Embedding(n_items, hidden)
        nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        return self.table(item_ids)

    def all_items(self) -> torch.Tensor:
        return self.table.weight


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % n_heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by n_heads ({n_heads})")
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (t.view(b, length, self.n_heads, d // self.n_heads).transpose(1, 2)
                   for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, length, d))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + ffn(ln(x))."""

    def __init__(self, hidden: int, n_heads: int, dropout: float, ffn_mult: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.attn = CausalSelfAttention(hidden, n_heads, dropout)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn_mult * hidden), nn.GELU(),
                                 nn.Linear(ffn_mult * hidden, hidden))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), allowed))
        return x + self.drop(self.ffn(self.ln2(x)))


class SASRec(nn.Module):
    """Causal self-attention over the last ``max_len`` items of a sequence."""

    def __init__(self, item_embedder: nn.Module, max_len: int, hidden: int, n_layers: int,
                 n_heads: int, dropout: float, *, ffn_mult: int = 4) -> None:
        super().__init__()
        self.item_embedder, self.max_len = item_embedder, max_len
        self.positions = nn.Embedding(max_len, hidden)
        nn.init.normal_(self.positions.weight, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(hidden, n_heads, dropout, ffn_mult) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(hidden)

    def forward(self, seqs: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """[B, L] item indices (any value where ``pad_mask`` is True) -> [B, L, hidden]."""
        length = seqs.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequence length {length} > max_len {self.max_len}")
        items = self.item_embedder(seqs.clamp(min=0))
        items = items.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        pos = self.positions(torch.arange(self.max_len - length, self.max_len, device=seqs.device))
        x = self.drop(items + pos)
        causal = torch.ones(length, length, dtype=torch.bool, device=seqs.device).tril()
        eye = torch.eye(length, dtype=torch.bool, device=seqs.device)
        allowed = (causal & ~pad_mask[:, None, :]) | eye  # [B, L, L]: query i may see key j
        allowed = allowed.unsqueeze(1)  # broadcast over heads
        for block in self.blocks:
            x = block(x, allowed)
        return self.ln_f(x)

    @property
    def device(self) -> torch.device:
        return self.positions.weight.device

    def represent(self, batch: UserBatch) -> torch.Tensor:
        """The sequence representation after each user's history (last position). [B, hidden]."""
        seqs = torch.as_tensor(batch.padded(self.max_len, pad=-1), device=self.device)
        return self.forward(seqs, seqs < 0)[:, -1]

    def score_last(self, batch: UserBatch) -> torch.Tensor:
        """Scores of every item as the next one after each user's history. [B, n_items]."""
        return self.represent(batch) @ self.item_embedder.all_items().T


# --------------------------------------------------------------------------- training data


def training_windows(sequences: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray,
                                                                          np.ndarray]:
    """Cut every sequence into (input, target) windows covering each transition once.

    Returns left-padded ``inputs`` and ``targets`` [N, max_len] (-1 = pad) and the ``owner``
    user of each window (for negative sampling). Windows are taken from the end backwards, so
    the most recent transitions always see a full ``max_len`` context.
    """
    inputs, targets, owner = [], [], []
    for u, seq in enumerate(sequences):
        end = len(seq) - 1  # seq[end] is the last target
        while end > 0:
            start = max(0, end - max_len)
            row_in = np.full(max_len, -1, dtype=np.int64)
            row_out = np.full(max_len, -1, dtype=np.int64)
            row_in[max_len - (end - start):] = seq[start:end]
            row_out[max_len - (end - start):] = seq[start + 1:end + 1]
            inputs.append(row_in)
            targets.append(row_out)
            owner.append(u)
            end = start
    if not inputs:
        empty = np.zeros((0, max_len), dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.int64)
    return np.stack(inputs), np.stack(targets), np.asarray(owner, dtype=np.int64)


def sample_negatives(owner: torch.Tensor, positives: torch.Tensor, seen: torch.Tensor,
                     n_items: int, generator: torch.Generator, tries: int = 10) -> torch.Tensor:
    """One uniform negative per position, redrawn (up to ``tries`` times) while it is an item of
    the owner's training sequence. ``seen`` holds sorted keys ``user * n_items + item`` (sparse,
    so a large catalogue does not need a users x items matrix)."""
    negs = torch.randint(n_items, positives.shape, generator=generator)
    users = owner.unsqueeze(1).expand_as(negs)
    for _ in range(tries):
        bad = torch.isin(users * n_items + negs, seen)
        if not bad.any():
            break
        negs = torch.where(bad, torch.randint(n_items, positives.shape, generator=generator), negs)
    return negs


def _loss(model: SASRec, inputs: torch.Tensor, targets: torch.Tensor, cfg: SASRecConfig,
          negatives: torch.Tensor | None) -> torch.Tensor:
    h = model(inputs, inputs < 0)
    keep = targets >= 0
    h, pos = h[keep], targets[keep]  # every non-pad position of every window at once
    table = model.item_embedder.all_items()
    if cfg.loss == "ce":
        return F.cross_entropy(h @ table.T, pos)
    neg = negatives[keep]
    # F.embedding rather than table[pos]: indexing's backward accumulates repeated rows in a
    # thread-dependent order, so on a multi-threaded CPU two runs of one seed trained apart
    # (Amazon loo seed 0, two idle runs: NDCG@10 0.0331 and 0.0384); embedding's backward is
    # deterministic, and at one thread the two are bitwise equal.
    pos_logit = (h * F.embedding(pos, table)).sum(-1)
    neg_logit = (h * F.embedding(neg, table)).sum(-1)
    return (F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit))
            + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit)))


# --------------------------------------------------------------------------- training loop


def checkpoint_key(model: SASRec, ctx: RunContext, cfg: Any, extra: Any = None) -> list:
    """Everything that changes a trained SASRec: data, item text, config, code version, seed."""
    return [ctx.train_hash, ctx.catalog_hash, type(model.item_embedder).__name__,
            dataclasses.asdict(cfg), VERSION, ctx.seed, extra]


def train_sasrec(model: SASRec, train: TrainData, validate: Callable[[], float],
                 ctx: RunContext, cfg: SASRecConfig, *, cache_extra: Any = None) -> dict:
    """Train ``model`` on ``train.sequences`` with early stopping on ``validate()``.

    A checkpoint keyed by :func:`checkpoint_key` (``cache_extra`` adds whatever else shapes the
    embedder) is loaded instead of training when it exists. Returns ``epochs``, ``train_loss``
    (mean per epoch), ``best_valid_ndcg10`` and ``cached``. Examples counted for the curve are
    next-item predictions (non-pad window positions).
    """
    def train_now() -> dict:
        info = _train(model, train, validate, ctx, cfg)
        return {"state": model.state_dict(), "info": info}

    saved, cached = get_or_train(ctx, "sasrec", checkpoint_key(model, ctx, cfg, cache_extra),
                                 train_now, map_location=str(model.device))
    model.load_state_dict(saved["state"])
    model.eval()
    return {**saved["info"], "cached": cached}


def _train(model: SASRec, train: TrainData, validate: Callable[[], float], ctx: RunContext,
           cfg: SASRecConfig) -> dict:
    torch.manual_seed(ctx.seed)  # dropout
    gen = torch.Generator().manual_seed(ctx.seed)  # shuffling and negatives
    inputs, targets, owner = (torch.as_tensor(a) for a in
                              training_windows(train.sequences, cfg.max_len))
    users, items = train.pairs()
    seen = torch.unique(torch.as_tensor(users * train.n_items + items))
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses: list[float] = []

    def epoch(number: int) -> None:
        model.train()
        order = torch.randperm(len(inputs), generator=gen)
        total = 0.0
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"SASRec epoch {number}/{cfg.max_epochs}",
                   leave=False, disable=not ctx.show_progress)
        for lo in bar:
            idx = order[lo:lo + cfg.batch_size]
            negs = (sample_negatives(owner[idx], targets[idx], seen, train.n_items, gen)
                    if cfg.loss == "bce" else None)
            dev = model.device
            loss = _loss(model, inputs[idx].to(dev), targets[idx].to(dev), cfg,
                         None if negs is None else negs.to(dev))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            ctx.count_examples(int((targets[idx] >= 0).sum()))
            total += loss.item() * len(idx)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        losses.append(total / len(inputs))

    @torch.no_grad()
    def evaluate() -> float:
        model.eval()
        return validate()

    if not len(inputs):
        ctx.report_stop("no_training")
        return {"epochs": 0, "train_loss": [], "best_valid_ndcg10": None}
    stopped = train_with_patience(epoch, evaluate, max_rounds=cfg.max_epochs,
                                  patience=cfg.patience, eval_every=cfg.eval_every,
                                  snapshot=lambda: copy.deepcopy(model.state_dict()))
    if stopped.best_state is not None:
        model.load_state_dict(stopped.best_state)
    model.eval()
    ctx.report_stop(stopped.reason)
    return {"epochs": stopped.rounds, "train_loss": losses,
            "best_valid_ndcg10": stopped.best if math.isfinite(stopped.best) else None}


def sasrec_id_config(cfg: Any) -> SASRecConfig:
    """The SASRec fields of ``cfg`` (a config that extends :class:`SASRecConfig`) alone."""
    return SASRecConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(SASRecConfig)})


def build_sasrec_id(n_items: int, ctx: RunContext, cfg: Any) -> SASRec:
    """SASRec with a plain item-ID table, seeded as every SASRec-ID run is (train it with
    :func:`fit_sasrec_id`)."""
    cfg = sasrec_id_config(cfg)
    torch.manual_seed(ctx.seed)  # initial weights
    return SASRec(IDEmbedder(n_items, cfg.hidden), cfg.max_len, cfg.hidden, cfg.n_layers,
                  cfg.n_heads, cfg.dropout, ffn_mult=cfg.ffn_mult).to(ctx.device)


def fit_sasrec_id(model: SASRec, train: TrainData, validate: Callable[[], float],
                  ctx: RunContext, cfg: Any) -> dict:
    """Train (or load from the cache) a :func:`build_sasrec_id` model on ``train``.

    The one path of ``sasrec_id`` (and ``sasrec_id_bce``) and of RA-Rec's ID model: the same
    seed, initialisation and checkpoint key (:func:`checkpoint_key` of the SASRec fields of
    ``cfg`` alone), so whichever method runs first on a split and seed trains it and the other
    loads it. ``validate()`` must score ``model`` while it trains.
    """
    return train_sasrec(model, train, validate, ctx, sasrec_id_config(cfg))


# --------------------------------------------------------------------------- adapter base


class SASRecAdapter(AdapterBase):
    """What every SASRec-backbone method shares: build, train, score, diagnostics.

    A subclass provides the item embedder (:meth:`item_embedder`) and, when the embedder
    depends on artefacts beyond the config (e.g. semantic IDs), :meth:`checkpoint_extra`.
    """

    Config = SASRecConfig
    output = "scores"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.model: SASRec | None = None
        self.training_info: dict[str, Any] = {}

    def prepare(self, train: TrainData, ctx: RunContext) -> None:
        """Build or load what the embedder needs (before the seeded weight initialisation)."""

    def item_embedder(self, train: TrainData, ctx: RunContext) -> nn.Module:
        raise NotImplementedError

    def checkpoint_extra(self) -> Any:
        return None

    def fit(self, train: TrainData, validate: Callable[[], float], ctx: RunContext) -> None:
        cfg = self.config
        self.prepare(train, ctx)
        torch.manual_seed(ctx.seed)  # initial weights
        self.model = SASRec(self.item_embedder(train, ctx), cfg.max_len, cfg.hidden,
                            cfg.n_layers, cfg.n_heads, cfg.dropout,
                            ffn_mult=cfg.ffn_mult).to(ctx.device)
        self.training_info = train_sasrec(self.model, train, validate, ctx, cfg,
                                          cache_extra=self.checkpoint_extra())

    @torch.no_grad()
    def score(self, users: UserBatch) -> torch.Tensor:
        assert self.model is not None, "fit() first"
        self.model.eval()
        return self.model.score_last(users).cpu()

    def diagnostics(self) -> dict[str, Any]:
        return {k: self.training_info[k] for k in ("epochs", "best_valid_ndcg10", "cached")
                if k in self.training_info}
