"""Constrained decoding of semantic IDs, shared by every generative SID method.

A generative method (the SID-LLM, TIGER) writes an item as its semantic ID, one code per level.
:func:`trie_beam_search` decodes level by level over a prefix trie of the valid IDs
(:class:`SIDTrie`), with each user's history items removed, so every emitted ID is a real,
unseen item at full length. Scores are log-probabilities renormalised over the *allowed*
continuations at each level (the usual constrained-decoding choice), so a step with a single
allowed child costs nothing. Deterministic: no sampling; ties go to the lower code.

What differs between methods is how a level's logits are computed (an LLM with a shared KV
cache, an encoder-decoder): that is a :class:`BeamScorer`. The trie, the masks, the beam
bookkeeping and the collision rule live here once.

Collisions: items that share a full ID (``SemanticIDs.tie_groups``) end at one leaf. A beam that
reaches the leaf stands for the whole group: its items are written to the list together, in item
order, history items left out, and the evaluator ties them pessimistically (a target in the group
ranks below every other candidate of its group; ``benchmark.evaluation``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from benchmark.models.semantic_ids import tie_groups


class SIDTrie:
    """Prefix trie of item SIDs as flat arrays: key = node * level_size + code.

    The last level's children are tie groups (``group[i]``: the group of item ``i``, equal to
    ``i`` when every ID is unique), so items that share a full ID share one leaf.
    """

    def __init__(self, codes: np.ndarray, level_sizes: list[int]) -> None:
        self.codes = np.asarray(codes, dtype=np.int64)
        self.sizes = list(level_sizes)
        n, depth = self.codes.shape
        groups = tie_groups(self.codes)
        self.group = np.arange(n) if groups is None else groups
        self.unique = groups is None
        self.members = (None if groups is None else
                        np.split(np.argsort(groups, kind="stable"),
                                 np.cumsum(np.bincount(groups))[:-1]))
        self.node = []  # node[l][i]: the node of item i's prefix of length l
        for lv in range(depth):
            if lv == 0:
                self.node.append(np.zeros(n, dtype=np.int64))
            else:
                _, inv = np.unique(self.codes[:, :lv], axis=0, return_inverse=True)
                self.node.append(inv.reshape(-1).astype(np.int64))
        self.key = [self.node[lv] * self.sizes[lv] + self.codes[:, lv] for lv in range(depth)]
        self.n_nodes = [int(nd.max()) + 1 for nd in self.node]
        self.child = []  # child[l][key]: node at level l + 1, or the item's group at the last
        for lv in range(depth):
            table = np.full(self.n_nodes[lv] * self.sizes[lv], -1, dtype=np.int64)
            table[self.key[lv]] = self.node[lv + 1] if lv + 1 < depth else self.group
            self.child.append(table)

    def allowed(self, alive: np.ndarray) -> list[torch.Tensor]:
        """Per level, a flat bool mask of the keys that still lead to an ``alive`` item."""
        masks = []
        for lv in range(len(self.sizes)):
            m = np.zeros(self.n_nodes[lv] * self.sizes[lv], dtype=bool)
            m[self.key[lv][alive]] = True
            masks.append(torch.from_numpy(m))
        return masks

    def expand(self, leaves: np.ndarray, scores: np.ndarray, excluded: list[np.ndarray],
               k: int) -> tuple[np.ndarray, np.ndarray]:
        """Beam leaves (groups, -1 = none) -> top-``k`` item lists: each group's items not in
        ``excluded`` in item order, the group's score repeated; -1 / -inf pad."""
        if self.unique:
            return leaves[:, :k], scores[:, :k]
        items = np.full((len(leaves), k), -1, dtype=np.int64)
        out = np.full((len(leaves), k), -np.inf)
        for row in range(len(leaves)):
            skip = set(np.asarray(excluded[row]).tolist())
            pos = 0
            for leaf, score in zip(leaves[row], scores[row], strict=True):
                if leaf < 0 or pos >= k:
                    continue
                for item in self.members[leaf]:
                    if pos < k and int(item) not in skip:
                        items[row, pos], out[row, pos] = item, score
                        pos += 1
        return items, out


class BeamScorer(Protocol):
    """How a generative method scores one level of every live beam."""

    def logits(self, level: int, allowed: torch.Tensor) -> torch.Tensor:
        """[B, beams, size] float32 CPU logits of this level's codes for each beam (or
        [B, 1, size] to broadcast); ``allowed`` [B, beams, size] says which codes are legal."""

    def select(self, level: int, parent: torch.Tensor, code: torch.Tensor) -> None:
        """The new beams: ``parent`` [B, W] indexes the previous beams, ``code`` the code each
        new beam appended at ``level``."""


@torch.no_grad()
def trie_beam_search(scorer: BeamScorer, trie: SIDTrie, excluded: list[np.ndarray], *,
                     width: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items per user by beam search over ``trie`` minus ``excluded`` (each user's
    history); -1 pads short lists. Returns (items [B, k], log-probabilities [B, k]).

    The beam is ``max(width, k)`` wide; a list can hold fewer than ``k`` items when fewer IDs
    remain (or, with collisions, more than ``width`` items when groups hold several).
    """
    n_items, b, width = len(trie.codes), len(excluded), max(width, k)
    masks = []
    for row in range(b):
        alive = np.ones(n_items, dtype=bool)
        alive[np.asarray(excluded[row], dtype=np.int64)] = False
        masks.append(trie.allowed(alive))
    node = torch.zeros(b, 1, dtype=torch.long)
    score = torch.zeros(b, 1)
    for lv, size in enumerate(trie.sizes):
        flat = torch.stack([m[lv] for m in masks])  # [B, n_nodes * size]
        keys = node.clamp(min=0)[..., None] * size + torch.arange(size)
        allowed = torch.gather(flat, 1, keys.reshape(b, -1)).reshape(keys.shape)
        allowed &= torch.isfinite(score)[..., None] & (node >= 0)[..., None]
        logits = scorer.logits(lv, allowed)
        logits = logits.expand(b, score.shape[1], size).masked_fill(~allowed, -torch.inf)
        logp = torch.log_softmax(logits, dim=-1)
        logp = torch.where(allowed, logp, torch.full_like(logp, -torch.inf))
        cand = (score[..., None] + logp).reshape(b, -1)
        top = cand.topk(min(width, cand.shape[1]), dim=1)
        parent, code = top.indices // size, top.indices % size
        parent_node = torch.gather(node, 1, parent)
        child = torch.from_numpy(trie.child[lv])[(parent_node.clamp(min=0) * size + code)]
        score = top.values
        node = torch.where(torch.isfinite(score), child, torch.full_like(child, -1))
        scorer.select(lv, parent, code)
    leaves = node.numpy().copy()
    scores = score.numpy().copy()
    leaves[~np.isfinite(scores)] = -1
    if leaves.shape[1] < k:
        leaves = np.pad(leaves, ((0, 0), (0, k - leaves.shape[1])), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, k - scores.shape[1])), constant_values=-np.inf)
    return trie.expand(leaves, scores, excluded, k)
