"""SAID (Hu et al., WWW 2024 companion): LLM-aligned item embeddings under a light SASRec.

Stage 1 (:mod:`benchmark.models.llm_alignment`) learns, for every item, ``virtual_tokens`` (k)
vectors in a frozen causal LM's input space from which the LM reproduces the item's text by
teacher forcing (loss on the text tokens only; the text is never an input). It depends on item
text only, so it is cached by catalogue and shared by both protocols; cold items' text is used,
their interactions are not. Stage 2 is the shared SASRec backbone with the exported
embeddings, frozen, as its item table: a trainable linear adapter maps a row to SASRec's hidden
size and serves as both input embedding and output scoring row (as SASRec-SID's composed
table does). Serving never calls the LM. Everything else is SASRec-ID's but stage 2's
optimiser: it waits 30 validations for a new best, not 10, because its curve over a frozen
table climbs in steps with long flat stretches, and on ML-100K its learning rate (0.003) was
chosen on validation (evidence in configs/methods/said.yaml). ``said_minilm`` keeps
SASRec-ID's settings, under which its curves settle.

``said_minilm`` (``table_source: minilm``) puts the MiniLM sentence embeddings of the same
item text in the table instead: what the LLM alignment adds is the difference.

Choices the paper leaves open (defaults; the sizing arithmetic is in configs/methods/said.yaml):
- k = 2 virtual tokens; the per-item input is a trainable 128-d vector (the paper's "item ID"
  input), initialised small; the projector is a 2-layer GELU MLP (128 -> d -> k * d, as
  LLaVA's), its output centred and scaled like the LM's own input embeddings.
- Exported vector: the projector's output, mean of the k tokens (d = 576 for SmolLM2), i.e.
  what the LM reads; ``export: concat`` keeps all k (k * d).
- Prompt ``"{item} Title:"``: the k tokens, then " Title:", then the text. Two prompt tokens
  only: every token costs the 2-core CPU the same as a text token.
- Text fields: the title alone (MovieLens: the year is a field of its own), cut to
  ``max_text_tokens`` tokens (EOS appended when it fits). ``said_minilm`` encodes the same text.
- The frozen table is centred and scaled to mean row norm 1 before the adapter (a fixed
  reparametrisation: the adapter's bias absorbs the centre), so both table sources start at
  the scale of an ID table.
- ``precision`` (:func:`benchmark.models.llm.compute_precision`): stage 1's passes through the
  frozen LM run at it; under ``bfloat16`` the LM's Linear weights are cast once when it loads.
  It enters stage 1's key only when it is not ``float32``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from benchmark.adapter import RunContext, TrainData
from benchmark.cache import stable_hash
from benchmark.config import require_at_least, require_positive
from benchmark.models import text_encoder
from benchmark.models.llm import PRECISIONS, cast_frozen_linears, compute_precision
from benchmark.models.llm_alignment import (
    AlignmentPrompt,
    AlignmentSettings,
    VirtualTokens,
    greedy_match,
    target_ids,
    train_alignment,
)
from benchmark.models.sasrec import SASRecAdapter, SASRecConfig
from benchmark.models.text_encoder import PACKAGED_MINILM, encode_texts
from benchmark.models.training import get_or_train
from benchmark.registry import register

VERSION = 1
# Config keys that change the stage-1 artefact (nothing of stage 2).
STAGE1_KEYS = ("backbone", "dtype", "text_fields", "max_text_tokens", "prompt",
               "virtual_tokens", "item_dim", "export", "stage1_epochs", "stage1_batch",
               "stage1_lr", "stage1_item_lr", "match_items")


def item_text(catalog: Any, item: int, fields: list[str]) -> str:
    """The first field's value bare, the others as ``key: value``, joined by "; "."""
    attrs = catalog.attributes[item]
    parts = [f"{k}: {attrs[k]}" if n else str(attrs[k])
             for n, k in enumerate(fields) if attrs.get(k)]
    return "; ".join(parts) or catalog.title(item)


def normalised_table(table: torch.Tensor) -> torch.Tensor:
    """The frozen table as stage 2 reads it: centred, scaled to mean row norm 1."""
    table = table.float() - table.float().mean(0)
    return table / table.norm(dim=1).mean().clamp(min=1e-8)


def table_spectrum(table: torch.Tensor) -> dict[str, float]:
    """How many directions the normalised table spreads its items over.

    ``effective_rank`` is exp of the entropy of the squared singular values' shares (Roy and
    Vetterli, 2007): d for d equal directions, 1 when one direction holds everything.
    ``top1``/``top5``/``top20`` are the variance shares of the leading directions and
    ``s1_over_s50`` the ratio of the first to the 50th singular value (a linear adapter's
    gradient along a direction scales with its singular value, so a large ratio means slow
    learning along the directions that tell items apart).
    """
    s = torch.linalg.svdvals(normalised_table(table).double())
    share = s**2 / (s**2).sum()
    nz = share[share > 0]
    return {"effective_rank": float(torch.exp(-(nz * nz.log()).sum())),
            "top1": float(share[:1].sum()), "top5": float(share[:5].sum()),
            "top20": float(share[:20].sum()),
            "s1_over_s50": float(s[0] / s[49]) if len(s) >= 50 and s[49] > 0 else None}


class FrozenTableEmbedder(nn.Module):
    """Item vector = a trainable linear map of a frozen per-item row (input and output)."""

    def __init__(self, table: torch.Tensor, hidden: int) -> None:
        super().__init__()
        table = normalised_table(table)
        # Not persistent: the SASRec checkpoint keeps trainable weights only; the table is
        # rebuilt (or loaded) from its own cache entry, whose hash is part of the key.
        self.register_buffer("table", table, persistent=False)
        self.adapter = nn.Linear(table.shape[1], hidden)

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.table[item_ids])

    def all_items(self) -> torch.Tensor:
        return self.adapter(self.table)


@register("said")
class SAID(SASRecAdapter):
    @dataclass
    class Config(SASRecConfig):
        table_source: Literal["llm", "minilm"] = "llm"
        backbone: str = "packaged:smollm2"  # or a HF id / local dir, or "tiny:random"
        dtype: str = "auto"  # float32 on CPU, bf16 on a GPU that supports it
        text_model: str = PACKAGED_MINILM  # table_source: minilm
        text_fields: list[str] = field(default_factory=lambda: ["title"])
        max_text_tokens: int = 16
        prompt: str = "{item} Title:"
        virtual_tokens: int = 2
        item_dim: int = 128
        export: Literal["mean", "concat"] = "mean"
        stage1_epochs: int = 4  # passes over the catalogue
        stage1_batch: int = 16
        stage1_lr: float = 2e-3  # projector
        stage1_item_lr: float = 2e-2  # per-item vectors
        match_items: int = 200  # sampled items for the exact-title match rate (0 = off)
        precision: Literal["float32", "bfloat16"] = "float32"  # stage 1's passes through the LM

        def __post_init__(self) -> None:
            super().__post_init__()
            for key in ("max_text_tokens", "virtual_tokens", "item_dim", "stage1_batch"):
                require_at_least(key, getattr(self, key), 1)
            for key in ("stage1_epochs", "match_items"):
                require_at_least(key, getattr(self, key), 0)
            for key in ("stage1_lr", "stage1_item_lr"):
                require_positive(key, getattr(self, key))
            if self.prompt.count("{item}") != 1:
                raise ValueError("prompt must contain {item} exactly once")
            if not self.text_fields:
                raise ValueError("text_fields must name at least one field")
            if self.precision not in PRECISIONS:
                raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    needs = frozenset({"item_text"})
    wants_gpu = True

    def prepare(self, train: TrainData, ctx: RunContext) -> None:
        cfg = self.config
        texts = [item_text(train.catalog, i, cfg.text_fields) for i in range(train.n_items)]
        self.stage1: dict[str, Any] = {}
        if cfg.table_source == "minilm":
            key = {"catalog": ctx.catalog_hash, "fields": cfg.text_fields,
                   "model": cfg.text_model, "encoder": text_encoder.VERSION, "said": VERSION}
            self.table = torch.as_tensor(ctx.cache.get_or_build(
                "said_minilm", key, lambda: encode_texts(
                    texts, cfg.text_model, device=ctx.device, show_progress=ctx.show_progress)))
            return
        settings = {k: getattr(cfg, k) for k in STAGE1_KEYS}
        if cfg.precision != "float32":  # (absent at float32: earlier checkpoints stay valid)
            settings["precision"] = cfg.precision
        key = ["said_stage1", VERSION, ctx.catalog_hash, settings, ctx.seed]
        saved, cached = get_or_train(ctx, "said", key, lambda: self._align(texts, ctx))
        self.table, self.stage1 = saved["table"], {**saved["stats"], "cached": cached}

    def _align(self, texts: list[str], ctx: RunContext) -> dict[str, Any]:
        """Stage 1: train the virtual tokens on item text, export the table, measure it."""
        from benchmark.models.llm import load_causal_lm

        cfg = self.config
        lm, tok = load_causal_lm(cfg.backbone, device=ctx.device, dtype=cfg.dtype,
                                 seed=ctx.seed)
        lm.requires_grad_(False)
        cast_frozen_linears(lm, cfg.precision)  # frozen for good: never restored
        torch.manual_seed(ctx.seed)  # the per-item vectors and the projector
        tokens = VirtualTokens(len(texts), cfg.item_dim, cfg.virtual_tokens,
                               lm.get_input_embeddings().weight).to(ctx.device)
        prompt = AlignmentPrompt.from_template(tok, cfg.prompt, cfg.virtual_tokens)
        targets = [target_ids(tok, t, cfg.max_text_tokens) for t in texts]
        settings = AlignmentSettings(cfg.stage1_epochs, cfg.stage1_batch, cfg.stage1_lr,
                                     cfg.stage1_item_lr, ctx.seed)
        with compute_precision(ctx.device, cfg.precision):
            stats = train_alignment(lm, tokens, prompt, targets, tok.pad_token_id, settings,
                                    on_step=ctx.count_examples, progress=_progress(ctx))
        sample = np.random.default_rng(ctx.seed).permutation(len(texts))[:cfg.match_items]
        if len(sample):
            with compute_precision(ctx.device, cfg.precision):
                stats["greedy"] = greedy_match(lm, tok, tokens, prompt, targets,
                                               np.sort(sample))
        trainable = sum(p.numel() for p in tokens.parameters())
        stats["parameters"] = {"trainable": trainable,
                               "total": trainable + sum(p.numel() for p in lm.parameters())}
        stats["target_tokens_mean"] = float(np.mean([len(t) for t in targets]))
        return {"table": tokens.export(cfg.export), "stats": stats}

    def item_embedder(self, train: TrainData, ctx: RunContext) -> nn.Module:
        self.embedder = FrozenTableEmbedder(self.table, self.config.hidden)
        return self.embedder

    def checkpoint_extra(self) -> dict:
        return {"said": VERSION, "table": stable_hash(self.table.numpy())}

    def parameter_counts(self) -> tuple[int, int]:
        """SASRec's and the adapter's weights trainable; the frozen table counts in the total."""
        trainable, total = super().parameter_counts()
        return trainable, total + self.table.numel()

    def diagnostics(self) -> dict[str, Any]:
        trainable, total = self.parameter_counts()
        return {"table_source": self.config.table_source,
                "table_shape": list(self.table.shape),
                "stage1": self.stage1 or "none (no LLM alignment)",
                "stage2_parameters": {"trainable": trainable, "total": total},
                **super().diagnostics()}


def _progress(ctx: RunContext) -> Any:
    if not ctx.show_progress:
        return None
    from tqdm.auto import tqdm

    return lambda it, desc: tqdm(it, desc=desc, leave=False)
