"""Item embeddings aligned with a frozen causal LM (SAID's stage 1, Hu et al., WWW 2024).

Every item gets ``k`` virtual tokens in the LM's input-embedding space, made by a projector
from a trainable per-item vector. The frozen LM reads ``prompt_before + virtual tokens +
prompt_after`` and is trained by teacher forcing to continue with the item's text; the loss is
on the text tokens only and its gradient flows through the frozen LM into the projector and the
per-item vectors. The item's text is never an input before the first position that carries
loss (:meth:`AlignmentPrompt.prefix_ids` does not depend on it; a test pins that).

Every example has the same prefix (the prompt and k slots), so batches are right-padded text
after a common prefix: no position-id bookkeeping, and greedy decoding is plain ``generate``
on the prefix embeddings.
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

VIRTUAL = -1  # placeholder id of a virtual-token slot in a prefix


@dataclass(frozen=True)
class AlignmentPrompt:
    """Token layout of a stage-1 example: prompt ids around ``k`` virtual slots."""

    before: tuple[int, ...]
    after: tuple[int, ...]
    k: int

    @classmethod
    def from_template(cls, tokenizer: Any, template: str, k: int) -> AlignmentPrompt:
        """``template`` holds ``{item}`` once, where the virtual tokens go."""
        if template.count("{item}") != 1:
            raise ValueError("the stage-1 prompt must contain {item} exactly once")
        before, after = template.split("{item}")

        def ids(text: str) -> tuple[int, ...]:
            return tuple(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else ()

        return cls(ids(before), ids(after), k)

    def prefix_ids(self) -> list[int]:
        """The input before the first labelled position; the same for every item."""
        return [*self.before, *([VIRTUAL] * self.k), *self.after]

    @property
    def slots(self) -> slice:
        return slice(len(self.before), len(self.before) + self.k)


def target_ids(tokenizer: Any, text: str, max_tokens: int) -> list[int]:
    """The item's text as the continuation: its first ``max_tokens`` tokens, ending with EOS
    when the whole text fits (so a greedy decoder learns where it stops)."""
    ids = tokenizer(" " + text, add_special_tokens=False)["input_ids"]
    return ids + [tokenizer.eos_token_id] if len(ids) < max_tokens else ids[:max_tokens]


def example_ids(prompt: AlignmentPrompt, target: list[int]) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one example, HF convention (label j is predicted from inputs
    before j; -100 = no loss). Virtual slots are ``VIRTUAL`` in the input ids."""
    prefix = prompt.prefix_ids()
    return prefix + target, [-100] * len(prefix) + target


class VirtualTokens(nn.Module):
    """Per-item vector -> 2-layer GELU MLP -> k vectors in the LM's input-embedding space.

    The output is ``centre + scale * mlp(e_i)``, with ``centre`` / ``scale`` the mean row and
    the standard deviation of the LM's input embeddings: tokens start near an average word and
    at its scale whatever the LM. Per-item vectors start small (std ``init_std``) so that what
    training writes into them dominates their random start.
    """

    def __init__(self, n_items: int, item_dim: int, k: int, embeddings: torch.Tensor,
                 init_std: float = 0.1) -> None:
        super().__init__()
        d = embeddings.shape[1]
        self.k = k
        self.items = nn.Embedding(n_items, item_dim)
        nn.init.normal_(self.items.weight, std=init_std)
        self.projector = nn.Sequential(nn.Linear(item_dim, d), nn.GELU(), nn.Linear(d, k * d))
        emb = embeddings.detach().float()
        self.register_buffer("centre", emb.mean(0))
        self.register_buffer("scale", emb.std())

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """[B] item indices -> [B, k, d]."""
        out = self.projector(self.items(items)).view(len(items), self.k, -1)
        return self.centre + self.scale * out

    @torch.no_grad()
    def export(self, how: str = "mean", batch: int = 1024) -> torch.Tensor:
        """[n_items, d] (mean of the k tokens) or [n_items, k * d] (``concat``), float32."""
        rows = []
        for lo in range(0, self.items.num_embeddings, batch):
            ids = torch.arange(lo, min(lo + batch, self.items.num_embeddings),
                               device=self.centre.device)
            tokens = self(ids)
            rows.append(tokens.mean(1) if how == "mean" else tokens.flatten(1))
        return torch.cat(rows).float().cpu()


def batch_inputs(lm: Any, prompt: AlignmentPrompt, virtual: torch.Tensor,
                 targets: list[list[int]], pad: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input embeddings, attention mask and labels [B, P + longest target] of a batch: the
    prefix (prompt + the items' ``virtual`` tokens [B, k, d]) then the right-padded targets."""
    rows = [example_ids(prompt, t) for t in targets]
    width = max(len(ids) for ids, _ in rows)
    dev = virtual.device
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (x, y) in enumerate(rows):
        ids[r, :len(x)], labels[r, :len(y)], mask[r, :len(x)] = torch.tensor(x), torch.tensor(y), 1
    embed = lm.get_input_embeddings()
    embeds = embed(ids.clamp(min=0).to(dev))
    embeds = torch.cat([embeds[:, :prompt.slots.start], virtual.to(embeds.dtype),
                        embeds[:, prompt.slots.stop:]], dim=1)
    return embeds, mask.to(dev), labels.to(dev)


def text_loss(lm: Any, prompt: AlignmentPrompt, virtual: torch.Tensor,
              targets: list[list[int]], pad: int) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy per text token of the batch, and the number of input tokens."""
    embeds, mask, labels = batch_inputs(lm, prompt, virtual, targets, pad)
    start = len(prompt.prefix_ids())  # the first labelled position
    keep = embeds.shape[1] - start + 1  # logits from the last prefix position on
    out = lm(inputs_embeds=embeds, attention_mask=mask, logits_to_keep=keep, use_cache=False)
    logits = out.logits[:, :-1].float()
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                           labels[:, start:].reshape(-1), ignore_index=-100)
    return loss, int(mask.sum())


@dataclass
class AlignmentSettings:
    epochs: int
    batch_size: int
    lr: float  # projector
    item_lr: float  # per-item vectors (each sees a gradient once per epoch)
    seed: int


def train_alignment(lm: Any, tokens: VirtualTokens, prompt: AlignmentPrompt,
                    targets: list[list[int]], pad: int, settings: AlignmentSettings, *,
                    on_step: Callable[[int], None] | None = None,
                    progress: Callable | None = None) -> dict[str, Any]:
    """AdamW on the virtual-token module, the LM frozen; every item once per epoch in a
    seeded order. Returns losses (per text token), steps, tokens and throughput."""
    s = settings
    for p in lm.parameters():
        p.requires_grad_(False)
    rng = np.random.default_rng(s.seed)
    order = np.concatenate([rng.permutation(len(targets)) for _ in range(s.epochs)])
    steps = math.ceil(len(order) / s.batch_size)
    if steps == 0:
        return {"steps": 0, "tokens": 0, "seconds": 0.0, "tokens_per_s": None}
    opt = torch.optim.AdamW([{"params": tokens.projector.parameters(), "lr": s.lr},
                             {"params": tokens.items.parameters(), "lr": s.item_lr}],
                            weight_decay=0.0)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warmup) * max(0.05, 1 - i / steps))
    dev = tokens.centre.device
    lm.eval()  # frozen: no dropout either
    tokens.train()
    losses, n_tokens, start = [], 0, time.perf_counter()
    bar = progress(range(steps), desc="said stage 1") if progress else range(steps)
    for step in bar:
        items = order[step * s.batch_size:(step + 1) * s.batch_size]
        virtual = tokens(torch.as_tensor(items, device=dev))
        loss, n = text_loss(lm, prompt, virtual, [targets[i] for i in items], pad)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tokens.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        n_tokens += n
        if on_step:
            on_step(len(items))
        if progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}",
                            tok_s=f"{n_tokens / (time.perf_counter() - start):.0f}")
    tokens.eval()
    seconds = time.perf_counter() - start
    return {"steps": steps, "tokens": n_tokens, "seconds": round(seconds, 1),
            "tokens_per_s": round(n_tokens / seconds, 1),
            "loss_first10": float(np.mean(losses[:10])),
            "loss_last10": float(np.mean(losses[-10:]))}


@torch.no_grad()
def greedy_match(lm: Any, tokenizer: Any, tokens: VirtualTokens, prompt: AlignmentPrompt,
                 targets: list[list[int]], items: np.ndarray, batch: int = 64
                 ) -> dict[str, Any]:
    """Decode greedily from each sampled item's virtual tokens alone; the share whose output
    starts with its whole target text (EOS included when the text was not cut), and a few
    decoded examples."""
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    dev = tokens.centre.device
    hits, examples = 0, []
    for lo in range(0, len(items), batch):
        chunk = items[lo:lo + batch]
        longest = max(len(targets[i]) for i in chunk)
        embeds, mask, _ = batch_inputs(lm, prompt, tokens(torch.as_tensor(chunk, device=dev)),
                                       [[] for _ in chunk], pad)
        out = lm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=longest,
                          do_sample=False, eos_token_id=eos, pad_token_id=pad)
        for row, item in enumerate(chunk):
            target = targets[item]
            got = out[row, :len(target)].tolist()
            hits += got == target
            if len(examples) < 3:
                examples.append({"target": tokenizer.decode(target, skip_special_tokens=True),
                                 "decoded": tokenizer.decode(out[row], skip_special_tokens=True)})
    return {"items": len(items), "exact_match_rate": hits / max(len(items), 1),
            "examples": examples}
