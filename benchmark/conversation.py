"""`recommend` and `chat`: using a fitted method by hand.

`recommend` works for every method: it fits (a cache hit after a run) and prints the user's
recent items and the top-k items for their full history (training + validation + test, minus
cold interactions under that protocol: at this point no target is being held out). A method
that can be steered in words implements :class:`Conversational`; only those accept `--prompt`
and `chat`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from benchmark.adapter import UserBatch, method_phase
from benchmark.errors import BenchmarkError


@runtime_checkable
class Conversational(Protocol):
    """The optional protocol of a method that talks."""

    def recommend_for(self, history: np.ndarray, prompt: str | None, k: int) -> list[int]:
        """Top-k item indices for a history, optionally steered by a request in words."""
        ...

    def explain(self, history: np.ndarray, items: list[int], prompt: str | None) -> str:
        """A short explanation of why these items fit the history (and the request)."""
        ...

    def respond(self, messages: list[dict[str, str]], history: np.ndarray) -> str:
        """The next assistant turn of a conversation (chat-template messages)."""
        ...


def _fitted(args: argparse.Namespace):
    from benchmark import registry, runner
    from benchmark.code_status import flat_settings
    from benchmark.config import parse_overrides, to_dict
    from benchmark.settings import harness_settings

    args.method = registry.resolve_name(args.method)
    req = runner.RunRequest(
        method=args.method, dataset=args.dataset or "ml-100k", protocol=args.protocol, seed=args.seed,
        profile=args.profile, overrides=parse_overrides(args.overrides), meta=args.meta,
        cache_dir=args.cache_dir, show_progress=not args.no_progress,
    )
    settings = harness_settings(args.profile)
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    dataset, split = runner.prepare(req, settings)
    cls, config = runner.resolve_config(req.method, req.profile, req.overrides, dataset.name)
    check_request(args, dataset, cls)  # before the model is loaded or trained
    print(fit_notice(args, dataset.name, flat_settings(to_dict(config))), file=sys.stderr,
          flush=True)
    adapter, _, _ = runner.fit_adapter(req, settings, dataset, split)
    return adapter, dataset, split


def fit_notice(args: argparse.Namespace, dataset: str,
               settings: dict[str, str] | None = None) -> str:
    """What `recommend` / `chat` will fit before answering, and how long that took when it was
    recorded (by a run with the same ``settings`` where there is one): a first call trains the
    method (minutes to hours for an LLM method on a CPU); a call after a benchmark run with the
    same cache finds its checkpoints and takes seconds."""
    from benchmark import plan
    from benchmark.settings import default_cache_dir, reference_results_dir

    cache = args.cache_dir or default_cache_dir()
    records = plan.recorded(reference_results_dir(args.profile, cache))
    seconds = plan.expected(records, dataset, args.protocol, args.method, args.seed, settings)
    cost = ("no recorded run of it to say how long that takes" if seconds is None else
            f"a recorded run took about {seconds / 60:.0f} min (training and test ranking)")
    return (f"{args.command}: fitting {args.method} on {dataset} ({args.protocol}, seed "
            f"{args.seed}, profile {args.profile}) first. Checkpoints an earlier run left in "
            f"{cache} are reused (seconds); otherwise it trains now: {cost}.")


def check_request(args: argparse.Namespace, dataset, cls: type) -> None:
    """Refuse a seed, list length or user the dataset cannot serve, and a prompt or a chat the
    method cannot take, naming what would do."""
    talks = all(callable(getattr(cls, name, None))
                for name in ("recommend_for", "explain", "respond"))  # Conversational's methods
    if args.command == "chat" and not talks:
        raise BenchmarkError(f"method {args.method!r} cannot chat")
    if getattr(args, "explain", False) and not talks:
        raise BenchmarkError(f"method {args.method!r} cannot explain its picks")
    if getattr(args, "prompt", None) and not talks:
        raise BenchmarkError(f"method {args.method!r} cannot be steered by a prompt")
    if args.seed < 0:
        raise BenchmarkError(f"--seed expects an integer >= 0, got {args.seed}")
    k = getattr(args, "k", None)
    if k is not None and not 1 <= k <= dataset.n_items:
        raise BenchmarkError(f"-k must be between 1 and the number of items in {dataset.name} "
                             f"({dataset.n_items}), got {k}")
    if args.user is not None:
        _user_index(dataset, str(args.user))


def full_history(dataset, split, user: int) -> np.ndarray:
    """Every known interaction of ``user`` (test target included), minus cold items (C and C_v)."""
    seq = dataset.sequences()[user]
    held_out = split.held_out_items()
    return seq[~np.isin(seq, held_out)] if len(held_out) else seq


def recommend(adapter, dataset, split, user_id: str, prompt: str | None, k: int,
              out: Callable[[str], None] = print, explain: bool = False) -> list[int]:
    """Print the user's recent items and up to ``k`` recommendations, and return those; with
    ``explain``, then the method's reason for its first pick (a method that talks only).

    Nothing in the user's history is ever listed, nor a -1 pad or a repeat: a scoring method
    ranks only the items outside the history, and a list from ``rank`` or ``recommend_for``
    loses those entries. When fewer than ``k`` remain, one line says so. Scores are held to
    the evaluator's rule (:func:`benchmark.evaluation.checked_scores`): NaN is refused with
    the evaluator's error, +inf and -inf are ordinary (highest and lowest) scores.
    """
    user = _user_index(dataset, user_id)
    history = full_history(dataset, split, user)
    catalog = dataset.catalog
    method = getattr(adapter, "registered_name", type(adapter).__name__)
    out(f"User {user_id}: {len(history)} items; the most recent:")
    for i in history[-5:][::-1]:
        out(f"  - {catalog.title(int(i))}")
    if isinstance(adapter, Conversational):
        with method_phase(method, "recommend_for"):
            listed = adapter.recommend_for(history, prompt, k)
        items, short = _listable(listed, history, dataset.n_items, k, "recommend_for")
    elif prompt:
        raise BenchmarkError(f"method {method!r} cannot be steered by a prompt")
    else:
        items, short = _top_k(adapter, user, history, k, dataset.n_items, method)
    out(f"Recommended{f' for {prompt!r}' if prompt else ''}:")
    if len(items) < k:
        out(f"(only {len(items)} of the {k} items asked for: {short})")
    sid = getattr(adapter, "sid_string", None)
    for rank, i in enumerate(items, 1):
        out(f"  {rank:2d}. {catalog.title(i)}" + (f"  {sid(i)}" if sid else ""))
    if explain:
        if not isinstance(adapter, Conversational):
            raise BenchmarkError(f"method {method!r} cannot explain its picks")
        with method_phase(method, "explain"):
            out("Why: " + adapter.explain(history, items, prompt))
    return items


def _user_index(dataset, user_id: str) -> int:
    if user_id not in dataset.user_ids:
        raise BenchmarkError(f"unknown user {user_id!r} in {dataset.name} "
                             f"(ids look like {dataset.user_ids[0]!r})")
    return dataset.user_ids.index(user_id)


def _top_k(adapter, user: int, history: np.ndarray, k: int, n_items: int, method: str
           ) -> tuple[list[int], str]:
    """The best ``k`` items outside ``history`` by the adapter's ``score`` or ``rank``, checked
    as the evaluator checks them; and, for when fewer remain, the reason in words."""
    import torch

    from benchmark.evaluation import checked_lists, checked_scores

    batch = UserBatch(np.array([user]), [history])
    if getattr(adapter, "output", "scores") == "ranking":
        with method_phase(method, "rank"):
            lists = torch.as_tensor(adapter.rank(batch, k)).detach().cpu()
        if lists.dim() != 2 or lists.shape[0] != 1:
            raise BenchmarkError(f"rankings must be [batch, k], got {tuple(lists.shape)}")
        if lists.shape[1] > k:
            raise BenchmarkError(f"rank() returned {lists.shape[1]} items, asked for {k}")
        return _listable(checked_lists(lists, n_items)[0].tolist(), history, n_items, k, "rank")
    with method_phase(method, "score"):
        scores = torch.as_tensor(adapter.score(batch)).detach().cpu()
    if scores.shape != (1, n_items):
        raise BenchmarkError(f"score() must return [batch, {n_items}], got {tuple(scores.shape)}")
    scores = checked_scores(scores)[0]
    unseen = torch.ones(n_items, dtype=torch.bool)
    if len(history):
        unseen[torch.as_tensor(history, dtype=torch.long)] = False
    candidates = unseen.nonzero().squeeze(1)  # a masked item is never a candidate
    order = torch.sort(scores[candidates], descending=True, stable=True).indices[:k]
    n_unseen = len(candidates)
    return candidates[order].tolist(), (f"the other {n_items - n_unseen} items are in the "
                                         "user's history" if n_unseen else
                                         "every item is in the user's history")


def _listable(listed, history: np.ndarray, n_items: int, k: int, call: str
              ) -> tuple[list[int], str]:
    """A method's list without its history items, -1 pads and repeats (at most ``k``); and, for
    when fewer than ``k`` remain, what was dropped."""
    import torch

    from benchmark.evaluation import checked_lists

    raw = checked_lists(torch.as_tensor(np.asarray(listed, dtype=np.int64)).reshape(-1),
                        n_items).tolist()
    seen = set(np.asarray(history).tolist())
    items: list[int] = []
    for i in raw:
        if i >= 0 and i not in seen:
            seen.add(i)
            items.append(int(i))
    dropped = len(raw) - len(items)
    why = (f"{call}() returned {len(raw)}" + (f", of which {dropped} were history items, "
                                              "-1 pads or repeats" if dropped else ""))
    return items[:k], why


def chat(adapter, dataset, split, user_id: str | None, input_fn: Callable[[str], str] = input,
         out: Callable[[str], None] = print) -> None:
    """An interactive loop; `quit` or end of input leaves. The conversation is kept."""
    if not isinstance(adapter, Conversational):
        raise BenchmarkError(f"method {getattr(adapter, 'registered_name', '?')!r} cannot chat")
    user = _user_index(dataset, str(user_id)) if user_id is not None else None
    history = full_history(dataset, split, user) if user is not None else np.zeros(0, np.int64)
    messages: list[dict[str, str]] = []
    out("Ask for recommendations in words, by title or by semantic ID. `quit` to leave.")
    while True:
        try:
            text = input_fn("> ")
        except EOFError:
            break
        if text.strip().lower() in ("quit", "exit"):
            break
        if not text.strip():
            continue
        messages.append({"role": "user", "content": text})
        with method_phase(getattr(adapter, "registered_name", type(adapter).__name__), "respond"):
            answer = adapter.respond(messages, history)
        messages.append({"role": "assistant", "content": answer})
        out(answer)


def _read(prompt: str) -> str:
    """``input``, echoing what it read when stdin is not a terminal, so that a conversation
    piped in (``printf '...' | python -m benchmark chat``) prints as a transcript."""
    text = input(prompt)
    if not sys.stdin.isatty():
        print(text, flush=True)
    return text


def main(args: argparse.Namespace) -> int:
    adapter, dataset, split = _fitted(args)
    if args.command == "recommend":
        recommend(adapter, dataset, split, str(args.user), args.prompt, args.k,
                  explain=args.explain)
    else:
        chat(adapter, dataset, split, getattr(args, "user", None), _read,
             lambda s: print(s, flush=True))
        if sys.stdin.isatty():
            print()
    return 0
