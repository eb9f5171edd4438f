"""Fingerprints of the code a run executes, so a cache never serves one code's results as
another's.

A module's fingerprint is a hash of the normalised syntax trees of the module and of every
project module it imports, transitively: docstrings are stripped, comments never reach the tree,
line numbers and formatting are ignored. So a documentation edit or a reformat keeps every
cached run and checkpoint, while any change to what runs (an adapter, the SASRec backbone, the
evaluator) invalidates exactly what executes it. Project modules are those of the packages
``benchmark``, ``adapters`` and ``baselines`` in this repository, and, for a method loaded with
``--adapter-module path/to/file.py``, that file and the modules beside it that it imports.
Imports of anything else (torch, numpy) are not followed: package versions are recorded in
every result instead.

This module itself is not followed: it computes keys and changes no result.

A run's fingerprint (:func:`method_fingerprint`) covers the method's adapter module and the
harness that runs it (:data:`HARNESS_MODULE` and its imports: splits, evaluation, result
files). An artefact's (:func:`caller_fingerprint`) covers the module that builds it.

A behaviour-preserving refactor changes fingerprints without changing what they produce. It is
recorded as a code-equivalence entry (old fingerprint -> new) in :data:`EQUIVALENCE_FILE`,
written by ``tools/code_equivalence.py`` only when a smoke grid run with the old and with the
new code gives byte-identical per-user files. Keys use the :func:`canonical` fingerprint (the
oldest one an entry chain leads back to), so cached runs and committed results stay valid
through such a refactor; result files record the fingerprint actually run.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
import threading
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

from benchmark.errors import BenchmarkError
from benchmark.registry import CONFIG_DIR, REPO_ROOT

PROJECT_PACKAGES = ("benchmark", "adapters", "baselines")
# This module computes keys and changes no result: editing it must not invalidate every run.
NOT_FOLLOWED = frozenset({"benchmark.code_fingerprint"})
# ast.parse is not safe from several threads at once in Python 3.11 (a SystemError); two
# callers asking the cache for artefacts at once fingerprint under this lock.
_LOCK = threading.Lock()
HARNESS_MODULE = "benchmark.runner"
EQUIVALENCE_FILE = CONFIG_DIR / "code-equivalence.json"
LENGTH = 16  # hex digits of a fingerprint

Reader = Callable[[Path], "str | None"]  # a file's text, or None if it does not exist


def _read_file(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


# --------------------------------------------------------------------------- one module


def normalised_tree(source: str, where: str = "<source>") -> str:
    """The module's syntax tree without docstrings and positions, as text."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise BenchmarkError(f"{where}: cannot be parsed for its code fingerprint "
                             f"(line {exc.lineno}: {exc.msg})") from None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


@lru_cache(maxsize=4096)
def _tree_hash(source: str, where: str) -> str:
    return hashlib.sha256(normalised_tree(source, where).encode()).hexdigest()


@lru_cache(maxsize=4096)
def _imported_names(source: str, name: str, is_package: bool) -> frozenset[str]:
    """Absolute dotted names a module's import statements may load (anywhere in the module,
    lazy imports inside functions included), parent packages included."""
    tree = ast.parse(source)
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            if stem:
                out.add(stem)
                out.update(f"{stem}.{alias.name}" for alias in node.names if alias.name != "*")
    parents = {".".join(n.split(".")[:i]) for n in out for i in range(1, n.count(".") + 1)}
    return frozenset(out | parents)


# --------------------------------------------------------------------------- closures


class _Tree:
    """Where project modules live in one source tree (the checkout, or an older commit's files
    read through ``reader``), and the extra folders of external adapter modules."""

    def __init__(self, root: Path, reader: Reader = _read_file,
                 extra: dict[str, Path] | None = None) -> None:
        self.root, self.read = root, reader
        self.extra = dict(extra or {})  # module name -> file, for external adapters

    def locate(self, name: str, near: Path | None) -> tuple[Path, str, bool] | None:
        """(file, source, is_package) of a project module, or None if ``name`` is not one."""
        if name in self.extra:
            path = self.extra[name]
            source = self.read(path)
            return None if source is None else (path, source, False)
        parts = name.split(".")
        if parts[0] in PROJECT_PACKAGES:
            base = self.root
        elif near is not None:  # an external module's sibling (``import helper``)
            base = near
        else:
            return None
        for path, is_package in ((base.joinpath(*parts).with_suffix(".py"), False),
                                 (base.joinpath(*parts, "__init__.py"), True)):
            source = self.read(path)
            if source is not None:
                return path, source, is_package
        return None


def _closure(roots: Iterable[str], tree: _Tree) -> dict[str, str]:
    """{label: tree hash} of the modules ``roots`` load, transitively. A label is the dotted
    name of a project module and ``external:<file name>`` for an external module or its
    siblings, so the fingerprint does not depend on where the checkout lies."""
    out: dict[str, str] = {}
    roots = list(roots)
    parents = {".".join(n.split(".")[:i]) for n in roots for i in range(1, n.count(".") + 1)}
    todo = [(name, None) for name in [*roots, *sorted(parents)]]
    seen: set[str] = set()
    while todo:
        name, near = todo.pop()
        if name in seen or name in NOT_FOLLOWED:
            continue
        seen.add(name)
        found = tree.locate(name, near)
        if found is None and name in roots:
            raise BenchmarkError(f"{name}: not a module of this project, nor a loaded "
                                 "adapter module: its code cannot be fingerprinted")
        if found is None:
            continue
        path, source, is_package = found
        external = name in tree.extra or name.split(".")[0] not in PROJECT_PACKAGES
        label = f"external:{path.name}" if external else name
        out[label] = _tree_hash(source, str(path))
        next_near = path.parent if external else None
        todo.extend((n, next_near) for n in _imported_names(source, name, is_package))
    return out


def fingerprint_of(roots: Iterable[str], root: Path = REPO_ROOT, reader: Reader = _read_file,
                   extra: dict[str, Path] | None = None) -> str:
    """The fingerprint of the modules ``roots`` and everything of the project they import."""
    with _LOCK:
        closure = _closure(list(roots), _Tree(root, reader, extra))
    text = json.dumps(sorted(closure.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:LENGTH]


def _external_files(module: str) -> dict[str, Path]:
    """A module outside the project packages (an external adapter loaded by file path, a
    tool, a test) and where its file is."""
    if module.split(".")[0] in PROJECT_PACKAGES:
        return {}
    path = getattr(sys.modules.get(module), "__file__", None)
    return {module: Path(path).resolve()} if path else {}


def module_fingerprint(module: str) -> str:
    """The fingerprint of an imported module's code and its project imports."""
    return fingerprint_of([module], extra=_external_files(module))


def method_fingerprint(adapter_module: str) -> str:
    """The fingerprint of a run: the adapter's module and the harness, with their imports."""
    return fingerprint_of([adapter_module, HARNESS_MODULE], extra=_external_files(adapter_module))


def caller_fingerprint(depth: int = 2) -> str:
    """The canonical fingerprint of the module that called the caller (an artefact's builder:
    the module that asks the cache for a checkpoint or an embedding table)."""
    name = sys._getframe(depth).f_globals.get("__name__", "?")
    try:
        return canonical(module_fingerprint(name))
    except BenchmarkError:  # code without a file (an interactive session): keyed by name
        return f"module:{name}"


# --------------------------------------------------------------------------- equivalence


def equivalences(path: Path | None = None) -> list[dict]:
    """The recorded code-equivalence entries (``[]`` when there are none)."""
    path = path or EQUIVALENCE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise BenchmarkError(f"{path}: not valid JSON ({exc})") from None
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("old"), str) and isinstance(e.get("new"), str)
            for e in entries):
        raise BenchmarkError(f"{path}: expected {{\"entries\": [{{\"old\": ..., \"new\": ...}}]}}")
    return entries


def canonical(fingerprint: str, entries: list[dict] | None = None) -> str:
    """The oldest fingerprint that recorded equivalences lead back to from ``fingerprint``."""
    back = {e["new"]: e["old"] for e in (equivalences() if entries is None else entries)}
    seen = {fingerprint}
    while fingerprint in back and back[fingerprint] not in seen:
        fingerprint = back[fingerprint]
        seen.add(fingerprint)
    return fingerprint


def same_code(recorded: str | None, current: str, entries: list[dict] | None = None) -> bool:
    """Whether a result made with ``recorded`` ran the code ``current`` names, directly or
    through equivalence entries.

    Each entry certifies two fingerprints equivalent, so any chain of entries does, in either
    direction: two refactors certified from the same old code, or two old codes certified
    against the same new one, all name one behaviour. (:func:`canonical` follows one line back
    and can miss such a branch; keys keep using it, so cached artefacts keep their keys.)"""
    if recorded is None:
        return False
    if recorded == current:
        return True
    entries = equivalences() if entries is None else entries
    links: dict[str, set[str]] = {}
    for e in entries:
        links.setdefault(e["old"], set()).add(e["new"])
        links.setdefault(e["new"], set()).add(e["old"])
    seen, todo = {recorded}, [recorded]
    while todo:
        for linked in links.get(todo.pop(), set()) - seen:
            if linked == current:
                return True
            seen.add(linked)
            todo.append(linked)
    return False
