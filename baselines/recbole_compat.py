"""Make RecBole 1.2.1 importable with NumPy 2, torch >= 2.6 and without tensorboard.

RecBole 1.2.1 (the last release) predates NumPy 2: its ``Config.compatibility_settings`` assigns
``np.float = np.float_`` and friends, which raises once ``np.float_`` is gone; torch >= 2.6 loads
checkpoints with ``weights_only=True`` by default, which refuses RecBole's pickled config; and
``recbole.utils`` imports ``torch.utils.tensorboard`` at module level, which needs the
``tensorboard`` package that we do not install; and ``recbole/model/sequential_recommender/
sine.py`` calls ``torch.autograd.set_detect_anomaly(True)`` when it is imported, which every
sequential model's import does (their package imports it), and unpickling a trained peer in the
benchmark's own process imports it too. Anomaly mode changes no number, but it slowed every
later backward pass in that process: a tiny TIGER fit after the RecBole tests took 25 s
against 4 s alone, so a `--all` run would have trained every method after the first RecBole
peer (and the peer itself) in it, and recorded those fit times. :func:`install` imports the
sequential models once with the caller's anomaly setting kept. Everything that papers over
this lives here, so it is one place to delete when RecBole catches up.

Call :func:`install` before importing any ``recbole.config / data / utils / model`` module.
Never import ``recbole.quick_start``: it imports ``ray``, which is not installed.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

# Aliases removed in NumPy 2.0 that RecBole 1.2.1 touches (directly or through its own
# compatibility shim, which reads them to set np.float, np.complex, np.unicode ...).
_NUMPY_ALIASES = {"float_": np.float64, "complex_": np.complex128, "unicode_": np.str_,
                  "bool8": np.bool_, "int_": np.int_, "object_": np.object_, "str_": np.str_}


class _NoTensorBoard:
    """Stand-in for ``SummaryWriter``: RecBole's trainer logs scalars to it; we keep none."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def install() -> None:
    """Restore the NumPy aliases, stub tensorboard if it is missing, and import RecBole's
    sequential models with torch's anomaly mode left as the caller had it (idempotent)."""
    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        stub = types.ModuleType("torch.utils.tensorboard")
        stub.SummaryWriter = _NoTensorBoard
        sys.modules["torch.utils.tensorboard"] = stub
    import torch

    anomaly = torch.is_anomaly_enabled()
    import recbole.model.sequential_recommender  # noqa: F401  (runs sine.py's switch once)

    torch.autograd.set_detect_anomaly(anomaly)


def load_checkpoint(path: Path | str, map_location: str = "cpu") -> Any:
    """``torch.load`` of a file RecBole (or we) pickled: a trusted file from our own cache."""
    import torch

    return torch.load(path, map_location=map_location, weights_only=False)
