"""Explanations the SID-LLM writes, the facts it writes them from, and how faithful they are.

Faithful by construction and by training:

- **Facts.** For a pick and a history, :func:`facts` collects what the catalogue and the
  training data say: the pick's claimable values (labels, i.e. MovieLens genres or Amazon
  categories, plus brand and year where the catalogue has them), the most recent history items
  (of the whole history) that share a label or the brand with it, with the shared values, and,
  when fewer than ``MAX_LINKS`` do, the history items other users bought together with it in
  their training sequences (:class:`CoPurchases`), then those of the pick's semantic-ID family
  (the same first code: the codes quantise the items' text embeddings, so a family is items
  described alike). The later kinds exist because on Amazon half of the next items share no
  category or brand with anything their user bought before (400 sampled training users: 50%
  share one, 63% share one or were bought together with a history item by another user;
  ML-100K: 99.5% share a genre), and for the model's own top picks (200 Amazon `loo` test users,
  seed 0) 75.5% share one, 78.5% with bought-together items, while 83.5% share a first code
  with a history item. The explanation prompt carries these facts and nothing else about the
  items, so a faithful answer only has to restate them.
- **Training.** Stage 2 mixes in ``explain_share`` explanation examples: (history, next item)
  pairs of the training sequences, the prompt built from their facts, the target a sentence
  :func:`reason` writes from the same facts. The model learns the task from catalogue facts
  and training sequences only.
- **Decoding.** With ``explain_copy`` a title the model starts after one of the sentence's cues
  is copied from the facts token by token (:class:`TitleCopy`), as the ranking is constrained
  to real semantic IDs: on one Amazon `loo` model it raised the history-reference rate from
  79.0% to 88.0% of 200 users (18 gained, none lost), the facts' ceiling being 88.5%.
- **Measurement** (:func:`check`, :func:`faithfulness`), automatic and the same for the model and
  the count-based baseline:
  - a *title* is named when a catalogue title, or its short form (:func:`short_title`), occurs
    on word boundaries, case-insensitively, with at least ``MIN_BARE_TITLE`` characters (the
    chat's rule); an explanation is *hallucinated* when it names a title that is neither in
    the history nor among the picks;
  - a *claim* is a catalogue value (label, brand, year; at least 3 characters) found on word
    boundaries outside every named title; it is *supported* when it belongs to the pick or
    to a history item the explanation names;
  - *history reference*: the explanation names at least one history item. An explanation that
    names nothing scores as no history reference, never as faithful;
  - *connected history*: of the history items explanations name, the share that is connected
    to the pick (a shared label or brand, bought together by another user, or the same
    semantic-ID family). Whether the
    sentence states the connection the facts give (which shared value, "bought together") is
    not checked beyond this;
  - length in words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adapters.sid_llm_diagnostics import _normal, _TitleIndex, shorten

SHORT_WORDS = 6  # words of a title in the facts and the explanation (Amazon titles run long)
MIN_CLAIM = 3  # a catalogue value shorter than this is not looked for as a claim
MAX_LINKS = 2  # history items an explanation's facts name
MAX_SHARED = 2  # values a link names (and labels of the pick the facts show)


def short_title(catalog: Any, item: int) -> str:
    """The name an explanation uses: the title's first ``SHORT_WORDS`` words (cut before an
    opening parenthesis the cut would leave unclosed)."""
    return shorten(catalog.title(item), SHORT_WORDS)


def item_values(catalog: Any, item: int) -> dict[str, tuple[str, ...]]:
    """Item ``item``'s claimable values by field: its labels, and brand and year if present."""
    out: dict[str, tuple[str, ...]] = {}
    if catalog.labels[item]:
        out["labels"] = tuple(catalog.labels[item])
    for key in ("brand", "year"):
        value = str(catalog.attributes[item].get(key) or "").strip()
        if value:
            out[key] = (value,)
    return out


def _flat(values: dict[str, tuple[str, ...]]) -> list[str]:
    return [v for vs in values.values() for v in vs]


@dataclass
class Facts:
    pick: int
    values: dict[str, tuple[str, ...]]  # the pick's claimable values
    links: list[tuple[int, list[str]]] = field(default_factory=list)  # (history item, shared)
    bought: list[tuple[int, int]] = field(default_factory=list)  # (history item, other buyers)
    family: list[int] = field(default_factory=list)  # history items of the pick's SID family


class CoPurchases:
    """How many users' training sequences hold both of two items: the collaborative fact
    behind "customers who bought X also bought it", from the training data only."""

    def __init__(self, sequences: list[np.ndarray], n_items: int) -> None:
        import scipy.sparse as sp

        rows = np.concatenate([np.full(len(s), u) for u, s in enumerate(sequences)]
                              or [np.zeros(0, np.int64)])
        cols = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]
                              or [np.zeros(0, np.int64)])
        bought = sp.csr_matrix((np.ones(len(rows)), (rows, cols)),
                               shape=(len(sequences), n_items))
        bought.data[:] = 1.0  # a user who bought an item twice counts once
        self.counts = (bought.T @ bought).tocsr()

    def count(self, a: int, b: int) -> int:
        return int(self.counts[a, b])


def _shared(mine: dict[str, tuple[str, ...]], theirs: dict[str, tuple[str, ...]]) -> list[str]:
    """What a history item shares with the pick, at most ``MAX_SHARED`` values: the most
    specific shared labels (a category path runs general -> specific), then the brand; a
    shared year alone is no reason."""
    labels = [v for v in reversed(mine.get("labels", ())) if v in theirs.get("labels", ())]
    brand = [v for v in mine.get("brand", ()) if v in theirs.get("brand", ())]
    return labels[:MAX_SHARED - len(brand)] + brand if labels or brand else []


def facts(catalog: Any, history: np.ndarray, pick: int, max_links: int = MAX_LINKS,
          co: CoPurchases | None = None, own: bool = False,
          families: np.ndarray | None = None) -> Facts:
    """The pick's values and up to ``max_links`` history items connected to it, most recent
    first: those sharing a label or the brand with it, then (with ``co``) those that other
    users bought together with it in their training sequences, then (with ``families``, each
    item's first semantic-ID code) those whose semantic ID starts with the pick's code. ``own``:
    the history's own user also bought the pick (a training example), so one buyer less is
    "other"."""
    values = item_values(catalog, pick)
    seen: list[int] = []
    for h in reversed([int(i) for i in np.asarray(history)]):
        if h != pick and h not in seen:
            seen.append(h)
    links: list[tuple[int, list[str]]] = []
    for h in seen:
        if len(links) < max_links and (shared := _shared(values, item_values(catalog, h))):
            links.append((h, shared))
    bought: list[tuple[int, int]] = []
    if co is not None and len(links) < max_links:
        linked = {h for h, _ in links}
        others = [(h, co.count(h, pick) - int(own)) for h in seen if h not in linked]
        others = sorted((o for o in others if o[1] >= 1), key=lambda o: -o[1])  # stable
        bought = others[:max_links - len(links)]
    family: list[int] = []
    if families is not None and len(links) + len(bought) < max_links:
        taken = {h for h, _ in links} | {h for h, _ in bought}
        family = [h for h in seen if h not in taken
                  and families[h] == families[pick]][:max_links - len(links) - len(bought)]
    return Facts(pick, values, links, bought, family)


FIELD_NAMES = {"labels": "category", "brand": "brand", "year": "year"}


def shown_values(values: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """The pick's values as facts and reasons state them: its most specific
    ``MAX_SHARED`` labels, brand and year."""
    return {k: (v[-MAX_SHARED:] if k == "labels" else v) for k, v in values.items()}


def facts_text(catalog: Any, f: Facts) -> str:
    """The facts as the prompt states them."""
    values = "; ".join(f"{FIELD_NAMES.get(k, k)}: {', '.join(v)}"
                       for k, v in shown_values(f.values).items())
    links = [f"{short_title(catalog, h)} (shares {', '.join(s)})" for h, s in f.links]
    links += [f"{short_title(catalog, h)} (bought with it by {n} other "
              f"customer{'s' if n > 1 else ''})" for h, n in f.bought]
    links += [f"{short_title(catalog, h)} (same semantic-ID family)" for h in f.family]
    return (f"Pick: {short_title(catalog, f.pick)} ({values or 'no attributes'}). "
            f"Related history: {'; '.join(links) or 'none'}.")


def reason(catalog: Any, f: Facts) -> str:
    """The training target: one sentence that restates the facts. The history comes first,
    the pick last: a small model that drifts does so late in the sentence (measured on the
    model trained with the pick first: 19 of 200 Amazon explanations looped on a label, 8 of
    them before naming the history item their facts gave)."""
    pick = short_title(catalog, f.pick)
    parts = [f"you liked {short_title(catalog, h)} ({', '.join(s)})" for h, s in f.links]
    parts += [f"customers who bought {short_title(catalog, h)} also bought it"
              for h, _ in f.bought]
    parts += [f"you liked {short_title(catalog, h)}, described much like it" for h in f.family]
    if parts:
        return f"Because {' and '.join(parts)}, I picked {pick}."
    values = ", ".join(_flat(shown_values(f.values))) or "new to you"
    return f"I picked {pick} ({values}); nothing in your history is connected to it."


def prompt_text(catalog: Any, f: Facts) -> str:
    return f"{facts_text(catalog, f)}\nWhy this pick? One sentence."


# --------------------------------------------------------------------------- measurement


class Checker:
    """Faithfulness checks of explanations against one catalogue (see the module docstring)."""

    def __init__(self, catalog: Any, co: CoPurchases | None = None,
                 families: np.ndarray | None = None) -> None:
        self.catalog, self.co, self.families = catalog, co, families
        self.titles = _TitleIndex(catalog, short_words=SHORT_WORDS)
        vocab = {_normal(v) for i in range(len(catalog)) for v in _flat(item_values(catalog, i))}
        vocab = sorted((v for v in vocab if len(v) >= MIN_CLAIM), key=len, reverse=True)
        self.claims = re.compile(r"(?<!\w)(" + "|".join(map(re.escape, vocab)) + r")(?!\w)"
                                 ) if vocab else None

    def check(self, text: str, history: np.ndarray, picks: list[int]) -> dict[str, Any]:
        low = _normal(text)
        spans = self.titles.spans(low)
        named: list[int] = []
        for a, b in spans:
            named += [i for i in self.titles.names[low[a:b]] if i not in named]
        hist = {int(i) for i in np.asarray(history)}
        allowed = hist | {int(p) for p in picks}
        # an ambiguous name (several items) is fine if any of its items is allowed
        named_groups = [self.titles.names[low[a:b]] for a, b in spans]
        hallucinated = any(not (set(g) & allowed) for g in named_groups)
        named_history = [i for i in named if i in hist]
        masked = list(low)
        for a, b in spans:
            masked[a:b] = " " * (b - a)
        claims = sorted(set(self.claims.findall("".join(masked)))) if self.claims else []
        support = set()
        for i in [*picks, *named_history]:
            support |= {_normal(v) for v in _flat(item_values(self.catalog, int(i)))}
        return {"hallucinated_title": hallucinated, "claims": len(claims),
                "supported_claims": sum(c in support for c in claims),
                "history_reference": bool(named_history), "words": len(text.split()),
                "named_history": len(named_history),
                "connected_history": sum(self.connected(h, picks) for h in named_history)}

    def connected(self, item: int, picks: list[int]) -> bool:
        """Whether a history item is connected to a pick: it shares a label or the brand with
        it, or (with co-purchases) another user bought both, or (with families) their semantic
        IDs start with the same code."""
        return any(_shared(item_values(self.catalog, int(p)), item_values(self.catalog, item))
                   or (self.co is not None and self.co.count(item, int(p)) >= 1)
                   or (self.families is not None
                       and self.families[item] == self.families[int(p)])
                   for p in picks)


def faithfulness(checks: list[dict[str, Any]]) -> dict[str, Any]:
    """The rates over a list of :meth:`Checker.check` results."""
    n = len(checks)
    if not n:
        return {"n": 0}
    claims = sum(c["claims"] for c in checks)
    return {
        "n": n,
        "hallucinated_title_rate": round(sum(c["hallucinated_title"] for c in checks) / n, 4),
        "attribute_support": (round(sum(c["supported_claims"] for c in checks) / claims, 4)
                              if claims else None),
        "claims_per_explanation": round(claims / n, 3),
        "history_reference_rate": round(sum(c["history_reference"] for c in checks) / n, 4),
        "connected_history": (round(sum(c.get("connected_history", 0) for c in checks) / named, 4)
                              if (named := sum(c.get("named_history", 0) for c in checks))
                              else None),
        "mean_words": round(sum(c["words"] for c in checks) / n, 2),
    }


# --------------------------------------------------------------------------- the model's side

EXPLAIN_SEED = 20250  # the measured users are fixed: the same for every run of a dataset


def explanation_examples(prompter: Any, sequences: list[np.ndarray], n: int,
                         rng: np.random.Generator, co: CoPurchases | None = None,
                         families: np.ndarray | None = None) -> list[Any]:
    """``n`` stage-2 examples: a (history, next item) pair of the training sequences, the
    prompt from their facts, the :func:`reason` sentence as the answer."""
    from benchmark.models.sid_lm import Example

    catalog = prompter.catalog
    out = []
    for u, t in prompter.sample_positions(sequences, n, rng):
        history, pick = sequences[u][:t], int(sequences[u][t])
        f = facts(catalog, history, pick, co=co, own=True, families=families)
        out.append(Example(prompter.chat(prompt_text(catalog, f)),
                           prompter.answer(reason(catalog, f))))
    return out


# What the reason() sentences put before a history item's title and before the pick's.
HISTORY_CUES = ("you liked", "who bought")
PICK_CUES = ("I picked",)


class TitleCopy:
    """Copy-constrained titles for :func:`greedy`'s ``allowed`` hook (``explain_copy``).

    When a row's text so far ends with a cue of :func:`reason`'s sentences ("you liked", "who
    bought", "I picked"), the next tokens are restricted to spell one of the titles its facts
    give for that slot (the related history items after a history cue, the pick after "I
    picked"), token by token over a trie of their tokenizations; the model still chooses
    whether to write a cue, which of the titles, and everything else. A 135M model that has
    learnt the sentence's shape miscopies long Amazon titles (it writes the pick's title, or
    splices two, after "you liked"), which names no history item; this makes a title it starts
    a real one. Cue matching is on the decoded text, case-sensitive, and a slot with no title
    in the facts stays free.
    """

    END = -1

    def __init__(self, tok: Any, catalog: Any, fs: list[Facts]) -> None:
        self.tok = tok
        self.slots: list[dict[str, dict]] = []
        for f in fs:
            history = [h for h, _ in f.links] + [h for h, _ in f.bought] + list(f.family)
            self.slots.append({"history": self._trie([short_title(catalog, h) for h in history]),
                               "pick": self._trie([short_title(catalog, f.pick)])})
        self.node: list[dict | None] = [None] * len(fs)

    def _trie(self, titles: list[str]) -> dict[str, dict]:
        """Two tries of the titles' token ids: after a space-final text, and after a word."""
        out: dict[str, dict] = {"spaced": {}, "bare": {}}
        for title in titles:
            for kind, text in (("spaced", title), ("bare", " " + title)):
                node = out[kind]
                for t in self.tok.encode(text, add_special_tokens=False):
                    node = node.setdefault(int(t), {})
                node[self.END] = {}
        return out

    def __call__(self, row: int, tokens: list[int]) -> list[int] | None:
        node = self.node[row]
        if node is not None:  # inside a title: follow the token the last step took
            node = node.get(tokens[-1]) if tokens else None
            if node is not None and self.END not in node and node:
                self.node[row] = node
                return list(node)
            self.node[row] = None  # a title is complete (a longer one is left to the model)
            return None
        text = self.tok.decode(tokens, skip_special_tokens=True)
        stripped = text.rstrip(" ")
        for cues, slot in ((HISTORY_CUES, "history"), (PICK_CUES, "pick")):
            if stripped.endswith(cues) and len(stripped) >= len(text) - 1:
                root = self.slots[row][slot]["spaced" if text.endswith(" ") else "bare"]
                if root:
                    self.node[row] = root
                    return list(root)
        return None


def generate(adapter: Any, histories: list[np.ndarray], picks: list[int],
             max_new: int) -> list[tuple[Facts, str]]:
    """The model's explanation of each pick for its history (greedy, batched; with
    ``explain_copy``, titles copied by :class:`TitleCopy`)."""
    from benchmark.models.llm import compute_precision
    from benchmark.models.sid_lm import greedy, inference_weights

    catalog, prompter = adapter.catalog, adapter.prompter
    out: list[tuple[Facts, str]] = []
    size = adapter.config.eval_batch
    with inference_weights(adapter.model, adapter.config.precision):
        for lo in range(0, len(picks), size):
            fs = [facts(catalog, np.asarray(h), int(p), co=adapter.co_purchases,
                        families=adapter.families)
                  for h, p in zip(histories[lo:lo + size], picks[lo:lo + size], strict=True)]
            prompts = [prompter.chat(prompt_text(catalog, f)) for f in fs]
            copy = TitleCopy(adapter.tok, catalog, fs) if adapter.config.explain_copy else None
            with compute_precision(adapter.ctx.device, adapter.config.precision):
                texts = greedy(adapter.model, prompts, max_new, adapter.pad, prompter.eos,
                               allowed=copy)
            out += [(f, adapter.tok.decode(t, skip_special_tokens=True).strip())
                    for f, t in zip(fs, texts, strict=True)]
    return out


def measure(adapter: Any, sequences: list[np.ndarray], n_users: int, max_new: int,
            n_examples: int = 5) -> dict[str, Any]:
    """Faithfulness of the model's explanations and of the count-based baseline, on a fixed
    sample of ``n_users`` users (their training sequences as histories, the model's top pick
    as the pick), with ``n_examples`` verbatim examples and the facts each was given."""
    from adapters.sid_llm_diagnostics import explain as count_based

    users = [u for u, s in enumerate(sequences) if len(s)]
    if n_users <= 0 or not users:
        return {"users": 0}
    rng = np.random.default_rng(EXPLAIN_SEED)
    chosen = sorted(rng.choice(users, min(n_users, len(users)), replace=False).tolist())
    histories = [np.asarray(sequences[u], dtype=np.int64) for u in chosen]
    picks = [int(i) for i in adapter.recommend_ids(histories, None, 1)[:, 0]]
    keep = [j for j, p in enumerate(picks) if p >= 0]
    histories, picks = [histories[j] for j in keep], [picks[j] for j in keep]
    checker = Checker(adapter.catalog, adapter.co_purchases, adapter.families)
    generated = generate(adapter, histories, picks, max_new)
    model_checks = [checker.check(text, h, [p])
                    for (_, text), h, p in zip(generated, histories, picks, strict=True)]
    baseline = [count_based(adapter.catalog, h, [p], None) for h, p in zip(histories, picks,
                                                                             strict=True)]
    base_checks = [checker.check(text, h, [p])
                   for text, h, p in zip(baseline, histories, picks, strict=True)]
    # the ceiling of the history-reference rate for an explanation that only restates its facts
    ceiling = round(float(np.mean([bool(f.links or f.bought or f.family)
                                   for f, _ in generated])), 4) if generated else None
    examples = [{"user": int(chosen[keep[j]]), "facts": facts_text(adapter.catalog, f),
                 "explanation": text, "baseline": baseline[j]}
                for j, (f, text) in enumerate(generated[:n_examples])]
    return {"users": len(picks),
            "model": faithfulness(model_checks) | {"facts_with_history": ceiling},
            "count_based": faithfulness(base_checks) | {"facts_with_history": ceiling},
            "examples": examples}
