"""Recformer's encoder and input construction (Li et al., KDD 2023, "Text Is All You Need").

An item is a "sentence" of attribute key tokens followed by value tokens (``title toy story
year 1995 genres animation ...``), with no separators. A user is ``[CLS]`` followed by the
sentences of their items from the most recent to the oldest. Four embeddings are summed before
the backbone's LayerNorm: token, token position, token type (CLS / key / value / pad) and item
position (1 = most recent item, 0 = CLS, a pad index). One encoder embeds both users and items;
the CLS output is the vector, and scores are cosine similarities divided by tau.

Scale-downs from the paper: the backbone is any BERT-like encoder (default:
the packaged all-MiniLM-L6-v2, 6 layers, hidden 384, 512 positions, full attention) instead of
Longformer-base. Its 2-row token-type table is widened to 4 rows and an item-position table is
added; both start as "no change": every type row is a copy of the pretrained row 0 (the only
row all-MiniLM saw in training) plus tiny noise, and item positions start near zero, so before
training the encoder computes what the sentence encoder computes. MiniLM ships no MLM head: a
fresh one (transform + decoder tied to the word embeddings) is added for pretraining only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import BenchmarkError
from benchmark.models import packaged

CLS_TYPE, KEY_TYPE, VALUE_TYPE, PAD_TYPE = 0, 1, 2, 3
PACKAGED_MINILM = packaged.MINILM
NEW_ROW_STD = 0.002  # new embedding rows start this close to "no change" (BERT init is 0.02)


def load_backbone(name_or_path: str) -> tuple[nn.Module, Any]:
    """(transformers encoder, tokenizer) for a BERT-like model; a clear error when missing."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = packaged.resolve(name_or_path, "backbone")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the unused pooler's "UNEXPECTED keys" report is noise
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, add_pooling_layer=False)
    except (OSError, ValueError) as exc:
        raise BenchmarkError(f"backbone {name_or_path!r} cannot be loaded offline ({exc}); set "
                             "the config key `backbone` to a local BERT-like model") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, tokenizer


# ------------------------------------------------------------------------- input construction

@dataclass(frozen=True)
class ItemTokens:
    """One item's sentence: token ids and their types (key / value), without [CLS]."""

    ids: tuple[int, ...]
    types: tuple[int, ...]


def item_sentences(attributes: Sequence[dict[str, str]], tokenizer: Any,
                   attr_max_tokens: int) -> list[ItemTokens]:
    """Key tokens then value tokens for every non-empty attribute, each cut to attr_max_tokens."""
    out = []
    for attrs in attributes:
        ids: list[int] = []
        types: list[int] = []
        for key, value in attrs.items():
            if not value:
                continue
            key_ids = tokenizer.encode(key, add_special_tokens=False)[:attr_max_tokens]
            value_ids = tokenizer.encode(value, add_special_tokens=False)[:attr_max_tokens]
            ids += key_ids + value_ids
            types += [KEY_TYPE] * len(key_ids) + [VALUE_TYPE] * len(value_ids)
        out.append(ItemTokens(tuple(ids), tuple(types)))
    return out


@dataclass
class EncoderInput:
    """A padded batch: token ids, token types, item positions, attention mask ([B, L] each)."""

    input_ids: torch.Tensor
    token_types: torch.Tensor
    item_positions: torch.Tensor
    attention_mask: torch.Tensor

    def to(self, device: str) -> EncoderInput:
        return EncoderInput(*(t.to(device) for t in vars(self).values()))


def sequence_tokens(history: Sequence[int], sentences: Sequence[ItemTokens], cls_id: int,
                    max_tokens: int, max_items: int) -> tuple[list[int], list[int], list[int]]:
    """[CLS] + items newest first; whole items are dropped from the oldest end to fit the budget.

    Returns (ids, types, item_positions). An item is encoded the same way: a history of one.
    The paper cuts the token stream at the budget, which can leave half an item; we keep whole
    items so an item's tokens are always complete.
    """
    ids, types, positions = [cls_id], [CLS_TYPE], [0]
    newest_first = list(history)[::-1][:max_items]
    for rank, item in enumerate(newest_first, start=1):
        sent = sentences[item]
        if len(ids) + len(sent.ids) > max_tokens:
            break
        ids += sent.ids
        types += sent.types
        positions += [rank] * len(sent.ids)
    return ids, types, positions


def collate(rows: Sequence[tuple[list[int], list[int], list[int]]], pad_id: int,
            item_pad: int) -> EncoderInput:
    """Right-pad token rows to the longest one (pad type PAD_TYPE, item position item_pad)."""
    length = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    types = torch.full((len(rows), length), PAD_TYPE, dtype=torch.long)
    positions = torch.full((len(rows), length), item_pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for row, (i, t, p) in enumerate(rows):
        ids[row, : len(i)] = torch.tensor(i)
        types[row, : len(t)] = torch.tensor(t)
        positions[row, : len(p)] = torch.tensor(p)
        mask[row, : len(i)] = 1
    return EncoderInput(ids, types, positions, mask)


# ---------------------------------------------------------------------------------- the model

class RecformerEncoder(nn.Module):
    """A BERT-like backbone with 4 token types and item positions; returns CLS vectors."""

    def __init__(self, backbone: nn.Module, max_items: int) -> None:
        super().__init__()
        self.backbone = backbone
        emb = backbone.embeddings
        hidden = emb.word_embeddings.embedding_dim
        old = emb.token_type_embeddings.weight.data
        types = nn.Embedding(4, hidden)
        types.weight.data = old[0].repeat(4, 1) + NEW_ROW_STD * torch.randn(4, hidden)
        types.weight.data[CLS_TYPE] = old[0]
        emb.token_type_embeddings = types
        self.hidden_size = hidden
        self.max_items = max_items
        self.item_pad = max_items + 1
        self.item_position_embeddings = nn.Embedding(max_items + 2, hidden,
                                                     padding_idx=self.item_pad)
        nn.init.normal_(self.item_position_embeddings.weight, std=NEW_ROW_STD)
        with torch.no_grad():
            self.item_position_embeddings.weight[self.item_pad].zero_()
        # RoBERTa-family models (the paper's Longformer too) count positions from pad_id + 1.
        roberta_like = backbone.config.model_type in ("roberta", "xlm-roberta", "longformer")
        self.position_offset = backbone.config.pad_token_id + 1 if roberta_like else 0
        self.max_tokens = backbone.config.max_position_embeddings - self.position_offset

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.backbone.embeddings.word_embeddings

    def hidden_states(self, x: EncoderInput) -> torch.Tensor:
        """Last hidden states [B, L, H] from the four summed embeddings."""
        embeds = self.word_embeddings(x.input_ids) + self.item_position_embeddings(
            x.item_positions)
        positions = torch.arange(x.input_ids.shape[1], device=x.input_ids.device)
        positions = (positions + self.position_offset).expand_as(x.input_ids)
        out = self.backbone(inputs_embeds=embeds, token_type_ids=x.token_types,
                            position_ids=positions, attention_mask=x.attention_mask)
        return out.last_hidden_state

    def forward(self, x: EncoderInput) -> torch.Tensor:
        """CLS vectors [B, H] (not normalised; scoring normalises)."""
        return self.hidden_states(x)[:, 0]


class MLMHead(nn.Module):
    """A fresh masked-LM head whose decoder is tied to the encoder's word embeddings."""

    def __init__(self, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        hidden = word_embeddings.embedding_dim
        self.word_embeddings = word_embeddings
        self.transform = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden))
        self.bias = nn.Parameter(torch.zeros(word_embeddings.num_embeddings))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.transform(hidden) @ self.word_embeddings.weight.T + self.bias


def cosine_logits(users: torch.Tensor, items: torch.Tensor, tau: float) -> torch.Tensor:
    """cos(user, item) / tau for every pair: [B, H] x [N, H] -> [B, N]."""
    return F.normalize(users, dim=-1) @ F.normalize(items, dim=-1).T / tau


def mask_tokens(x: EncoderInput, mask_id: int, vocab_size: int, probability: float,
                generator: torch.Generator) -> tuple[EncoderInput, torch.Tensor]:
    """BERT masking (80% [MASK], 10% random, 10% kept) of key/value tokens; labels -100 elsewhere."""
    ids = x.input_ids.clone()
    maskable = (x.token_types == KEY_TYPE) | (x.token_types == VALUE_TYPE)
    chosen = (torch.rand(ids.shape, generator=generator) < probability) & maskable
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    roll = torch.rand(ids.shape, generator=generator)
    ids[chosen & (roll < 0.8)] = mask_id
    random_ids = torch.randint(vocab_size, ids.shape, generator=generator)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    ids[swap] = random_ids[swap]
    return EncoderInput(ids, x.token_types, x.item_positions, x.attention_mask), labels


def sample_pairs(sequences: Sequence[np.ndarray], pairs_per_user: int,
                 rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
    """(prefix, next item) pairs, shuffled: per user, ``pairs_per_user`` distinct target
    positions drawn uniformly from the second half of the sequence, as the reference collator
    does (one pair per user per epoch there: ``randint((n - 1) // 2, n - 1)``)."""
    pairs = []
    for seq in sequences:
        if len(seq) < 2:
            continue
        positions = np.arange(max(1, (len(seq) - 1) // 2), len(seq))
        n = min(pairs_per_user, len(positions))
        for t in rng.choice(positions, size=n, replace=False):
            pairs.append((seq[:t], int(seq[t])))
    order = rng.permutation(len(pairs))
    return [pairs[i] for i in order]
