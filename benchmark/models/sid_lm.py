"""Machinery of the SID-LLM: semantic-ID vocabulary, prompts, training steps, trie decoding.

Kept apart from the adapter (adapters/sid_llm.py) so that other generative methods can reuse the
vocabulary extension and the constrained decoder.

- :class:`SIDVocab` adds one token per (level, code) plus ``<|sid_start|>`` / ``<|sid_end|>`` to
  a tokenizer and a model. Level-specific tokens keep the grammar unambiguous: an item is always
  ``<|sid_start|><|sid_0_a|><|sid_1_b|>...<|sid_{L-1}_z|><|sid_end|>``.
- Prompts are short chat-template turns (the base model's template, a one-line system message)
  so that a 2-core CPU can afford them; the loss covers the answer tokens only.
- :func:`constrained_beam_search` decodes level by level over a prefix trie of the valid item
  IDs, with each user's history items removed from the trie, so every emitted ID is a real,
  unseen item at full length (disambiguation code included). Scores are the log-probability
  renormalised over the *allowed* continuations at each level (the usual constrained-decoding
  choice), so a step with a single allowed child costs nothing. All beams of a user share the
  prompt's KV cache (tree attention with a 4-D mask), each code is fed once, and only the code
  tokens of the current level are scored: on a 2-core CPU this ranks 3x faster than per-beam
  caches with the full LM head, with identical lists.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmark.models.sid_decoding import SIDTrie, trie_beam_search

START, END = "<|sid_start|>", "<|sid_end|>"
SYSTEM = "Recommender. Items are semantic IDs."  # short: every prompt token costs CPU time
_SID_RE = re.compile(r"<\|sid_start\|>((?:<\|sid_\d+_\d+\|>)+)<\|sid_end\|>")
_CODE_RE = re.compile(r"<\|sid_(\d+)_(\d+)\|>")


# --------------------------------------------------------------------------- vocabulary


class SIDVocab:
    """Semantic-ID tokens of a catalogue and their ids in one (extended) tokenizer."""

    def __init__(self, codes: np.ndarray, level_sizes: list[int]) -> None:
        self.codes = np.asarray(codes, dtype=np.int64)
        self.level_sizes = [int(s) for s in level_sizes]
        self.n_levels = self.codes.shape[1]
        # A written ID names its item, or with a published index's collisions the first item
        # of its tie group (ranking ties the whole group: benchmark.models.sid_decoding).
        self._item_of: dict[tuple[int, ...], int] = {}
        for i, row in enumerate(self.codes.tolist()):
            self._item_of.setdefault(tuple(row), i)

    def tokens(self) -> list[str]:
        level = [f"<|sid_{lv}_{c}|>" for lv, size in enumerate(self.level_sizes)
                 for c in range(size)]
        return [START, END, *level]

    def item_text(self, item: int) -> str:
        inner = "".join(f"<|sid_{lv}_{c}|>" for lv, c in enumerate(self.codes[item]))
        return f"{START}{inner}{END}"

    def extend(self, tokenizer: Any, model: Any, *, noise: float = 0.02, seed: int = 0,
               titles: list[str] | None = None) -> None:
        """Add the SID tokens, resize the embeddings, initialise the new rows.

        New rows = mean of the existing rows + Gaussian noise scaled by the per-dimension std
        times ``noise``: they start "average" (no strong prior on any existing token) but
        distinct, so the model can tell them apart from the first step. With ``titles`` (one
        per item), the row of code c at level l starts instead at the mean input embedding of
        the title tokens of the items whose level-l code is c (plus the same noise), so a code
        starts near what its items are called (:meth:`text_rows`).
        """
        old = len(tokenizer)
        text = None if titles is None else self.text_rows(tokenizer, model, titles)
        tokenizer.add_tokens(self.tokens(), special_tokens=True)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        emb = model.get_input_embeddings().weight
        with torch.no_grad():
            base = emb[:old].float()
            gen = torch.Generator().manual_seed(seed)  # on CPU: the same rows on any device
            rand = torch.randn(len(tokenizer) - old, emb.shape[1], generator=gen)
            centre = base.mean(0).expand(len(tokenizer) - old, -1).clone()
            if text is not None:
                centre[2:] = text.to(base.device)  # level tokens; start/end stay average
            rows = centre + noise * base.std(0) * rand.to(base.device)
            emb[old:] = rows.to(emb.dtype)
        self.bind(tokenizer)

    def text_rows(self, tokenizer: Any, model: Any, titles: list[str]) -> torch.Tensor:
        """[level tokens, d]: per (level, code), the mean input embedding of the title tokens
        of the items with that code (the mean of all rows for a code no item uses)."""
        if len(titles) != len(self.codes):
            raise ValueError(f"{len(titles)} titles for {len(self.codes)} items")
        emb = model.get_input_embeddings().weight.detach().float()
        item_vecs = torch.stack([
            emb[torch.tensor(ids or [tokenizer.eos_token_id], device=emb.device)].mean(0)
            for ids in tokenizer(list(titles), add_special_tokens=False)["input_ids"]])
        rows = []
        for level, size in enumerate(self.level_sizes):
            for code in range(size):
                members = np.flatnonzero(self.codes[:, level] == code)
                rows.append(item_vecs[torch.as_tensor(members, device=emb.device)].mean(0)
                            if len(members) else emb.mean(0))
        return torch.stack(rows)

    def bind(self, tokenizer: Any) -> None:
        """Look up the token ids of an already extended tokenizer."""
        ids = tokenizer.convert_tokens_to_ids(self.tokens())
        self.start_id, self.end_id = ids[0], ids[1]
        self.new_ids = list(ids)
        self.level_token_ids: list[torch.Tensor] = []
        pos = 2
        for size in self.level_sizes:
            self.level_token_ids.append(torch.tensor(ids[pos:pos + size], dtype=torch.long))
            pos += size

    def item_of(self, codes: tuple[int, ...]) -> int | None:
        return self._item_of.get(tuple(codes))

    def parse(self, text: str) -> list[int | None]:
        """Items named by SID in ``text``, in order (None for a well-formed but unknown ID)."""
        out: list[int | None] = []
        for match in _SID_RE.finditer(text):
            pairs = [(int(a), int(b)) for a, b in _CODE_RE.findall(match.group(1))]
            ok = [lv for lv, _ in pairs] == list(range(self.n_levels))
            out.append(self.item_of(tuple(c for _, c in pairs)) if ok else None)
        return out


# --------------------------------------------------------------------------- prompts


@dataclass
class Example:
    prompt: list[int]
    target: list[int]


class Prompter:
    """Builds the token ids of the chat turns that every task uses."""

    def __init__(self, tokenizer: Any, vocab: SIDVocab, catalog: Any, history_items: int,
                 history_titles: int = 0, steer_label_level: int | None = None,
                 attribute_fields: list[str] | None = None,
                 attribute_question: str = "Genres and year of {sid}?",
                 request_alignment: bool = False, steer_template: str = "{genre}") -> None:
        self.tok, self.vocab, self.catalog = tokenizer, vocab, catalog
        # The alignment tasks; request_to_sid (a request naming one of the item's labels, the
        # empty history -> the item's SID) teaches the label -> SID direction that steering
        # needs, from catalogue text alone.
        self.tasks = ALIGNMENT_TASKS + (("request_to_sid",) if request_alignment else ())
        self.steer_template = steer_template
        self.history_items = history_items
        self.attribute_fields = attribute_fields  # None: every attribute but the title
        self.attribute_question = attribute_question
        self.history_titles = history_titles  # words of each history title before its SID
        self.steer_label_level = steer_label_level
        self.eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)

    def history_entry(self, item: int) -> str:
        """One history item: its SID, after the first ``history_titles`` words of its title."""
        sid = self.vocab.item_text(item)
        if self.history_titles <= 0:
            return sid
        words = self.catalog.title(item).split()[:self.history_titles]
        return f"{' '.join(words)} {sid}"

    def steer_labels(self, item: int) -> tuple[str, ...]:
        """The labels a request may name for ``item``: all of them, or only the label at
        ``steer_label_level`` (Amazon: 0 = the category below the root)."""
        labels = self.catalog.labels[item]
        if self.steer_label_level is None:
            return tuple(labels)
        return tuple(labels[self.steer_label_level:self.steer_label_level + 1])

    def chat(self, user_text: str) -> list[int]:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user_text}]
        text = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def answer(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"] + [self.eos]

    def next_item(self, history: np.ndarray, request: str | None = None) -> list[int]:
        """The recommendation prompt (ends where the answer's SID would start)."""
        recent = history[-self.history_items:] if self.history_items > 0 else history[:0]
        sep = "; " if self.history_titles > 0 else ""
        items = sep.join(self.history_entry(int(i)) for i in recent) or "(none)"
        ask = f"\nRequest: {request}" if request else ""
        return self.chat(f"History: {items}{ask}\nNext item?")

    def attributes(self, item: int) -> str:
        attrs = self.catalog.attributes[item]
        keys = [k for k in attrs if k != "title"] if self.attribute_fields is None else \
            self.attribute_fields
        return "; ".join(f"{k}: {attrs[k]}" for k in keys if attrs.get(k)) or "unknown"

    # The three catalogue-alignment tasks of stage 1 (item text only).
    def sid_to_title(self, item: int) -> Example:
        return Example(self.chat(f"Title of {self.vocab.item_text(item)}?"),
                       self.answer(self.catalog.title(item)))

    def title_to_sid(self, item: int) -> Example:
        return Example(self.chat(f'ID of "{self.catalog.title(item)}"?'),
                       self.answer(self.vocab.item_text(item)))

    def sid_to_attributes(self, item: int) -> Example:
        return Example(self.chat(self.attribute_question.format(sid=self.vocab.item_text(item))),
                       self.answer(self.attributes(item)))

    def request_to_sid(self, item: int, label: str) -> Example:
        """The steering prompt with no history, answered by an item that carries ``label``."""
        request = self.steer_template.format(genre=label)
        return Example(self.next_item(np.zeros(0, dtype=np.int64), request),
                       self.answer(self.vocab.item_text(item)))

    def alignment(self, item: int, task: str, rng: np.random.Generator | None = None
                  ) -> list[Example]:
        """``task``'s examples for ``item``: one, or for request_to_sid one per label (a
        random one with ``rng``; none, or title_to_sid with ``rng``, for an unlabelled item)."""
        if task != "request_to_sid":
            return [getattr(self, task)(item)]
        labels = self.steer_labels(item)
        if rng is not None:
            return [self.request_to_sid(item, labels[rng.integers(len(labels))]) if labels
                    else self.title_to_sid(item)]
        return [self.request_to_sid(item, label) for label in labels]

    def alignment_examples(self, items: np.ndarray, rng: np.random.Generator | None = None
                           ) -> list[Example]:
        """Every alignment task per item (stage 1), or one random task each (``rng``)."""
        if rng is not None:
            return [ex for i in items
                    for ex in self.alignment(int(i), self.tasks[rng.integers(len(self.tasks))],
                                             rng)]
        return [ex for i in items for t in self.tasks for ex in self.alignment(int(i), t)]

    @staticmethod
    def sample_positions(sequences: list[np.ndarray], n: int, rng: np.random.Generator
                         ) -> list[tuple[int, int]]:
        """``n`` (user, target position) pairs drawn uniformly over training positions (every
        item after a user's first)."""
        lengths = np.array([max(len(s) - 1, 0) for s in sequences], dtype=np.int64)
        if lengths.sum() == 0 or n <= 0:
            return []
        users = np.repeat(np.arange(len(sequences)), lengths)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        return [(int(users[p]), int(p - starts[users[p]] + 1))
                for p in rng.integers(0, len(users), n)]

    def next_item_examples(self, sequences: list[np.ndarray], n: int, rng: np.random.Generator,
                           steer_share: float = 0.0, steer_template: str = "{genre}"
                           ) -> list[Example]:
        """``n`` (history -> next item) pairs drawn uniformly over training positions.

        A ``steer_share`` of them carry a request naming one of the target's catalogue labels
        (training data and catalogue only), which teaches the model to follow such requests.
        """
        examples = []
        for u, t in self.sample_positions(sequences, n, rng):
            seq, target = sequences[u], int(sequences[u][t])
            request, labels = None, self.steer_labels(target)
            if labels and rng.random() < steer_share:
                request = steer_template.format(genre=labels[rng.integers(len(labels))])
            examples.append(Example(self.next_item(seq[:t], request),
                                    self.answer(self.vocab.item_text(target))))
        return examples


ALIGNMENT_TASKS = ("sid_to_title", "title_to_sid", "sid_to_attributes")


# --------------------------------------------------------------------------- model calls


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _cache_kw(model: Any) -> str:
    """transformers 5.2x renamed ``past_key_values`` to ``cache``; accept either."""
    base = _base(model)
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _out_cache(out: Any) -> Any:
    return getattr(out, "cache", None) or getattr(out, "past_key_values", None)


@contextlib.contextmanager
def inference_weights(model: Any, precision: str = "float32") -> Iterator[None]:
    """Weights prepared once for a run of inference passes, and restored exactly afterwards.

    Two costs that every forward call would otherwise pay again, paid once here instead:

    - peft's trainable-token rows are merged into the embedding (peft's own ``merge`` /
      ``unmerge``). Unmerged, its wrapper rebuilds the whole embedding matrix (``index_copy``
      of 49k x 576 floats, about 38 ms on a 2-core CPU) on every call: five times per
      beam-search batch, once per generated token.
    - Under ``bfloat16`` (autocast), each LoRA update is merged into its frozen weight
      (:func:`merged_lora`: W + B A scale, computed in float32) and the frozen Linear weights
      are then cast to bfloat16 once (:func:`benchmark.models.llm.cast_frozen_linears`). A
      layer then costs one matrix product instead of three plus a scale and an add (15% less
      ranking time for Amazon on this CPU). Not bit-identical to per-call LoRA under autocast:
      the update is rounded into the bfloat16 weight rather than added to the bfloat16 output;
      the precision tool (``tools/sid_llm_precision.py``) pairs its validation NDCG@10 with
      float32's. Float32 inference stays per-call LoRA, bit-identical to training's forward.

    Training must not run inside: the bfloat16 copies are not the parameters being trained.
    """
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    from benchmark.models.llm import cast_frozen_linears, restore_linears

    tokens = [m for m in model.modules()
              if isinstance(m, TrainableTokensLayer) and not m.merged]
    casts: list[tuple[Any, Any]] = []
    loras: list[tuple[Any, str, Any]] = []
    try:
        for layer in tokens:
            layer.merge()
        if precision == "bfloat16":
            loras = merged_lora(model)
        casts = cast_frozen_linears(model, precision)
        yield
    finally:
        restore_linears(casts)
        for layer, name, data in reversed(loras):
            layer.base_layer.weight.data = data
            layer.merged_adapters.remove(name)
        for layer in reversed(tokens):
            layer.unmerge()


@torch.no_grad()
def merged_lora(model: Any) -> list[tuple[Any, str, Any]]:
    """Merge every active LoRA update into its base Linear weight (a new tensor: the original
    is kept, never changed) and mark the layer merged, so peft's forward calls the base layer
    alone; returns (layer, adapter, original weight data) for the caller to restore."""
    from peft.tuners.lora import LoraLayer

    out = []
    for m in model.modules():
        if not isinstance(m, LoraLayer) or not isinstance(m.base_layer, torch.nn.Linear):
            continue
        for name in m.active_adapters:
            if name in m.lora_A and name not in m.merged_adapters:
                weight = m.base_layer.weight
                out.append((m, name, weight.data))
                weight.data = weight.data + m.get_delta_weight(name).to(weight.dtype)
                m.merged_adapters.append(name)
    return out


def left_pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask: every sequence ends at the last column."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        if s:
            ids[row, width - len(s):] = torch.tensor(s)
            mask[row, width - len(s):] = 1
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


def answer_loss(model: Any, batch: list[Example], pad: int, max_len: int) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the answer tokens only; (loss, tokens in the batch).

    Sequences are left-padded so every answer ends at the last column; logits are computed
    only for the last ``max answer length`` positions (the LM head over ~50k tokens is a fifth
    of SmolLM2's compute, and prompt positions carry no loss).
    """
    seqs, n_target = [], []
    for ex in batch:
        seq = ex.prompt + ex.target
        seqs.append(seq[-max_len:])  # over-long histories lose their oldest tokens
        n_target.append(min(len(ex.target), max_len - 1))
    ids, mask = left_pad(seqs, pad)
    keep = max(n_target) + 1
    dev = next(model.parameters()).device
    out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                position_ids=positions(mask).to(dev), logits_to_keep=keep, use_cache=False)
    logits = out.logits[:, :-1].float()  # position j predicts token j + 1
    labels = ids[:, -(keep - 1):].clone()
    for row, n in enumerate(n_target):
        labels[row, : keep - 1 - n] = -100
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             labels.reshape(-1).to(dev), ignore_index=-100)
    return loss, int(mask.sum())


class StepTrainer:
    """AdamW on the trainable parameters over a plan of ``steps`` batches, trained in parts
    (:meth:`advance`), so validation can sit between parts without restarting the optimiser
    state or the learning-rate schedule (5% linear warm-up, then linear decay to 5%)."""

    def __init__(self, model: Any, examples: list[Example], *, steps: int, batch_size: int,
                 lr: float, pad: int, max_len: int, seed: int, progress: Callable | None = None,
                 desc: str = "train") -> None:
        self.model, self.examples, self.steps, self.batch_size = model, examples, steps, batch_size
        self.pad, self.max_len = pad, max_len
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.done, self.tokens, self.seconds, self.losses = 0, 0, 0.0, []
        if steps <= 0 or not examples or not self.params:
            self.steps = 0
            return
        self.opt = torch.optim.AdamW(self.params, lr=lr, weight_decay=0.0)
        warmup = max(1, steps // 20)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.05, 1 - s / steps))
        rng = np.random.default_rng(seed)
        self.order = np.concatenate([rng.permutation(len(examples))
                                     for _ in range(steps * batch_size // len(examples) + 1)])
        self.bar = progress(range(steps), desc=desc) if progress else None
        self._ticks = iter(self.bar) if self.bar is not None else None

    def advance(self, n: int) -> int:
        """Train the next ``n`` steps of the plan (fewer at its end); returns the steps run."""
        n = max(0, min(n, self.steps - self.done))
        if n == 0:
            return 0
        self.model.train()
        start = time.perf_counter()
        for step in range(self.done, self.done + n):
            bs = self.batch_size
            batch = [self.examples[i] for i in self.order[step * bs:(step + 1) * bs]]
            loss, n_tok = answer_loss(self.model, batch, self.pad, self.max_len)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.opt.step()
            self.sched.step()
            self.opt.zero_grad(set_to_none=True)
            self.losses.append(float(loss.detach()))
            self.tokens += n_tok
            if self._ticks is not None:
                next(self._ticks, None)
                if hasattr(self.bar, "set_postfix"):
                    rate = self.tokens / (self.seconds + time.perf_counter() - start)
                    self.bar.set_postfix(loss=f"{np.mean(self.losses[-10:]):.3f}",
                                         tok_s=f"{rate:.0f}")
        self.model.eval()
        self.seconds += time.perf_counter() - start
        self.done += n
        return n

    def stats(self) -> dict[str, Any]:
        """Throughput and losses of the steps run so far."""
        if self.done == 0:
            return {"steps": 0, "tokens": 0, "seconds": 0.0, "tokens_per_s": None}
        return {"steps": self.done, "tokens": self.tokens, "seconds": round(self.seconds, 1),
                "tokens_per_s": round(self.tokens / self.seconds, 1),
                "loss_first10": float(np.mean(self.losses[:10])),
                "loss_last10": float(np.mean(self.losses[-10:]))}


def train_steps(model: Any, examples: list[Example], *, steps: int, batch_size: int, lr: float,
                pad: int, max_len: int, seed: int, progress: Callable | None = None,
                desc: str = "train") -> dict[str, Any]:
    """AdamW on the trainable parameters for ``steps`` batches; returns throughput and losses."""
    trainer = StepTrainer(model, examples, steps=steps, batch_size=batch_size, lr=lr, pad=pad,
                          max_len=max_len, seed=seed, progress=progress, desc=desc)
    trainer.advance(steps)
    return trainer.stats()


@torch.no_grad()
def greedy(model: Any, prompts: list[list[int]], max_new: int, pad: int, eos: int,
           allowed: Callable[[int, list[int]], list[int] | None] | None = None
           ) -> list[list[int]]:
    """Greedy continuations (stops at ``eos``), with a KV cache. ``allowed(row, tokens so
    far)``, when given, is asked before each token of each unfinished row: a list of token ids
    restricts that step to them (the most probable of them is taken), None leaves it free."""
    dev = next(model.parameters()).device
    ids, mask = left_pad(prompts, pad)
    ids, mask = ids.to(dev), mask.to(dev)
    kw = _cache_kw(model)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask),
                use_cache=True, logits_to_keep=1)
    cache, pos = _out_cache(out), positions(mask)[:, -1:]
    result = [[] for _ in prompts]
    done = torch.zeros(len(prompts), dtype=torch.bool, device=dev)
    for _ in range(max_new):
        logits = out.logits[:, -1]
        nxt = logits.argmax(-1)
        for row in (~done).nonzero().flatten().tolist():
            only = allowed(row, result[row]) if allowed is not None else None
            if only:
                ids = torch.as_tensor(only, device=dev)
                nxt[row] = ids[logits[row, ids].argmax()]
            result[row].append(int(nxt[row]))
        done |= nxt == eos
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        pos = pos + 1
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos,
                    use_cache=True, logits_to_keep=1, **{kw: cache})
        cache = _out_cache(out)
    return result


# --------------------------------------------------------------------------- trie decoding


def level_heads(model: Any, vocab: SIDVocab) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Per level, the output-layer rows (and bias) of that level's code tokens.

    Decoding only ever compares code tokens of one level, so scoring them against these rows
    instead of the whole LM head (a fifth of SmolLM2's compute per position) gives the same
    logits at a fraction of the cost. Under a peft ``TrainableTokensWrapper`` (the tied head
    when the new rows are trained), ``.weight`` is the base weight with the trained rows merged:
    peft rebuilds it on every access (a copy of the whole 49k x 576 matrix), even when the rows
    are merged already (:func:`inference_weights`); then the base weight is those same values,
    and it is read directly.
    """
    head = _base(model).get_output_embeddings()
    tokens = getattr(head, "token_adapter", None)  # peft's TrainableTokensWrapper
    weight = (tokens.base_layer.weight if tokens is not None and tokens.merged
              else head.weight)  # unmerged, peft's wrapper merges on access
    bias = getattr(head, "bias", None)
    out = []
    for ids in vocab.level_token_ids:
        ids = ids.to(weight.device)
        out.append((weight[ids], None if bias is None else bias[ids]))
    return out


def shared_prefix(seqs: list[list[int]]) -> int:
    """Length of the token prefix every sequence starts with, leaving each at least one token
    of its own (the position whose hidden state the caller reads)."""
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for i in range(max(n, 0)):
        if any(s[i] != first[i] for s in seqs):
            return i
    return max(n, 0)


def prompt_pass(decoder: Any, seqs: list[list[int]], pad: int, dev: Any, kw: str
                ) -> tuple[Any, torch.Tensor]:
    """One cached forward pass over a batch of prompts: (output, attention mask [B, T]).

    The tokens every prompt starts with (the chat template's system turn and the start of the
    user turn: 20 of the 59 tokens of an Amazon recommendation prompt) are computed once, for
    one row, and their keys and values repeated for the batch; each prompt's own tokens follow,
    left-padded among themselves, so padding sits between the shared prefix and the rest and is
    masked out. Positions count unmasked tokens, so every prompt sees the same positions as in
    one uncached pass; the outputs agree with it up to float rounding.
    """
    n = shared_prefix(seqs)
    if n == 0:
        ids, mask = left_pad(seqs, pad)
        ids, mask = ids.to(dev), mask.to(dev)
        return decoder(input_ids=ids, attention_mask=mask, position_ids=positions(mask),
                       use_cache=True), mask
    head = decoder(input_ids=torch.tensor([seqs[0][:n]], device=dev), use_cache=True)
    cache = _out_cache(head)
    cache.batch_repeat_interleave(len(seqs))
    ids, tail = left_pad([s[n:] for s in seqs], pad)
    mask = torch.cat([torch.ones(len(seqs), n, dtype=tail.dtype), tail], dim=1).to(dev)
    out = decoder(input_ids=ids.to(dev), attention_mask=mask,
                  position_ids=positions(mask)[:, n:], use_cache=True, **{kw: cache})
    return out, mask


class LMBeamScorer:
    """Level logits of a causal LM for :func:`trie_beam_search`.

    All beams of a prompt share one KV cache (tree attention): each level feeds one token per
    beam, the code it chose at the level before, and a 4-D attention mask lets that token see
    the prompt, its own ancestors' tokens and itself. So the prompt's keys are never copied per
    beam and no code is fed twice. At the last level only beams with more than one allowed
    child are fed (on ML-100K the disambiguation level is almost always a single child).
    """

    def __init__(self, model: Any, prompts: list[list[int]], vocab: SIDVocab, pad: int) -> None:
        self.vocab = vocab
        self.dev = next(model.parameters()).device
        self.decoder = _base(model).get_decoder()
        self.kw = _cache_kw(self.decoder)
        self.heads = level_heads(model, vocab)
        self.n_levels = len(vocab.level_token_ids)
        out, self.mask = prompt_pass(self.decoder, [p + [vocab.start_id] for p in prompts],
                                     pad, self.dev, self.kw)
        self.cache, self.hidden = _out_cache(out), out.last_hidden_state[:, -1:]  # [B, 1, H]
        self.last_pos = positions(self.mask)[:, -1]
        self.prompt_len = self.mask.shape[1]
        b = len(prompts)
        self.chosen = torch.zeros(b, 1, dtype=torch.long)  # token each beam chose last level
        self.ancestors = torch.zeros(b, 1, 0, dtype=torch.long, device=self.dev)  # code columns

    def logits(self, lv: int, allowed: torch.Tensor) -> torch.Tensor:
        if lv > 0:
            self._feed(lv, allowed)
        weight, bias = self.heads[lv]
        return (self.hidden @ weight.T + (0 if bias is None else bias)).float().cpu()

    def _feed(self, lv: int, allowed: torch.Tensor) -> None:
        """Feed each beam's previous code; at the last level only beams with a choice."""
        dev, cache = self.dev, self.cache
        b, beams = allowed.shape[:2]
        dtype = self.hidden.dtype
        need = torch.ones((b, beams), dtype=torch.bool)
        if lv == self.n_levels - 1:
            need = allowed.sum(-1) > 1
        order = torch.argsort((~need).to(torch.int8), dim=1, stable=True)
        n_q = int(need.sum(1).max())
        hidden = torch.zeros(b, beams, self.hidden.shape[-1], dtype=dtype, device=dev)
        if n_q:
            sel = order[:, :n_q]  # [B, Q] beams fed, needed ones first
            real = torch.gather(need, 1, sel)
            kv_len = cache.get_seq_length() + n_q
            own = cache.get_seq_length() + torch.arange(n_q, device=dev)
            seen = torch.zeros(b, n_q, kv_len, dtype=torch.bool, device=dev)
            seen[:, :, :self.prompt_len] = self.mask[:, None, :].bool()
            anc = torch.gather(self.ancestors, 1, sel.to(dev)[..., None].expand(
                -1, -1, self.ancestors.shape[2]))
            seen.scatter_(2, anc, True)
            seen[:, torch.arange(n_q, device=dev), own] = True
            attn = torch.zeros(seen.shape, dtype=dtype, device=dev).masked_fill(
                ~seen, torch.finfo(dtype).min)[:, None]
            res = self.decoder(input_ids=torch.gather(self.chosen, 1, sel).to(dev),
                               attention_mask=attn, position_ids=(self.last_pos + lv)[:, None]
                               .expand(-1, n_q), use_cache=True, **{self.kw: cache})
            self.cache = _out_cache(res)
            rows, sel = real.nonzero().to(dev), sel.to(dev)
            hidden[rows[:, 0], sel[rows[:, 0], rows[:, 1]]] = \
                res.last_hidden_state[rows[:, 0], rows[:, 1]]
            if lv < self.n_levels - 1:  # every beam was fed: remember where its code lies
                col = torch.empty((b, beams), dtype=torch.long, device=dev)
                col.scatter_(1, sel, own[None].expand(b, -1))
                self.ancestors = torch.cat([self.ancestors, col[..., None]], dim=2)
        self.hidden = hidden

    def select(self, lv: int, parent: torch.Tensor, code: torch.Tensor) -> None:
        self.chosen = self.vocab.level_token_ids[lv][code]
        self.ancestors = torch.gather(self.ancestors, 1, parent.to(self.dev)[..., None].expand(
            -1, -1, self.ancestors.shape[2]))


@torch.no_grad()
def constrained_beam_search(model: Any, prompts: list[list[int]], excluded: list[np.ndarray],
                            trie: SIDTrie, vocab: SIDVocab, *, width: int, k: int, pad: int
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items per prompt by beam search over the SID trie; -1 pads short lists.

    Each prompt is followed by ``<|sid_start|>``; the decoder then picks one code per level
    among the continuations that still lead to an item not in ``excluded`` (the user's
    history): :func:`benchmark.models.sid_decoding.trie_beam_search` with an
    :class:`LMBeamScorer`. Returns (items [B, k], log-probabilities [B, k]).
    """
    scorer = LMBeamScorer(model, prompts, vocab, pad)
    return trie_beam_search(scorer, trie, excluded, width=width, k=k)
