"""RA-Rec (Yu et al., 2024, arXiv 2402.04527): ID vectors aligned into a frozen LM, two towers.

1. ID model: SASRec-ID's own cached checkpoint for this split and seed
   (:func:`~benchmark.models.sasrec.fit_sasrec_id`: same key, so whichever of ``sasrec_id`` and
   ``ra_rec`` runs first trains it on the training data and the other loads it). The SASRec
   fields of this config are that model's; the YAML mirrors sasrec_id's blocks and a test checks
   they resolve alike. While it trains, ``score`` is SASRec's (``validate()`` scores it); its
   validation points go to the diagnostics, not to RA-Rec's curve. Then it is frozen.
2. Hybrid prompts (:mod:`benchmark.models.prefix_towers`): user tower = ``user_prompt`` with the
   last ``history_titles`` titles, item tower = ``item_prompt`` with the item's title; each with
   a per-layer attention prefix of ``context_tokens`` learnable pairs (per tower) and
   ``id_tokens`` pairs mapped linearly from the SASRec user vector (the history's sequence
   representation) or item vector (its ID-table row). No chat template: every token costs.
   Prefix keys are not rotated (no position); the text starts at position P (the module says
   why). The representation is the final hidden state at the last prompt token; score =
   cosine of the two towers (dot product of unit vectors: raw LM states are anisotropic).
3. Training: only the alignment module (context prefixes + ID map). Loss = BPR over in-batch
   negatives + ``align_weight`` x the contrastive alignment term (InfoNCE between each
   hybrid-prompt vector and the hard-prompt-only vector of the same prompt, both towers; the
   hard-only pass has nothing trainable, so it is computed once per prompt and memoised).
   Tuning data: :mod:`benchmark.models.tuning_data` (``selection: paper`` or ``random``).
   ``validate()`` every ``align_eval_every`` epochs, the best state kept (with its item
   vectors, so the catalogue is not encoded again for the test).
4. Serving: the item tower encodes the whole catalogue once (cold items by their text and their
   untrained ID row), then users are ranked by dot product.

``ra_rec_hard`` (``id_prompt: false``) drops the ID soft prompt: hard prompt + context prefixes,
trained the same way, so the difference is what the ID alignment adds.

``precision`` (:func:`benchmark.models.llm.compute_precision`): every pass through the frozen LM
(calibration, training, both towers' encoding) runs at it; under ``bfloat16`` the LM's Linear
weights are cast once when it loads (:func:`~benchmark.models.llm.cast_frozen_linears`). It is
part of the checkpoint key only when it is not ``float32``, so float32 checkpoints made before
the setting existed stay valid.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from benchmark.adapter import AdapterBase, RunContext, TrainData, UserBatch
from benchmark.config import require_at_least, require_positive, to_dict
from benchmark.models.llm import PRECISIONS, cast_frozen_linears, compute_precision
from benchmark.models.prefix_towers import (
    KVShape,
    PrefixAlignment,
    Towers,
    TowerTraining,
    train_round,
)
from benchmark.models.sasrec import SASRecConfig, build_sasrec_id, fit_sasrec_id
from benchmark.models.training import get_or_train, train_with_patience
from benchmark.models.tuning_data import select_tuning_data
from benchmark.registry import register

VERSION = 1


@register("ra_rec")
class RARec(AdapterBase):
    @dataclass
    class Config(SASRecConfig):
        """SASRecConfig's fields configure the ID model (as sasrec_id's); the rest RA-Rec."""

        backbone: str = "packaged:smollm2"  # or a HF id / local dir, or "tiny:random"
        dtype: str = "auto"  # float32 on CPU, bf16 on a GPU that supports it
        user_prompt: str = "History:{history}. Next:"
        item_prompt: str = "Item:{title}."
        history_titles: int = 3  # the last n titles of the history in the user prompt
        history_title_tokens: int = 8  # each cut to this many tokens
        item_title_tokens: int = 16
        context_tokens: int = 2  # learnable prefix pairs per layer and tower
        id_tokens: int = 2  # prefix pairs per layer from the ID vector
        id_prompt: bool = True  # false: no ID soft prompt at all (ra_rec_hard)
        selection: Literal["paper", "random"] = "paper"
        tuning_examples: int = 400
        n_buckets: int = 3  # per axis: history length x target popularity
        denoise_window: int = 10  # history titles the target must share a word with
        align_epochs: int = 2
        align_batch: int = 16
        align_lr: float = 3e-3
        align_eval_every: int = 1  # epochs between validate() calls (and after the last)
        temperature: float = 0.1
        align_weight: float = 0.1
        encode_batch: int = 32
        precision: Literal["float32", "bfloat16"] = "float32"  # passes through the frozen LM

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.precision not in PRECISIONS:
                raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
            for key in ("history_titles", "history_title_tokens", "item_title_tokens",
                        "tuning_examples", "n_buckets", "denoise_window", "align_epochs",
                        "align_batch", "align_eval_every", "encode_batch"):
                require_at_least(key, getattr(self, key), 1)
            for key in ("context_tokens", "id_tokens"):
                require_at_least(key, getattr(self, key), 0)
            if self.context_tokens + self.id_soft_tokens == 0:
                raise ValueError("context_tokens + id_tokens: nothing would train")
            for key in ("align_lr", "temperature"):
                require_positive(key, getattr(self, key))
            require_at_least("align_weight", self.align_weight, 0)
            if self.user_prompt.count("{history}") != 1:
                raise ValueError("user_prompt must contain {history} exactly once")
            if self.item_prompt.count("{title}") != 1:
                raise ValueError("item_prompt must contain {title} exactly once")

        @property
        def id_soft_tokens(self) -> int:
            return self.id_tokens if self.id_prompt else 0

    needs = frozenset({"item_text"})
    output = "scores"
    wants_gpu = True

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.id_model: Any = None
        self.towers: Towers | None = None
        self.item_vectors: torch.Tensor | None = None  # item tower of the current state
        self.info: dict[str, Any] = {}
        self.progress: Callable | None = None
        self.device = "cpu"

    def _lm_precision(self) -> Any:
        return compute_precision(self.device, self.config.precision)

    # ------------------------------------------------------------------ fit

    def fit(self, train: TrainData, validate: Callable[[], float], ctx: RunContext) -> None:
        from benchmark.models.llm import load_causal_lm

        cfg = self.config
        self.progress = _progress(ctx)
        self.id_model = build_sasrec_id(train.n_items, ctx, cfg)
        mark = len(ctx.curve)
        id_info = fit_sasrec_id(self.id_model, train, validate, ctx, cfg)
        self.id_model.requires_grad_(False)
        self.info["id_model"] = {**{k: id_info.get(k) for k in
                                    ("epochs", "best_valid_ndcg10", "cached")},
                                 "curve": ctx.curve[mark:]}
        del ctx.curve[mark:]  # RA-Rec's curve holds RA-Rec's points only

        lm, tok = load_causal_lm(cfg.backbone, device=ctx.device, dtype=cfg.dtype, seed=ctx.seed)
        lm.requires_grad_(False)
        self.device = ctx.device
        cast_frozen_linears(lm, cfg.precision)  # frozen for good: never restored
        self.lm, self.pad = lm, tok.pad_token_id
        titles = [train.catalog.title(i) for i in range(train.n_items)]
        self.prompts = PromptIds(tok, cfg, titles)
        item_prompts = [self.prompts.item(i) for i in range(train.n_items)]
        torch.manual_seed(ctx.seed)  # the alignment module
        align = PrefixAlignment(KVShape.of(lm), cfg.hidden, cfg.id_soft_tokens,
                                cfg.context_tokens).to(ctx.device)
        calib = np.random.default_rng(ctx.seed).permutation(train.n_items)[:64]
        with self._lm_precision():
            align.calibrate(lm, [item_prompts[i] for i in calib], self.pad)
        self.align = align
        with torch.no_grad():
            ids = self.id_model.item_embedder.all_items().detach().float()
        self.towers = Towers(lm, align, self.pad, item_prompts, ids)

        sel = select_tuning_data(train.sequences, titles, train.item_counts, cfg.tuning_examples,
                                 cfg.selection, n_buckets=cfg.n_buckets,
                                 window=cfg.denoise_window, seed=ctx.seed)
        self.info["selection"] = sel.stats
        histories = [train.sequences[u][:t] for u, t in zip(sel.users, sel.positions)]
        targets = np.array([train.sequences[u][t] for u, t in zip(sel.users, sel.positions)],
                           dtype=np.int64)
        self.info["prompt_tokens_mean"] = {
            "user": float(np.mean([len(self.prompts.user(h)) for h in histories] or [0])),
            "item": float(np.mean([len(p) for p in item_prompts]))}
        settings = {k: v for k, v in to_dict(cfg).items()
                    if k != "precision" or v != "float32"}
        key = ["ra_rec", VERSION, ctx.train_hash, ctx.catalog_hash, settings, ctx.seed]
        saved, cached = get_or_train(
            ctx, "ra_rec", key, lambda: self._tune(histories, targets, validate, ctx),
            map_location=str(ctx.device))
        if cached:
            align.load_state_dict(saved["state"])
            self.item_vectors = None
        self.info["tuning"] = {**saved["stats"], "cached": cached}

    def _tune(self, histories: list[np.ndarray], targets: np.ndarray,
              validate: Callable[[], float], ctx: RunContext) -> dict[str, Any]:
        """Train the alignment module; the best validated state (and its item vectors) kept."""
        cfg, towers = self.config, self.towers
        assert towers is not None
        if not len(targets):
            ctx.report_stop("no_training")
            return {"state": self.align.state_dict(), "stats": {"epochs": 0}}
        s = TowerTraining(cfg.align_epochs, cfg.align_batch, cfg.align_lr, cfg.temperature,
                          cfg.align_weight, ctx.seed)
        user_prompts = [self.prompts.user(h) for h in histories]
        user_vectors = self._id_user_vectors(histories)
        opt = torch.optim.AdamW(self.align.parameters(), lr=s.lr, weight_decay=0.0)
        steps = cfg.align_epochs * math.ceil(len(targets) / s.batch_size)
        warmup = max(1, steps // 20)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: min(1.0, (i + 1) / warmup) * max(0.05, 1 - i / steps))
        rng = np.random.default_rng(ctx.seed)
        epochs: list[dict] = []

        def round_(number: int) -> None:
            self.item_vectors = None  # the item tower changes with the module
            with self._lm_precision():
                epochs.append(train_round(towers, user_prompts, user_vectors, targets, s, opt,
                                          sched, rng, on_step=ctx.count_examples,
                                          progress=self.progress))

        stopped = train_with_patience(
            round_, validate, max_rounds=cfg.align_epochs, patience=cfg.align_epochs,
            eval_every=cfg.align_eval_every,
            snapshot=lambda: (copy.deepcopy(self.align.state_dict()), self.item_vectors))
        if stopped.best_state is not None:
            state, self.item_vectors = stopped.best_state
            self.align.load_state_dict(state)
        ctx.report_stop(stopped.reason)
        return {"state": self.align.state_dict(),
                "stats": {"epochs": epochs, "examples": int(len(targets)),
                          "best_valid_ndcg10": stopped.best if math.isfinite(stopped.best)
                          else None}}

    @torch.no_grad()
    def _id_user_vectors(self, histories: list[np.ndarray]) -> torch.Tensor:
        """SASRec's sequence representation after each history, [n, hidden]."""
        self.id_model.eval()
        out = [self.id_model.represent(UserBatch(np.zeros(len(chunk)), chunk))
               for chunk in (histories[lo:lo + 256] for lo in range(0, len(histories), 256))]
        return torch.cat(out) if out else torch.zeros(0, self.config.hidden)

    # ------------------------------------------------------------------ serving

    def encode_catalogue(self) -> torch.Tensor:
        """The item tower over every item, [n_items, d] (once per trained state)."""
        assert self.towers is not None
        items = np.arange(len(self.towers.item_prompts))
        with self._lm_precision():
            return self.towers.encode_items(items, self.config.encode_batch,
                                            self.progress).float()

    @torch.no_grad()
    def score(self, users: UserBatch) -> torch.Tensor:
        assert self.id_model is not None, "fit() first"
        if self.towers is None:  # the ID model is still training: validate() scores it
            self.id_model.eval()
            return self.id_model.score_last(users).cpu()
        if self.item_vectors is None:
            self.item_vectors = self.encode_catalogue()
        prompts = [self.prompts.user(h) for h in users.histories]
        vectors = self._id_user_vectors(users.histories)  # SASRec's, at float32
        with self._lm_precision():
            u = self.towers.encode_many("user", prompts, vectors, self.config.encode_batch).float()
        return torch.nn.functional.normalize(u, dim=-1) @ \
            torch.nn.functional.normalize(self.item_vectors, dim=-1).T

    def diagnostics(self) -> dict[str, Any]:
        trainable, total = self.parameter_counts()
        shape = self.towers.align.shape if self.towers else None
        return {**self.info, "trainable_parameters": trainable, "total_parameters": total,
                "prefix": {"context_tokens": self.config.context_tokens,
                           "id_tokens": self.config.id_soft_tokens,
                           "kv_shape": None if shape is None else vars(shape)}}


class PromptIds:
    """Token ids of the two towers' hard prompts, titles tokenized once and cut."""

    def __init__(self, tok: Any, cfg: Any, titles: list[str]) -> None:
        def ids(text: str) -> list[int]:
            return list(tok(text, add_special_tokens=False)["input_ids"]) if text else []

        self.cfg = cfg
        self.titles = [ids(" " + t) for t in titles]
        self.user_before, self.user_after = map(ids, cfg.user_prompt.split("{history}"))
        self.item_before, self.item_after = map(ids, cfg.item_prompt.split("{title}"))
        self.sep, self.none = ids(";"), ids(" none")

    def user(self, history: np.ndarray) -> list[int]:
        body: list[int] = []
        for n, i in enumerate(history[-self.cfg.history_titles:] if len(history) else []):
            body += (self.sep if n else []) + self.titles[i][:self.cfg.history_title_tokens]
        return self.user_before + (body or self.none) + self.user_after

    def item(self, i: int) -> list[int]:
        return self.item_before + self.titles[i][:self.cfg.item_title_tokens] + self.item_after


def _progress(ctx: RunContext) -> Callable | None:
    if not ctx.show_progress:
        return None
    from tqdm.auto import tqdm

    return lambda it, desc: tqdm(it, desc=desc, leave=False)
