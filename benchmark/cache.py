"""Content-addressed cache with atomic writes and per-key locks.

A key is a hash of everything that changes an artefact (inputs' fingerprints, config, seed) and
of the code that builds it: :meth:`Cache.get_or_build` and :meth:`Cache.torch_path` add the
canonical code fingerprint of the module that asks (:mod:`benchmark.code_fingerprint`), so an
edit to the builder or to anything of the project it imports rebuilds the artefact, and a
documentation edit does not. Writes go to a temporary file with a unique name
in the same directory, are fsynced and renamed into place, so an interrupted run, a full disk or
a second invocation writing the same file never leaves a half-written entry. An entry that does
not load anyway (damaged by hand, by another tool) is rebuilt with a warning, never served.

Concurrent invocations on one cache coordinate through ``fcntl.flock`` on files under
``<cache>/locks/`` (:meth:`Cache.lock`): an artefact or a finished run is built by one of them
while the others wait and then load it. flock is advisory and works on Linux and macOS on local
disks (on NFS only where the server supports it); where ``fcntl`` does not exist (Windows), the
lock is a no-op and concurrent invocations should use separate caches. Lock files stay in place:
deleting one while another process waits on it would let a third take a fresh lock beside it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.code_fingerprint import caller_fingerprint
from benchmark.errors import BenchmarkError

try:
    import fcntl
except ImportError:  # no flock (Windows): no cross-process locking, see the module docstring
    fcntl = None


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


def atomic_write_files(files: dict[Path, bytes]) -> None:
    """Write every file or none: each goes to a uniquely named temporary file beside it (fsynced),
    and only when all are on disk are they renamed into place, in the order given.

    A failure before the renames (a full disk, a missing permission) leaves every target as it
    was and is a BenchmarkError naming the file; a reader never sees a partial file.
    """
    staged: list[tuple[str, Path]] = []
    current = Path(next(iter(files), "."))
    try:
        for path, data in files.items():
            current = Path(path)
            staged.append((_stage(current, data), current))
        for tmp, path in staged:
            current = path
            os.replace(tmp, path)
        for directory in {path.parent for _, path in staged}:
            _fsync_dir(directory)
    except OSError as exc:
        raise BenchmarkError(f"could not write {current}: {exc.strerror or exc}; the file there "
                             "(if any) is unchanged") from exc
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once, at import: os.umask can only be read by setting it


def _stage(path: Path, data: bytes) -> str:
    """``data`` in a new temporary file beside ``path``, flushed to disk; returns its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes it 0600; give it an ordinary file's mode
            os.fchmod(fd, 0o666 & ~_UMASK)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            if written <= 0:  # a write that makes no progress: treat as a full disk
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _fsync_dir(directory: Path) -> None:
    """Make the renames durable too (not possible on every OS or file system: then skip)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``data`` into ``path``, all or nothing (see :func:`atomic_write_files`)."""
    atomic_write_files({Path(path): data})


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def warn_damaged(path: Path, exc: BaseException) -> None:
    """One line on stderr: a cache entry did not load and is rebuilt."""
    print(f"warning: cache entry {path} is damaged ({type(exc).__name__}: {exc}); rebuilding it",
          file=sys.stderr)


# Lock paths this thread holds: re-entering one must not flock a second descriptor of the same
# file, which on Linux blocks on the first (a deadlock within one process).
_held = threading.local()

# What a damaged or stale pickle raises on load (truncated, garbled, or naming a class that no
# longer exists).
PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError,
                 ValueError, TypeError)


class Cache:
    """Artefacts under ``root/<kind>/<key>.<ext>``; locks under ``root/locks/``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, kind: str, key: str, ext: str = "pkl") -> Path:
        return self.root / kind / f"{key}.{ext}"

    @contextmanager
    def lock(self, name: str, waiting: str | None = None) -> Iterator[None]:
        """Hold the exclusive lock ``name`` across processes sharing this cache (blocks until
        free; prints ``waiting`` on stderr if it has to wait). Re-entrant within a thread."""
        path = self.root / "locks" / f"{name.replace(os.sep, '_')}.lock"
        key = os.path.abspath(path)
        held: set[str] = _held.__dict__.setdefault("paths", set())
        if key in held or fcntl is None:
            yield
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting:
                    print(waiting, file=sys.stderr)
                fcntl.flock(fd, fcntl.LOCK_EX)
            held.add(key)
            try:
                yield
            finally:
                held.discard(key)
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def get_or_build(self, kind: str, key_parts: Any, build: Callable[[], Any],
                     code: str | None = None) -> Any:
        """Load the pickled artefact for ``key_parts`` or build, store and return it.

        The key also holds ``code``, by default the fingerprint of the calling module. One
        process builds a missing key while others wait for it; an entry that does not unpickle
        is rebuilt (with a warning), not served.
        """
        key = stable_hash([code or caller_fingerprint(), key_parts])
        path = self.path(kind, key)
        found, value = self._load(path)
        if found:
            return value
        with self.lock(f"{kind}-{key}"):
            found, value = self._load(path, warn=False)  # built by another process meanwhile?
            if found:
                return value
            value = build()
            atomic_write_bytes(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        return value

    @staticmethod
    def _load(path: Path, warn: bool = True) -> tuple[bool, Any]:
        """(True, the unpickled entry) or (False, None) if it is missing or damaged."""
        try:
            with open(path, "rb") as fh:
                return True, pickle.load(fh)
        except FileNotFoundError:
            return False, None
        except PICKLE_ERRORS as exc:
            if warn:
                warn_damaged(path, exc)
            return False, None

    def torch_path(self, kind: str, key_parts: Any, code: str | None = None) -> Path:
        """Where a torch checkpoint for ``key_parts`` and the code ``code`` (by default the
        calling module's fingerprint) lives; the caller saves it via atomic write."""
        return self.path(kind, stable_hash([code or caller_fingerprint(), key_parts]), "pt")
