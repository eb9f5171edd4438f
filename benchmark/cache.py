"""Content-addressed cache with atomic writes.

A key is a hash of everything that changes an artefact (inputs' fingerprints, config, a version
constant of the module that builds it, seed). Writes go to a temporary file in the same
directory and are renamed into place, so an interrupted run never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def stable_hash(obj: Any, length: int = 16) -> str:
    """A hash of JSON-able data and numpy arrays that is stable across runs and machines."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()[:length]


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        h.update(f"nd{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
    elif isinstance(obj, dict):
        h.update(b"{")
        for key in sorted(obj, key=str):
            _feed(h, str(key))
            _feed(h, obj[key])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for item in obj:
            _feed(h, item)
        h.update(b"]")
    else:
        h.update(json.dumps(obj, sort_keys=True, default=str).encode())
        h.update(b";")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class Cache:
    """Artefacts under ``root/<kind>/<key>.<ext>``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, kind: str, key: str, ext: str = "pkl") -> Path:
        return self.root / kind / f"{key}.{ext}"

    def get_or_build(self, kind: str, key_parts: Any, build: Callable[[], Any]) -> Any:
        """Load the pickled artefact for ``key_parts`` or build, store and return it."""
        path = self.path(kind, stable_hash(key_parts))
        if path.exists():
            with open(path, "rb") as fh:
                return pickle.load(fh)
        value = build()
        atomic_write_bytes(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        return value

    def torch_path(self, kind: str, key_parts: Any) -> Path:
        """Where a torch checkpoint for ``key_parts`` lives (the caller saves via atomic write)."""
        return self.path(kind, stable_hash(key_parts), "pt")
