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

from benchmark.adapter import UserBatch
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
    from benchmark import runner
    from benchmark.config import parse_overrides
    from benchmark.settings import harness_settings

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
    cls, _ = runner.resolve_config(req.method, req.profile, req.overrides, dataset.name)
    check_request(args, dataset, cls)  # before the model is loaded or trained
    adapter, _, _ = runner.fit_adapter(req, settings, dataset, split)
    return adapter, dataset, split


def check_request(args: argparse.Namespace, dataset, cls: type) -> None:
    """Refuse a seed, list length or user the dataset cannot serve, and a prompt or a chat the
    method cannot take, naming what would do."""
    talks = all(callable(getattr(cls, name, None))
                for name in ("recommend_for", "explain", "respond"))  # Conversational's methods
    if args.command == "chat" and not talks:
        raise BenchmarkError(f"method {args.method!r} cannot chat")
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
              out: Callable[[str], None] = print) -> list[int]:
    user = _user_index(dataset, user_id)
    history = full_history(dataset, split, user)
    catalog = dataset.catalog
    out(f"User {user_id}: {len(history)} items; the most recent:")
    for i in history[-5:][::-1]:
        out(f"  - {catalog.title(int(i))}")
    if isinstance(adapter, Conversational):
        items = adapter.recommend_for(history, prompt, k)
    elif prompt:
        raise BenchmarkError(f"method {adapter.registered_name!r} cannot be steered by a prompt")
    else:
        items = _top_k(adapter, user, history, k)
    out(f"Recommended{f' for {prompt!r}' if prompt else ''}:")
    sid = getattr(adapter, "sid_string", None)
    for rank, i in enumerate(items, 1):
        out(f"  {rank:2d}. {catalog.title(i)}" + (f"  {sid(i)}" if sid else ""))
    if isinstance(adapter, Conversational):
        out("Why: " + adapter.explain(history, items, prompt))
    return items


def _user_index(dataset, user_id: str) -> int:
    if user_id not in dataset.user_ids:
        raise BenchmarkError(f"unknown user {user_id!r} in {dataset.name} "
                             f"(ids look like {dataset.user_ids[0]!r})")
    return dataset.user_ids.index(user_id)


def _top_k(adapter, user: int, history: np.ndarray, k: int) -> list[int]:
    import torch

    batch = UserBatch(np.array([user]), [history])
    if getattr(adapter, "output", "scores") == "ranking":
        return [int(i) for i in adapter.rank(batch, k)[0].tolist() if i >= 0]
    scores = torch.as_tensor(adapter.score(batch))[0].clone().float()
    if len(history):
        scores[torch.as_tensor(history)] = -torch.inf
    return scores.topk(k).indices.tolist()


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
        answer = adapter.respond(messages, history)
        messages.append({"role": "assistant", "content": answer})
        out(answer)


def main(args: argparse.Namespace) -> int:
    adapter, dataset, split = _fitted(args)
    if args.command == "recommend":
        recommend(adapter, dataset, split, str(args.user), args.prompt, args.k)
    else:
        chat(adapter, dataset, split, getattr(args, "user", None), input,
             lambda s: print(s, flush=True))
        if sys.stdin.isatty():
            print()
    return 0
