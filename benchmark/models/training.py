"""Training plumbing every trained method shares: checkpoints in the cache, early stopping.

- :func:`get_or_train` loads a torch checkpoint for a key or trains it and stores it
  atomically. The training record made meanwhile (examples seen, validation curve points,
  stop reason, seconds) is stored with it and replayed into the run's context on a cache hit,
  so a resumed run reports the curve and fit time of the original training. One process
  trains a key while others sharing the cache wait for it (a lock per key); a checkpoint that
  does not load is retrained with a warning, never served.
- :func:`train_with_patience` is the loop around ``validate()``: train a round (an epoch, a
  chunk of steps), validate every ``eval_every`` rounds, keep a snapshot of the best state,
  stop after ``patience`` validations without a new best.
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.adapter import RunContext
from benchmark.cache import atomic_write_bytes, caller_fingerprint, warn_damaged

# Bump when the stored layout changes ({"state", "record"}); it is part of every key.
CHECKPOINT_FORMAT = 2


def get_or_train(ctx: RunContext, kind: str, key: Any, train: Callable[[], Any], *,
                 map_location: str = "cpu", weights_only: bool = True) -> tuple[Any, bool]:
    """``(train()'s state, False)`` for ``key``, or ``(state, True)`` when ``<cache>/<kind>/``
    holds it from an earlier training.

    ``key`` must cover everything that changes the state (inputs' fingerprints, config, seed);
    the code fingerprint of the module that calls this one is added to it. ``weights_only=False``
    is for states that pickle objects.
    """
    path = ctx.cache.torch_path(kind, [CHECKPOINT_FORMAT, key], code=caller_fingerprint())
    saved = _load(path, map_location, weights_only, warn=True)
    if saved is None:
        with ctx.cache.lock(f"{kind}-{path.stem}"):
            # Trained by another process while this one waited?
            saved = _load(path, map_location, weights_only, warn=False)
            if saved is None:
                return _train_and_store(ctx, path, train), False
    ctx.replay(saved["record"])
    return saved["state"], True


def _train_and_store(ctx: RunContext, path: Path, train: Callable[[], Any]) -> Any:
    import torch

    mark = ctx.mark()
    state = train()
    buffer = io.BytesIO()
    torch.save({"state": state, "record": ctx.record_since(mark)}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return state


def _load(path: Path, map_location: str, weights_only: bool, warn: bool) -> dict | None:
    """The stored {"state", "record"} at ``path``, or None if it is missing or does not load
    (a truncated or garbled file: warned about when ``warn``)."""
    import torch

    try:
        saved = torch.load(path, map_location=map_location, weights_only=weights_only)
        if not (isinstance(saved, dict) and {"state", "record"} <= saved.keys()):
            raise ValueError("not a {state, record} checkpoint")
        return saved
    except FileNotFoundError:
        return None
    except (RuntimeError, EOFError, ValueError, KeyError, TypeError, AttributeError,
            ImportError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        if warn:
            warn_damaged(path, exc)
        return None


@dataclass
class Stopped:
    """How a :func:`train_with_patience` loop ended."""

    reason: str  # "early_stop" or the cap reason ("epoch_cap", "step_cap")
    rounds: int  # rounds trained
    best: float  # best validation value (-inf if never validated)
    best_state: Any  # snapshot() at the best validation (None if never validated)


def train_with_patience(train_round: Callable[[int], None], validate: Callable[[], float], *,
                        max_rounds: int, patience: int, snapshot: Callable[[], Any],
                        eval_every: int = 1, best: float = -math.inf,
                        best_state: Any = None, cap_reason: str = "epoch_cap") -> Stopped:
    """Call ``train_round(r)`` for r = 1 .. max_rounds, validating every ``eval_every`` rounds
    and after the last; stop after ``patience`` validations without a strictly better value.

    ``best`` / ``best_state`` carry a previous stage's best (a later stage must beat it). The
    caller restores ``best_state``; the loop never touches the model. ``cap_reason`` is the
    stop reason when the rounds run out ("step_cap" where a round is a chunk of steps).
    """
    since_best, reason, rounds = 0, cap_reason, 0
    for rounds in range(1, max_rounds + 1):
        train_round(rounds)
        if rounds % eval_every and rounds != max_rounds:
            continue
        value = float(validate())
        if value > best:
            best, best_state, since_best = value, snapshot(), 0
        else:
            since_best += 1
            if since_best >= patience:
                reason = "early_stop"
                break
    return Stopped(reason, rounds, best, best_state)
