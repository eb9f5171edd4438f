"""SASRec-SID: the SASRec backbone with items represented by their semantic IDs.

An item is its tuple of codes (``benchmark.models.semantic_ids``: L residual levels + a disambiguation
column). Its vector, used both as the transformer's input and as the output row the last hidden
state is scored against (``all_items()``), is composed from code embeddings, so items that share
codes share parameters and an item without training interactions still gets a meaningful score.

Composition (chosen): a *sum of prefix embeddings*, as in "Better Generalization with Semantic
IDs" (Singh et al., prefix-ngram). Level l has one row per distinct prefix (c_1, ..., c_l);
coarse prefixes are shared by many items, finer ones by few, and the full ID (prefix with the
disambiguation column) is one row per item, i.e. the item-specific part a plain ID model has.
Summing keeps every level at full width and mirrors the additive structure of residual
quantisation (embedding ~ sum of codewords). ``composition: level`` is the simpler alternative
(one table per level indexed by the code alone, plus a per-item row for the disambiguation
level); it is kept for ablation. Rejected: concat + projection, which splits the width between
levels (a level gets hidden / L dimensions) and adds a projection without giving cold items
anything the sum does not; and using the disambiguation *code value* as its own table, since
"the 2nd item of some collision group" means nothing across groups.

Unseen rows (the decision for cold items): a row is used for an item only if at least one item
*with training interactions* owns it. A cold item's full-ID row (and any prefix row it shares
with no warm item) never receives a positive training signal -- only the push-down it gets as a
softmax negative -- so it would encode "never seen" rather than anything about the item. Masked
(``unseen_rows: drop``), it contributes zero and gets no gradient; the cold item is scored by
the prefixes it shares with warm items only. ``unseen_rows: mean`` instead fills each unused
level, at inference, with the mean row of the warm items sharing the item's deepest used prefix
(its siblings' typical fine rows, popularity included); ``keep`` uses those rows as training
left them, i.e. trained only as negatives (ablation only).

On ML-100K (cold_item protocol, default profile) a dropped-row cold item ranks far down: the
fine, nearly item-specific rows carry most of a warm item's score (with 3 x 32 codes there are
32 / 690 / 1,554 / 1,682 rows per level for 1,682 items), and the shared first-level row alone
cannot compete. ``prefix_dropout`` (as DropoutNet does for content features) trains
every item, with that probability per step, as if only a random prefix of its ID were known, so
the shared rows must carry a score on their own. Both knobs trade warm accuracy for cold
accuracy, and validation cannot arbitrate: cold targets are excluded from validation by the
protocol. The defaults and the measured trade-off are in configs/methods/sasrec_sid.yaml.

``semantic_ids.source: published:<variant>`` (e.g. ``--set
sasrec_sid.semantic_ids.source=published:rqvae_native``) trains on a published index instead of
our own codes: its levels as they are, without a disambiguation column, so items sharing a full
ID share every row and get one score (they tie in the ranking).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from benchmark import register
from benchmark.adapter import RunContext, TrainData
from benchmark.cache import stable_hash
from benchmark.config import require_nested, require_probability
from benchmark.models.sasrec import SASRecAdapter, SASRecConfig
from benchmark.models.semantic_ids import (
    SemanticIDConfig,
    SemanticIDs,
    build_semantic_ids,
    semantic_id_config,
)

VERSION = 2  # 2: the quantiser's seed follows the run's seed (was 0 for every seed)


def composition_index(codes: np.ndarray, composition: str,
                      disambiguated: bool = True) -> np.ndarray:
    """[n_items, n_levels] row index of each item in each level's embedding table;
    ``disambiguated``: the last column is the disambiguation level (our own codes)."""
    n, levels = codes.shape
    columns = []
    for level in range(levels):
        if composition == "prefix":
            _, inverse = np.unique(codes[:, : level + 1], axis=0, return_inverse=True)
            columns.append(inverse.reshape(-1))
        elif level < levels - 1 or not disambiguated:  # "level": the code alone
            columns.append(codes[:, level])
        else:  # the disambiguation level as a per-item row (see the module docstring)
            columns.append(np.arange(n))
    return np.stack(columns, axis=1).astype(np.int64)


class SemanticIDEmbedder(nn.Module):
    """Item vectors as sums of code (prefix) embeddings; the SASRec item-embedder interface."""

    def __init__(self, codes: np.ndarray, hidden: int, *, seen: np.ndarray | None = None,
                 composition: str = "prefix", prefix_dropout: float = 0.0,
                 impute_unseen: bool = False, disambiguated: bool = True) -> None:
        super().__init__()
        index = composition_index(codes, composition, disambiguated)
        sizes = index.max(axis=0) + 1
        self.tables = nn.ModuleList(nn.Embedding(int(s), hidden) for s in sizes)
        for table in self.tables:  # the sum of L rows has the scale of an IDEmbedder row
            nn.init.normal_(table.weight, std=0.02 / np.sqrt(len(sizes)))
        self.prefix_dropout = prefix_dropout
        self.impute_unseen = impute_unseen
        self.register_buffer("index", torch.as_tensor(index))
        self.register_buffer("mask", torch.ones(index.shape, dtype=torch.float32))
        if seen is not None:
            self.set_seen(seen)

    def set_seen(self, seen: np.ndarray) -> None:
        """Use a row only if an item with training interactions owns it (``seen[i]`` bool)."""
        index = self.index.cpu().numpy()
        mask = np.zeros(index.shape, dtype=np.float32)
        for level in range(index.shape[1]):
            owned = np.zeros(index[:, level].max() + 1, dtype=bool)
            owned[index[seen, level]] = True
            mask[:, level] = owned[index[:, level]]
        self.mask.copy_(torch.as_tensor(mask))

    def _training_mask(self) -> torch.Tensor:
        """Prefix dropout: each item, with probability ``prefix_dropout``, keeps only its first
        d levels (d uniform in 1 .. L-1) for this step -- it looks like a cold item, which
        keeps only the prefixes it shares with warm items, so the shared rows must carry
        the score on their own."""
        n, levels = self.mask.shape
        if not (self.training and self.prefix_dropout > 0 and levels > 1):
            return self.mask
        device = self.mask.device
        truncated = torch.rand(n, device=device) < self.prefix_dropout
        depth = torch.randint(1, levels, (n,), device=device)
        keep = torch.arange(levels, device=device)[None, :] < depth[:, None]
        return self.mask * torch.where(truncated[:, None], keep, True)

    def all_items(self) -> torch.Tensor:
        """[n_items, hidden]: the composed vector of every item."""
        mask = self._training_mask()
        out = 0
        for level, table in enumerate(self.tables):
            out = out + table(self.index[:, level]) * mask[:, level : level + 1]
        if self.impute_unseen and not self.training:
            out = out + self._imputed_rows()
        return out

    def _imputed_rows(self) -> torch.Tensor:
        """For each unused (item, level) entry, the mean level row of the seen items that share
        the item's deepest used prefix: a cold item borrows its siblings' average fine rows
        (their typical popularity included) instead of none."""
        mask, index = self.mask, self.index
        n, levels = mask.shape
        out = torch.zeros(n, self.tables[0].embedding_dim, device=mask.device)
        used = mask.bool()
        # deepest level whose row the item uses (-1: none; such an item borrows nothing)
        deepest = torch.where(used, torch.arange(levels, device=mask.device), -1).amax(1)
        for level in range(1, levels):
            rows = self.tables[level](index[:, level]) * mask[:, level : level + 1]
            for k in range(level):
                take = (~used[:, level]) & (deepest == k)
                if not take.any():
                    continue
                groups = index[:, k]
                size = int(groups.max()) + 1
                sums = torch.zeros(size, rows.shape[1], device=rows.device).index_add(
                    0, groups, rows)
                counts = torch.zeros(size, device=rows.device).index_add(0, groups, mask[:, level])
                mean = sums / counts.clamp(min=1).unsqueeze(1)
                out[take] = out[take] + mean[groups[take]]
        return out

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        return self.all_items()[item_ids]  # cheap next to the transformer, one mask per call


@register("sasrec_sid")
class SASRecSID(SASRecAdapter):
    """SASRec over semantic-ID-composed item embeddings (cold items scored through shared codes)."""

    @dataclass
    class Config(SASRecConfig):
        semantic_ids: dict = field(default_factory=dict)  # SemanticIDConfig keys
        composition: Literal["prefix", "level"] = "prefix"
        unseen_rows: Literal["drop", "mean", "keep"] = "drop"
        prefix_dropout: float = 0.0  # chance an item keeps only a prefix of its ID in a step

        def __post_init__(self) -> None:
            super().__post_init__()
            require_probability("prefix_dropout", self.prefix_dropout)
            require_nested("semantic_ids", SemanticIDConfig, self.semantic_ids)

    needs = frozenset({"item_text"})

    def prepare(self, train: TrainData, ctx: RunContext) -> None:
        sid_config = semantic_id_config(self.config.semantic_ids, ctx.seed)
        self.sids: SemanticIDs = build_semantic_ids(train.catalog, sid_config, cache=ctx.cache,
                                                    device=ctx.device,
                                                    show_progress=ctx.show_progress,
                                                    protocol=ctx.protocol)
        # Items that share a full ID (a published index's collisions) share every row, so
        # they score alike; the evaluator ties them explicitly (one rule for every SID method).
        self.tie_groups = self.sids.tie_groups()

    def item_embedder(self, train: TrainData, ctx: RunContext) -> nn.Module:
        cfg = self.config
        seen = train.item_counts > 0 if cfg.unseen_rows != "keep" else None
        self.embedder = SemanticIDEmbedder(self.sids.codes, cfg.hidden, seen=seen,
                                           composition=cfg.composition,
                                           prefix_dropout=cfg.prefix_dropout,
                                           impute_unseen=cfg.unseen_rows == "mean",
                                           disambiguated=self.sids.disambiguated)
        return self.embedder

    def checkpoint_extra(self) -> dict:
        # The checkpoint key already covers data, item text, this config (SID settings
        # included) and seed; the codes themselves and this module's version are added.
        return {"sasrec_sid": VERSION, "codes": stable_hash(self.sids.codes)}

    def diagnostics(self) -> dict:
        embedder = self.embedder
        return {
            "semantic_ids": self.sids.diagnostics,
            "level_sizes": self.sids.level_sizes,
            "rows_per_level": [t.num_embeddings for t in embedder.tables],
            # share of items whose row at each level is used (others are unseen, masked)
            "rows_in_use_per_level": embedder.mask.mean(0).round(decimals=4).tolist(),
            **super().diagnostics(),
        }
