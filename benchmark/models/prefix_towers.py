"""ID vectors as per-layer attention prefixes of a frozen causal LM, in two towers (RA-Rec).

A hybrid prompt is a hard text prompt read by the frozen LM with a *prefix* in every layer's
attention: ``context_tokens`` learnable key/value pairs per tower, then ``id_tokens`` pairs made
by a linear map of an ID vector (a SASRec user or item vector). Queries come from the text only;
the text attends to the prefix and to earlier text. The representation is the LM's final hidden
state (after its last norm) at the last text token.

- Grouped-query attention: the prefix lives in key/value-head space, ``[layers, batch, kv_heads,
  P, head_dim]`` for keys and for values (SmolLM2-135M: 30 layers, 3 kv heads of 64), handed to
  the LM as a ``DynamicCache`` that holds the prefix; the attention mask is extended by P ones.
- Rotary positions: the prefix keys are emitted directly in the post-rotary key space and are
  never rotated (a cache holds keys after rotation); they have no position. The text takes
  positions P .. P+T-1, as HF prefix tuning does; text-to-text attention is relative under
  RoPE, so a masked-out prefix gives exactly the hard-prompt-only output (a test pins it).
- Scale: raw prefix = learnable context vectors, or ``Linear(id_dim, layers * id_tokens * 2 *
  kv_heads * head_dim)`` of the ID vector, then ``centre + scale * raw`` per layer and for keys
  and values separately, with ``centre`` / ``scale`` the mean vector and standard deviation of
  that layer's keys (values) on a calibration pass of hard prompts: at the start a prefix looks
  like an average token of that layer, whatever the LM.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TOWERS = ("user", "item")


@dataclass(frozen=True)
class KVShape:
    layers: int
    kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, lm: Any) -> KVShape:
        cfg = lm.config
        heads = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        return cls(cfg.num_hidden_layers, getattr(cfg, "num_key_value_heads", heads), head_dim)


class PrefixAlignment(nn.Module):
    """The trainable part: per-tower context prefixes and the ID -> prefix linear map."""

    def __init__(self, shape: KVShape, id_dim: int, id_tokens: int, context_tokens: int) -> None:
        super().__init__()
        self.shape, self.id_tokens, self.context_tokens = shape, id_tokens, context_tokens
        s = shape
        self.context = nn.ParameterDict({
            t: nn.Parameter(torch.randn(s.layers, 2, context_tokens, s.kv_heads, s.head_dim))
            for t in TOWERS})
        self.id_map = None
        if id_tokens:
            self.id_map = nn.Linear(id_dim, s.layers * 2 * id_tokens * s.kv_heads * s.head_dim)
            nn.init.normal_(self.id_map.weight, std=1 / math.sqrt(id_dim))  # raw ~ unit scale
            nn.init.zeros_(self.id_map.bias)
        # [layers, 2 (key, value), kv_heads, head_dim] and [layers, 2]: set by calibrate()
        self.register_buffer("centre", torch.zeros(s.layers, 2, s.kv_heads, s.head_dim))
        self.register_buffer("scale", torch.ones(s.layers, 2))

    @property
    def length(self) -> int:
        return self.context_tokens + self.id_tokens

    def forward(self, tower: str, id_vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, id_dim] -> prefix (keys, values), each [layers, B, kv_heads, P, head_dim]."""
        s, b = self.shape, len(id_vectors)
        raw = self.context[tower].unsqueeze(0).expand(b, -1, -1, -1, -1, -1)
        if self.id_map is not None:
            ids = self.id_map(id_vectors).view(b, s.layers, 2, self.id_tokens, s.kv_heads,
                                               s.head_dim)
            raw = torch.cat([raw, ids], dim=3)  # [B, layers, 2, P, kv, hd]
        out = self.centre[None, :, :, None] + self.scale[None, :, :, None, None, None] * raw
        out = out.permute(1, 2, 0, 4, 3, 5)  # [layers, 2, B, kv, P, hd]
        return out[:, 0], out[:, 1]

    @torch.no_grad()
    def calibrate(self, lm: Any, prompts: list[list[int]], pad: int) -> None:
        """Set centre / scale from the LM's own keys and values on ``prompts``."""
        ids, mask = right_pad(prompts, pad)
        dev = self.centre.device
        out = lm.base_model(input_ids=ids.to(dev), attention_mask=mask.to(dev), use_cache=True)
        cache = getattr(out, "cache", None) or out.past_key_values
        keep = mask.bool().to(dev)
        for layer in range(self.shape.layers):
            for j, t in enumerate(_layer_kv(cache, layer)):  # [B, kv, T, hd]
                rows = t.permute(0, 2, 1, 3)[keep].float()  # [tokens, kv, hd]
                self.centre[layer, j] = rows.mean(0)
                self.scale[layer, j] = (rows - rows.mean(0)).std()


def _layer_kv(cache: Any, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(cache, "layers"):  # transformers >= 4.56
        return cache.layers[layer].keys, cache.layers[layer].values
    return cache.key_cache[layer], cache.value_cache[layer]


def right_pad(prompts: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, :len(p)], mask[row, :len(p)] = torch.tensor(p, dtype=torch.long), 1
    return ids, mask


def prefix_cache(lm: Any, keys: torch.Tensor, values: torch.Tensor) -> Any:
    """A DynamicCache holding the prefix of every layer (keys already in post-rotary space)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=lm.config)
    dtype = next(lm.parameters()).dtype
    for layer in range(keys.shape[0]):
        cache.update(keys[layer].to(dtype), values[layer].to(dtype), layer)
    return cache


def encode(lm: Any, prompts: list[list[int]], pad: int,
           prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
           prefix_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Final hidden state at each prompt's last token, [B, d] float32; with ``prefix`` the text
    attends to it (``prefix_mask`` [B, P], default all ones) and starts at position P."""
    dev = next(lm.parameters()).device
    ids, mask = right_pad(prompts, pad)
    ids, mask = ids.to(dev), mask.to(dev)
    p = 0 if prefix is None else prefix[0].shape[3]
    kwargs: dict[str, Any] = {}
    if prefix is not None:
        if prefix_mask is None:
            prefix_mask = torch.ones(len(prompts), p, dtype=torch.long, device=dev)
        mask = torch.cat([prefix_mask.to(device=dev, dtype=mask.dtype), mask], dim=1)
        kwargs[_cache_kw(lm)] = prefix_cache(lm, *prefix)
    positions = torch.arange(p, p + ids.shape[1], device=dev).expand(len(prompts), -1)
    out = lm.base_model(input_ids=ids, attention_mask=mask, position_ids=positions,
                        use_cache=False, **kwargs)
    last = torch.as_tensor([len(q) - 1 for q in prompts], device=dev)
    return out.last_hidden_state[torch.arange(len(prompts), device=dev), last].float()


def _cache_kw(lm: Any) -> str:
    """transformers 5.2x renamed ``past_key_values`` to ``cache``; accept either."""
    import inspect

    params = inspect.signature(lm.base_model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class Towers:
    """The frozen LM, the alignment module and the two towers' prompts (token ids)."""

    def __init__(self, lm: Any, align: PrefixAlignment, pad: int, item_prompts: list[list[int]],
                 item_vectors: torch.Tensor) -> None:
        self.lm, self.align, self.pad = lm, align, pad
        self.item_prompts, self.item_vectors = item_prompts, item_vectors
        self.hard_cache: dict[tuple[str, int], torch.Tensor] = {}

    def hybrid(self, tower: str, prompts: list[list[int]], vectors: torch.Tensor) -> torch.Tensor:
        return encode(self.lm, prompts, self.pad, self.align(tower, vectors))

    @torch.no_grad()
    def hard(self, tower: str, keys: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """Hard-prompt-only representations; memoised by ``keys`` (nothing in them trains)."""
        missing = [j for j, k in enumerate(keys) if (tower, k) not in self.hard_cache]
        if missing:
            out = encode(self.lm, [prompts[j] for j in missing], self.pad)
            for j, row in zip(missing, out):
                self.hard_cache[(tower, keys[j])] = row
        return torch.stack([self.hard_cache[(tower, k)] for k in keys])

    def encode_items(self, items: np.ndarray, batch: int, progress: Callable | None = None
                     ) -> torch.Tensor:
        """Item-tower vectors of ``items`` (shortest prompts batched together), [n, d]."""
        return self.encode_many("item", [self.item_prompts[i] for i in items],
                                self.item_vectors[torch.as_tensor(items)], batch, progress)

    @torch.no_grad()
    def encode_many(self, tower: str, prompts: list[list[int]], vectors: torch.Tensor,
                    batch: int, progress: Callable | None = None) -> torch.Tensor:
        order = np.argsort([len(p) for p in prompts], kind="stable")
        out = torch.empty(len(prompts), self.lm.config.hidden_size)
        chunks = range(0, len(order), batch)
        for lo in (progress(chunks, desc=f"ra_rec {tower} tower") if progress else chunks):
            idx = order[lo:lo + batch]
            out[torch.as_tensor(idx)] = self.hybrid(
                tower, [prompts[i] for i in idx], vectors[torch.as_tensor(idx)]).cpu()
        return out


def bpr_in_batch(users: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                 temperature: float) -> torch.Tensor:
    """BPR over in-batch negatives: user i's target scored above every other example's target
    (a negative only when it is another item). ``items`` [B, d] are the targets' vectors."""
    scores = _unit(users) @ _unit(items).T / temperature
    negative = targets[None, :] != targets[:, None]
    margin = scores.diagonal()[:, None] - scores
    return F.softplus(-margin)[negative].mean() if negative.any() else scores.sum() * 0


def alignment_loss(hybrid: torch.Tensor, hard: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE: each hybrid-prompt vector picks its own hard-prompt-only vector in the batch."""
    logits = _unit(hybrid) @ _unit(hard).T / temperature
    return F.cross_entropy(logits, torch.arange(len(hybrid), device=logits.device))


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


@dataclass
class TowerTraining:
    epochs: int
    batch_size: int
    lr: float
    temperature: float
    align_weight: float
    seed: int


def train_round(towers: Towers, user_prompts: list[list[int]], user_vectors: torch.Tensor,
                targets: np.ndarray, s: TowerTraining, opt: torch.optim.Optimizer,
                sched: Any, rng: np.random.Generator, *, on_step: Callable[[int], None],
                progress: Callable | None = None) -> dict[str, float]:
    """One epoch over the selected examples in a seeded order: the frozen LM, the alignment
    module's AdamW. Returns the epoch's mean losses, tokens and seconds."""
    order = rng.permutation(len(targets))
    steps = range(0, len(order), s.batch_size)
    bar = progress(steps, desc="ra_rec tuning") if progress else steps
    losses, n_tokens, start = [], 0, time.perf_counter()
    towers.align.train()
    for lo in bar:
        idx = order[lo:lo + s.batch_size]
        items, inverse = np.unique(targets[idx], return_inverse=True)
        u_prompts = [user_prompts[i] for i in idx]
        i_prompts = [towers.item_prompts[i] for i in items]
        u = towers.hybrid("user", u_prompts, user_vectors[torch.as_tensor(idx)])
        v = towers.hybrid("item", i_prompts, towers.item_vectors[torch.as_tensor(items)])
        tgt = torch.as_tensor(targets[idx], device=u.device)
        rank = bpr_in_batch(u, v[torch.as_tensor(inverse, device=v.device)], tgt, s.temperature)
        align = (alignment_loss(u, towers.hard("user", idx.tolist(), u_prompts), s.temperature)
                 + alignment_loss(v, towers.hard("item", items.tolist(), i_prompts),
                                  s.temperature)) / 2
        loss = rank + s.align_weight * align
        loss.backward()
        torch.nn.utils.clip_grad_norm_(towers.align.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append((float(rank.detach()), float(align.detach())))
        n_tokens += sum(map(len, u_prompts)) + sum(map(len, i_prompts))
        on_step(len(idx))
        if progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(bpr=f"{rank.item():.3f}", align=f"{align.item():.3f}")
    towers.align.eval()
    seconds = time.perf_counter() - start
    ranks, aligns = zip(*losses) if losses else ((), ())
    return {"bpr": float(np.mean(ranks)) if ranks else None,
            "align": float(np.mean(aligns)) if aligns else None,
            "tokens": n_tokens, "seconds": round(seconds, 1),
            "tokens_per_s": round(n_tokens / max(seconds, 1e-9), 1)}
