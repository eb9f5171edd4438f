"""TIGER's network: an encoder-decoder transformer over semantic-ID tokens (Rajput et al., 2023).

The encoder reads a hashed user token and the user's last ``history_items`` items, each written as
its semantic ID (one token per level, a level's codes are their own tokens). The decoder writes
the next item's ID one level at a time; at level ``l`` it sees ``<bos>`` and the codes of levels
``< l`` and scores the codes of level ``l`` only (the others can never be legal there).

Shapes: a decoder input is ``[B, W, T]`` (W beams of T tokens per user). Self-attention runs
within a beam (``[B*W, T]``, causal); cross-attention lets all ``W*T`` positions of a user read
that user's encoder output once, so beam search never copies the encoder output per beam
(:class:`TigerBeamScorer`). Training is the case W = 1.

Positions are learned: the encoder's by slot counted from the right of the left-padded input (the
user token last, the most recent item just before it), the decoder's by level. Pre-norm blocks, GELU feed-forward.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PAD, BOS, N_SPECIAL = 0, 1, 2


def hashed_user(users: np.ndarray, buckets: int) -> np.ndarray:
    """The paper's user token: the user index hashed (Knuth's multiplicative hash) into
    ``buckets`` buckets, so users share tokens and the table does not grow with the users."""
    return ((np.asarray(users, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
            % np.uint64(buckets)).astype(np.int64)


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, head_dim: int, dropout: float) -> None:
        super().__init__()
        self.h, self.hd, self.dropout = n_heads, head_dim, dropout
        self.q = nn.Linear(d_model, n_heads * head_dim, bias=False)
        self.kv = nn.Linear(d_model, 2 * n_heads * head_dim, bias=False)
        self.o = nn.Linear(n_heads * head_dim, d_model, bias=False)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """[N, L, h*hd] -> [N, h, L, hd]"""
        return x.view(*x.shape[:2], self.h, self.hd).transpose(1, 2)

    def keys(self, mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(mem).chunk(2, dim=-1)
        return self.heads(k), self.heads(v)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], *,
                mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        q = self.heads(self.q(x))
        out = F.scaled_dot_product_attention(q, *kv, attn_mask=mask, is_causal=causal,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.o(out.transpose(1, 2).reshape(*x.shape[:2], -1))


def _ffn(d_model: int, ffn_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_model, ffn_dim), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(ffn_dim, d_model))


class EncoderLayer(nn.Module):
    def __init__(self, d: int, h: int, hd: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn, self.ff = Attention(d, h, hd, dropout), _ffn(d, ff, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.ln1(x)
        x = x + self.drop(self.attn(y, self.attn.keys(y), mask=mask))
        return x + self.drop(self.ff(self.ln2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, d: int, h: int, hd: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = Attention(d, h, hd, dropout)
        self.cross = Attention(d, h, hd, dropout)
        self.ff = _ffn(d, ff, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mem_kv: tuple[torch.Tensor, torch.Tensor],
                mem_mask: torch.Tensor) -> torch.Tensor:
        b, w, t, d = x.shape
        y = self.ln1(x).reshape(b * w, t, d)
        x = x + self.drop(self.self_attn(y, self.self_attn.keys(y), causal=True)
                          .view(b, w, t, d))
        y = self.ln2(x).reshape(b, w * t, d)
        x = x + self.drop(self.cross(y, mem_kv, mask=mem_mask).view(b, w, t, d))
        return x + self.drop(self.ff(self.ln3(x)))


class TigerModel(nn.Module):
    """Encoder over (user token, history codes) -> decoder over the next item's codes."""

    def __init__(self, level_sizes: list[int], *, history_items: int, user_buckets: int,
                 d_model: int, n_heads: int, head_dim: int, ffn_dim: int,
                 encoder_layers: int, decoder_layers: int, dropout: float) -> None:
        super().__init__()
        self.level_sizes = list(level_sizes)
        self.n_levels = len(level_sizes)
        self.history_items = history_items
        self.user_buckets = user_buckets
        offsets = np.concatenate([[0], np.cumsum(level_sizes)[:-1]]) + N_SPECIAL
        self.register_buffer("offsets", torch.as_tensor(offsets, dtype=torch.long),
                             persistent=False)
        n_codes = int(sum(level_sizes))
        self.user_offset = N_SPECIAL + n_codes
        self.embed = nn.Embedding(self.user_offset + max(user_buckets, 1), d_model)
        self.src_len = 1 + history_items * self.n_levels
        self.enc_pos = nn.Embedding(self.src_len, d_model)
        self.dec_pos = nn.Embedding(self.n_levels, d_model)
        args = (d_model, n_heads, head_dim, ffn_dim, dropout)
        self.encoder = nn.ModuleList(EncoderLayer(*args) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(*args) for _ in range(decoder_layers))
        self.enc_norm, self.dec_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, n_codes)
        self.level_slices = [slice(int(o) - N_SPECIAL, int(o) - N_SPECIAL + s)
                             for o, s in zip(offsets, level_sizes, strict=True)]

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    # ------------------------------------------------------------------ inputs

    def source(self, users: np.ndarray, histories: list[np.ndarray], codes: np.ndarray
               ) -> torch.Tensor:
        """[B, src_len] encoder tokens, right-aligned: PAD, the last items' code tokens
        (oldest first), then the user token in the last slot (PAD without user buckets)."""
        offsets = self.offsets.cpu().numpy()
        out = np.full((len(histories), self.src_len), PAD, dtype=np.int64)
        if self.user_buckets > 0:
            out[:, -1] = self.user_offset + hashed_user(users, self.user_buckets)
        for row, hist in enumerate(histories):
            tail = np.asarray(hist, dtype=np.int64)[-self.history_items:]
            if len(tail):
                toks = (codes[tail] + offsets).reshape(-1)
                out[row, self.src_len - 1 - len(toks):self.src_len - 1] = toks
        return torch.as_tensor(out, device=self.device)

    def target_tokens(self, target_codes: torch.Tensor) -> torch.Tensor:
        """[..., T] codes of levels 0..T-1 -> decoder input tokens [..., T + 1] (BOS first)."""
        t = target_codes.shape[-1]
        toks = target_codes + self.offsets[:t]
        bos = torch.full((*target_codes.shape[:-1], 1), BOS, dtype=torch.long,
                         device=target_codes.device)
        return torch.cat([bos, toks], dim=-1)

    # ------------------------------------------------------------------ passes

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoder output [B, S', d], attention mask [B, 1, 1, S'], True = a real token).

        Columns that are PAD in every row are dropped first (short histories are the rule on
        Amazon, where this makes the encoder several times cheaper); positions count from the
        right, so a token's position does not depend on the batch it is in."""
        real = src != PAD
        used = real.any(0).nonzero()
        width = src.shape[1] - int(used.min()) if len(used) else 1
        src, real = src[:, -width:], real[:, -width:]
        mask = real.clone()
        mask[:, -1] = True  # a row with no token at all (no user token, empty history)
        mask = mask[:, None, None, :]
        pos = torch.arange(self.src_len - width, self.src_len, device=src.device)
        x = self.drop(self.embed(src) + self.enc_pos(pos))
        for layer in self.encoder:
            x = layer(x, mask)
        return self.enc_norm(x), mask

    def decode(self, tokens: torch.Tensor, memory: torch.Tensor, mem_mask: torch.Tensor
               ) -> torch.Tensor:
        """Decoder hidden states [B, W, T, d] for input tokens [B, W, T]."""
        t = tokens.shape[-1]
        x = self.drop(self.embed(tokens) + self.dec_pos(torch.arange(t, device=tokens.device)))
        for layer in self.decoder:
            x = layer(x, layer.cross.keys(memory), mem_mask)
        return self.dec_norm(x)

    def level_logits(self, hidden: torch.Tensor, level: int) -> torch.Tensor:
        sl = self.level_slices[level]
        return F.linear(hidden, self.out.weight[sl], self.out.bias[sl])

    def loss(self, src: torch.Tensor, target_codes: torch.Tensor) -> torch.Tensor:
        """Teacher-forced cross-entropy of the target ID, summed over levels, mean over users."""
        memory, mask = self.encode(src)
        tokens = self.target_tokens(target_codes[:, :-1])[:, None]  # [B, 1, L]
        hidden = self.decode(tokens, memory, mask)[:, 0]  # [B, L, d]
        total = 0.0
        for lv in range(self.n_levels):
            total = total + F.cross_entropy(self.level_logits(hidden[:, lv], lv),
                                            target_codes[:, lv])
        return total


class TigerBeamScorer:
    """Level logits of a :class:`TigerModel` for ``trie_beam_search``: the encoder runs once per
    user, and each level re-decodes every beam's prefix (at most L tokens, cheaper than a cache
    for IDs this short)."""

    def __init__(self, model: TigerModel, src: torch.Tensor) -> None:
        self.model = model
        self.memory, self.mask = model.encode(src)
        self.prefix = torch.zeros(len(src), 1, 0, dtype=torch.long, device=model.device)

    def logits(self, level: int, allowed: torch.Tensor) -> torch.Tensor:
        tokens = self.model.target_tokens(self.prefix)  # [B, W, level + 1]
        hidden = self.model.decode(tokens, self.memory, self.mask)[:, :, -1]
        return self.model.level_logits(hidden, level).float().cpu()

    def select(self, level: int, parent: torch.Tensor, code: torch.Tensor) -> None:
        dev = self.prefix.device
        kept = torch.gather(self.prefix, 1, parent.to(dev)[..., None].expand(
            -1, -1, self.prefix.shape[2]))
        self.prefix = torch.cat([kept, code.to(dev)[..., None]], dim=2)
