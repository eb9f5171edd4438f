"""Measurements and conversation helpers of the SID-LLM beyond the harness's ranking metrics.

- title <-> SID round-trip accuracy on a fixed sample of items (after each training stage);
- the invalid-ID rate of *unconstrained* greedy decoding (how often the free model names no item;
  the ranked list itself is always constrained);
- steerability: for the most frequent catalogue labels (MovieLens genres), the share of the
  top-10 that carries the requested label, steered vs unsteered, for the same seeded users;
- ``respond`` for `chat`: a request becomes a constrained recommendation, "why" goes to the
  adapter's ``explain`` (the model's words: adapters/sid_llm_explain.py), "tell me about <title
  or SID>" to :func:`describe`. :func:`explain` here is the count-based reason: the baseline the
  model's explanations are measured against, and the fallback of a model not trained to
  explain (``explain_share`` 0).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from typing import Any

import numpy as np

from benchmark.models.sid_lm import constrained_beam_search, greedy

ROUNDTRIP_SEED = 20240  # the round-trip sample is fixed: the same items for every run and stage


def _batches(n: int, size: int):
    for lo in range(0, n, size):
        yield slice(lo, min(lo + size, n))


def roundtrip(adapter: Any, n: int, seed: int = ROUNDTRIP_SEED) -> dict[str, Any]:
    """Share of sampled items whose title maps to their SID and whose SID maps to their title."""
    catalog, prompter, size = adapter.catalog, adapter.prompter, adapter.config.eval_batch
    n = min(n, len(catalog))
    if n <= 0:
        return {"items": 0}
    items = np.sort(np.random.default_rng(seed).choice(len(catalog), n, replace=False))
    to_sid = to_title = 0
    for sl in _batches(n, size):
        batch = items[sl]
        prompts = [prompter.title_to_sid(int(i)).prompt for i in batch]
        found, _ = constrained_beam_search(adapter.model, prompts, [np.zeros(0, np.int64)] * len(
            batch), adapter.trie, adapter.vocab, width=4, k=1, pad=adapter.pad)
        to_sid += int((found[:, 0] == batch).sum())
        tasks = [prompter.sid_to_title(int(i)) for i in batch]
        # an exact match is at most as long as the longest answer: no need to decode further
        longest = max(len(t.target) for t in tasks)
        outs = greedy(adapter.model, [t.prompt for t in tasks], longest, adapter.pad, prompter.eos)
        for i, out in zip(batch, outs):
            text = adapter.tok.decode(out, skip_special_tokens=True).strip().lower()
            to_title += int(text == catalog.title(int(i)).strip().lower())
    return {"items": n, "title_to_sid": to_sid / n, "sid_to_title": to_title / n}


def invalid_rate(adapter: Any, sequences: list[np.ndarray], n: int, seed: int) -> dict[str, Any]:
    """Unconstrained greedy answers to the recommendation prompt: how many name no item."""
    users = [u for u, s in enumerate(sequences) if len(s)]
    if n <= 0 or not users:
        return {"users": 0}
    picks = np.random.default_rng(seed).choice(users, min(n, len(users)), replace=False)
    invalid = in_history = 0
    for sl in _batches(len(picks), adapter.config.eval_batch):
        hs = [sequences[u] for u in picks[sl]]
        prompts = [adapter.prompter.next_item(h) for h in hs]
        outs = greedy(adapter.model, prompts, adapter.vocab.n_levels + 3, adapter.pad,
                      adapter.prompter.eos)
        for h, out in zip(hs, outs):
            named = adapter.vocab.parse(adapter.tok.decode(out))
            if not named or named[0] is None:
                invalid += 1
            elif named[0] in set(h.tolist()):
                in_history += 1
    return {"users": len(picks), "invalid_id_rate": invalid / len(picks),
            "history_item_rate": in_history / len(picks)}


def top_labels(catalog: Any, n: int, level: int | None = None) -> list[str]:
    """The ``n`` most frequent labels (at ``level`` of each item's label path, or any)."""
    counts = Counter(g for labels in catalog.labels
                     for g in (labels if level is None else labels[level:level + 1]))
    return [g for g, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def steerability(adapter: Any, sequences: list[np.ndarray], seed: int, top: int = 10
                 ) -> dict[str, Any]:
    """Share of the top-``top`` with the requested genre, steered vs unsteered, same users."""
    cfg, catalog = adapter.config, adapter.catalog
    genres = top_labels(catalog, cfg.steer_genres, cfg.steer_label_level)
    users = [u for u, s in enumerate(sequences) if len(s)]
    if not genres or not users:
        return {}
    picks = np.sort(np.random.default_rng(seed).choice(users, min(cfg.steer_users, len(users)),
                                                       replace=False))
    hs = [sequences[u] for u in picks]
    has = {g: np.array([g in labels for labels in catalog.labels] + [False]) for g in genres}

    def share(lists: np.ndarray, g: str) -> float:
        valid = lists >= 0
        return float((has[g][lists] & valid).sum() / max(int(valid.sum()), 1))

    width = cfg.steer_beam_width
    plain = adapter.recommend_ids(hs, None, top, width)
    table = {}
    for g in genres:
        steered = adapter.recommend_ids(hs, [cfg.steer_template.format(genre=g)] * len(hs), top,
                                        width)
        table[g] = {"unsteered": share(plain, g), "steered": share(steered, g)}
        table[g]["lift"] = table[g]["steered"] - table[g]["unsteered"]
    return {"users": len(picks), "top": top, "beam_width": max(width, top),
            "template": cfg.steer_template, "genres": table,
            "mean_unsteered": float(np.mean([v["unsteered"] for v in table.values()])),
            "mean_steered": float(np.mean([v["steered"] for v in table.values()]))}


# --------------------------------------------------------------------------- conversation


def explain(catalog: Any, history: np.ndarray, items: list[int], prompt: str | None) -> str:
    """A count-based reason: the history's main genres, and how the picks match them."""
    recent = [int(i) for i in np.asarray(history)[-20:]]
    hist = Counter(g for i in recent for g in catalog.labels[i])
    picks = Counter(g for i in items for g in catalog.labels[i])
    parts = []
    if hist:
        main = [g for g, _ in hist.most_common(2)]
        shared = sum(any(g in main for g in catalog.labels[i]) for i in items)
        parts.append(f"your recent items are mostly {' and '.join(main)}; {shared} of these "
                     f"{len(items)} picks share one of those genres")
    if prompt:
        asked = [g for g in picks if g.lower() in prompt.lower()]
        for g in asked:
            parts.append(f"{picks[g]} of {len(items)} are {g}, as requested")
    if picks and not parts:
        parts.append("most common genres among the picks: "
                     + ", ".join(f"{g} ({c})" for g, c in picks.most_common(3)))
    return ("; ".join(parts) or "no genre information") + " (counted from catalogue genres)."


# A title is recognised in a chat message only as whole words (case-insensitive, whitespace
# runs counted as one space): "M" is not every message with an "m" in it, and "Movie 4" is not
# "Movie 40". Without its year a title must have at least MIN_BARE_TITLE characters, else it
# matches only as "Title (year)": "M (1931)" and "Ran (1985)" are named, "m" and "ran" are words.
# Titles found inside a longer title found at the same place count as that one only ("Heat" in
# "In the Heat of the Night", "Hamlet" in "Hamlet (1996)").
MIN_BARE_TITLE = 4
_YEAR_SUFFIX = re.compile(r"(.*?)\s*\((\d{4})\)")


def shorten(title: str, words: int) -> str:
    """A title's first ``words`` words, cut before an opening parenthesis left unclosed."""
    short = " ".join(title.split()[:words])
    if short.count("(") > short.count(")"):
        short = short[:short.rindex("(")].rstrip() or short
    return short


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


class _TitleIndex:
    """Every way an item may be named (see the note above), for one catalogue: a dict lookup
    per (word start, word end) pair of a message, not a scan of the catalogue per message."""

    def __init__(self, catalog: Any, short_words: int = 0) -> None:
        self.names: dict[str, list[int]] = {}
        for i, attributes in enumerate(catalog.attributes):
            title = _normal(attributes.get("title") or "")  # an item id is not a title
            if not title:
                continue
            dated = _YEAR_SUFFIX.fullmatch(title)  # a title that carries its "(year)"
            bare, year = dated.groups() if dated else (title, str(attributes.get("year", "")))
            names = {title, bare}
            short = shorten(bare, short_words) if short_words > 0 else ""
            if len(short) >= MIN_BARE_TITLE:  # the short name an explanation uses
                names.add(short)
            if year.strip().isdigit() and bare:
                names.add(f"{bare} ({year.strip()})")
            if len(bare) < MIN_BARE_TITLE:
                names.discard(bare)
            for name in names:
                self.names.setdefault(name, []).append(i)
        self.longest = max(map(len, self.names), default=0)

    def find(self, text: str) -> list[int]:
        low = _normal(text)
        found: list[int] = []
        for a, b in self.spans(low):
            found += [i for i in self.names[low[a:b]] if i not in found]
        return found

    def spans(self, low: str) -> list[tuple[int, int]]:
        """(start, end) of every name in the normalised text ``low``, outermost only, in
        order."""
        word = [c.isalnum() or c == "_" for c in low]  # what \w matches
        ends = [j for j in range(1, len(low) + 1) if j == len(low) or not word[j]]
        spans = []
        for start in range(len(low)):
            if start and word[start - 1]:
                continue  # inside a word
            for end in ends[bisect_right(ends, start):]:
                if end - start > self.longest:
                    break
                if low[start:end] in self.names:
                    spans.append((start, end))
        kept = [(a, b) for a, b in spans
                if not any(c <= a and b <= d and (c, d) != (a, b) for c, d in spans)]
        return sorted(kept)


_INDEX: list[tuple[Any, _TitleIndex]] = []  # the last catalogue's index (one chat, one catalogue)


def _titles_in(catalog: Any, text: str) -> list[int]:
    """Catalogue items named by title in ``text``, in the order they appear (see the note above
    :data:`MIN_BARE_TITLE` for what counts as naming one)."""
    if not _INDEX or _INDEX[0][0] is not catalog:
        _INDEX[:] = [(catalog, _TitleIndex(catalog))]
    return _INDEX[0][1].find(text)


def respond(adapter: Any, messages: list[dict[str, str]], history: np.ndarray, k: int = 5
            ) -> str:
    """Recommend from the user's history plus every item named so far (by SID or title).

    The last user turn, with SIDs removed, is the steering request. "why" asks for the reason
    behind the previous answer.
    """
    catalog, vocab = adapter.catalog, adapter.vocab
    last = messages[-1]["content"]
    if re.search(r"\bwhy\b", last.lower()):
        previous = [m["content"] for m in messages[:-1] if m["role"] == "assistant"]
        items = [i for i in vocab.parse(previous[-1]) if i is not None] if previous else []
        if items:
            return adapter.explain(history, items, None)
    if ABOUT.search(last):
        about = [i for i in vocab.parse(last) if i is not None] or _titles_in(catalog, last)
        if about:
            return describe(adapter, about[0])
    named: list[int] = []
    for m in messages:
        if m["role"] == "user":
            named += [i for i in vocab.parse(m["content"]) if i is not None]
            named += _titles_in(catalog, m["content"])
    context = np.concatenate([np.asarray(history, dtype=np.int64),
                              np.asarray(named, dtype=np.int64)])
    request = re.sub(r"<\|sid_[^|]*\|>", "", last).strip() or None
    items = adapter.recommend_for(context, request, k)
    lines = [f"{r}. {catalog.title(i)}  {vocab.item_text(i)}" for r, i in enumerate(items, 1)]
    return "\n".join(["Here is what I would pick:", *lines,
                      "Why: " + adapter.explain(context, items, request)])


ABOUT = re.compile(r"\b(tell me about|what is|describe)\b", re.IGNORECASE)


def describe(adapter: Any, item: int) -> str:
    """What the model says an item is, from its ID alone (the stage-1 SID -> title and
    SID -> attributes tasks, greedy), beside the ID it was given."""
    prompter = adapter.prompter
    tasks = [prompter.sid_to_title(item), prompter.sid_to_attributes(item)]
    outs = greedy(adapter.model, [t.prompt for t in tasks], adapter.config.explain_max_new,
                  adapter.pad, prompter.eos)
    title, attributes = (adapter.tok.decode(o, skip_special_tokens=True).strip() for o in outs)
    return f"{adapter.vocab.item_text(item)} is {title} ({attributes})."
