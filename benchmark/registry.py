"""Method registry: names -> adapter classes, loaded lazily.

Built-in methods are discovered from ``configs/methods/<name>.yaml``; each file names its class
as ``adapter: "module:Class"``, so listing methods never imports torch. A class registers itself
with ``@register("name")`` when its module is imported; a YAML variant (``sasrec_id_bce``) points
at the same class under another name. Methods from outside the repository come from
``--adapter-module path/to/file.py`` (or a dotted module name) or from the ``benchmark.adapters``
entry-point group; their YAML file (optional) is looked up beside the module as ``<name>.yaml``.

A method YAML may say ``include: <parent method name>`` (as lm-evaluation-harness's task YAMLs
do): the parent's YAML, its own includes resolved first, is the base and the file states only
what differs. Top-level keys of the child replace the parent's (``adapter:`` is inherited like
any other key), except ``profiles:``, which merges per profile: the child's keys in
``profiles.<p>`` replace the parent's keys in that same block. The parent is looked up beside
the child, then in ``configs/methods/``, then beside loaded external modules. A cycle is an
error that names the files.

Every class is checked against the adapter contract (``benchmark.adapter.check_contract``) when
it registers and when :func:`adapter_class` hands it out, so a broken method fails at the door.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NoReturn

import yaml

from benchmark.errors import BenchmarkError, MethodError, one_line

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"
METHOD_CONFIG_DIR = CONFIG_DIR / "methods"

_CLASSES: dict[str, type] = {}  # filled by @register when a module is imported
# Renamed methods, old name -> new, accepted (with a note) for one result schema version.
ALIASES = {"recformer_zeroshot": "recformer_pretrained"}
_EXTRA_CONFIG_DIRS: list[Path] = []


@dataclass(frozen=True)
class MethodSpec:
    name: str
    target: str  # "module:Class"
    yaml_path: Path | None


def _check_contract(name: str, cls: type) -> None:
    # Imported here: benchmark.adapter loads numpy, and `import benchmark` loads this module.
    from benchmark.adapter import check_contract

    check_contract(name, cls)


def register(name: str) -> Callable[[type], type]:
    """Class decorator: make an adapter class available under ``name``."""

    def wrap(cls: type) -> type:
        existing = _CLASSES.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise BenchmarkError(f"method name {name!r} registered twice ({existing} and {cls})")
        _check_contract(name, cls)
        _CLASSES[name] = cls
        cls.registered_name = name
        return cls

    return wrap


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BenchmarkError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise BenchmarkError(f"{path}: expected a mapping at the top level")
    return data


def _find_parent(name: str, child: Path) -> Path:
    """Where ``include: name`` in ``child`` points: beside it, then the built-ins, then extras."""
    for folder in (child.parent, METHOD_CONFIG_DIR, *_EXTRA_CONFIG_DIRS):
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    raise BenchmarkError(f"{child}: `include: {name}` names no method YAML ({name}.yaml not found)")


BLOCK_KEYS = ("profiles", "datasets")  # per-profile and per-dataset override blocks


def _blocks(data: dict[str, Any], path: Path, key: str = "profiles") -> dict[str, dict[str, Any]]:
    blocks = data.get(key) or {}
    if not isinstance(blocks, dict) or not all(
            isinstance(block, dict) or block is None for block in blocks.values()):
        what = "profile" if key == "profiles" else "dataset"
        raise BenchmarkError(f"{path}: `{key}:` must map {what} names to mappings")
    return {p: dict(block or {}) for p, block in blocks.items()}


def _resolved_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The YAML at ``path`` with its ``include:`` chain merged in (child wins, per profile and
    per dataset block)."""
    return _resolved_with_origins(path, chain)[0]


def _origins(data: dict[str, Any], path: Path) -> dict[tuple, Path]:
    """``path`` as the origin of every key ``data`` sets: ``(key,)``, and inside the profile and
    dataset blocks ``(block, name)`` and ``(block, name, key)``."""
    origins: dict[tuple, Path] = {}
    for key, value in data.items():
        origins[(key,)] = path
        if key in BLOCK_KEYS and isinstance(value, dict):
            for name, block in value.items():
                origins[(key, name)] = path
                for inner in block if isinstance(block, dict) else ():
                    origins[(key, name, inner)] = path
    return origins


def _resolved_with_origins(path: Path, chain: tuple[Path, ...] = ()
                           ) -> tuple[dict[str, Any], dict[tuple, Path]]:
    """:func:`_resolved_yaml`, and which file of the chain set each key (see :func:`_origins`),
    so that an error about a key names the file that holds it."""
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(path):], path))
        raise BenchmarkError(f"`include:` cycle: {cycle}")
    data = _read_yaml(path)
    parent_name = data.pop("include", None)
    if parent_name is None:
        return data, _origins(data, path)
    if not isinstance(parent_name, str):
        raise BenchmarkError(f"{path}: `include:` takes one method name, got {parent_name!r}")
    parent = _find_parent(parent_name, path)
    merged, origins = _resolved_with_origins(parent, (*chain, path))
    blocks = {}
    for key in BLOCK_KEYS:
        blocks[key] = _blocks(merged, parent, key)
        for name, block in _blocks(data, path, key).items():
            blocks[key][name] = {**blocks[key].get(name, {}), **block}
    merged.update({k: v for k, v in data.items() if k not in BLOCK_KEYS})
    merged.update({key: value for key, value in blocks.items() if value})
    return merged, {**origins, **_origins(data, path)}


def load_external(module: str) -> None:
    """Import an adapter module from a file path or a dotted name; its decorators register it.

    Whatever the module raises on import (a SyntaxError, an ImportError, its own bug) is the
    user's to fix: it becomes a MethodError naming the module and the line; a BenchmarkError
    (a method that breaks the contract) passes through.
    """
    path = Path(module)
    if module.endswith(".py") or path.exists():
        if not path.is_file():
            raise BenchmarkError(f"adapter module {module!r}: no such file")
        spec = importlib.util.spec_from_file_location(f"external_adapter_{path.stem}", path)
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        try:
            spec.loader.exec_module(mod)
        except (Exception, SystemExit) as exc:  # sys.exit() on import must not end the run
            del sys.modules[spec.name]
            _import_failed(module, exc, path)
        _EXTRA_CONFIG_DIRS.append(path.resolve().parent)
    else:
        try:
            mod = importlib.import_module(module)
        except (Exception, SystemExit) as exc:
            _import_failed(module, exc, None)
        if getattr(mod, "__file__", None):
            _EXTRA_CONFIG_DIRS.append(Path(mod.__file__).resolve().parent)


def _import_failed(module: str, exc: BaseException, path: Path | None) -> NoReturn:
    if isinstance(exc, BenchmarkError):
        raise exc
    where = ""
    if path is not None and not isinstance(exc, SyntaxError):  # a SyntaxError says (file, line)
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if Path(f.filename).resolve() == path.resolve()]
        if frames:  # the module's own line that raised, or that called what raised
            where = f" ({path.name}, line {frames[-1].lineno})"
    raise MethodError(
        f"adapter module {module!r} cannot be imported: {one_line(exc)}{where}") from exc


def _entry_point_specs() -> dict[str, MethodSpec]:
    specs = {}
    for ep in entry_points(group="benchmark.adapters"):
        specs[ep.name] = MethodSpec(ep.name, ep.value, None)
    return specs


def available() -> dict[str, MethodSpec]:
    """Every known method name and where its class lives."""
    specs: dict[str, MethodSpec] = dict(_entry_point_specs())
    for path in sorted(METHOD_CONFIG_DIR.glob("*.yaml")):
        target = _resolved_yaml(path).get("adapter")
        if not isinstance(target, str) or ":" not in target:
            raise BenchmarkError(
                f"{path}: needs `adapter: \"module:Class\"` (its own or its `include:`'s)")
        specs[path.stem] = MethodSpec(path.stem, target, path)
    for name, cls in _CLASSES.items():
        if name not in specs:
            yaml_path = next(
                (d / f"{name}.yaml" for d in _EXTRA_CONFIG_DIRS if (d / f"{name}.yaml").exists()),
                None,
            )
            specs[name] = MethodSpec(name, f"{cls.__module__}:{cls.__qualname__}", yaml_path)
    return dict(sorted(specs.items()))


def resolve_name(name: str, note: bool = True) -> str:
    """A method's current name: an old name (:data:`ALIASES`) becomes the new one, with a
    one-line note on stderr when ``note``."""
    new = ALIASES.get(name)
    if new is None:
        return name
    if note:
        print(f"note: method {name!r} is now called {new!r}; the old name is accepted until "
              "the next result schema", file=sys.stderr)
    return new


# `<method>@<variant>`: a semantic-ID method on a published index (the tokenizer sweep), e.g.
# `tiger@rqvae_native` = tiger with `semantic_ids.source: published:rqvae_native`. Not listed by
# available() (so never part of --all); its results are a method folder of their own.
VARIANT_SEP = "@"
_VARIANT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def split_variant(name: str) -> tuple[str, str | None]:
    """(base method, published SID variant or None) of a method name."""
    base, sep, variant = name.partition(VARIANT_SEP)
    return (base, variant) if sep else (name, None)


def spec(name: str) -> MethodSpec:
    base, variant = split_variant(name)
    if variant is not None:
        if not _VARIANT_RE.match(variant):
            raise BenchmarkError(f"method {name!r}: {variant!r} is not a published index name "
                                 "(letters, digits and _ only)")
        s = spec(base)
        return MethodSpec(name, s.target, s.yaml_path)
    specs = available()
    if name not in specs:
        raise BenchmarkError(f"unknown method {name!r}; known methods: {', '.join(specs)}")
    return specs[name]


def adapter_class(name: str) -> type:
    """Import (if needed) and return the class behind a method name."""
    s = spec(name)
    module_name, _, class_name = s.target.partition(":")
    if module_name.startswith("external_adapter_") and name in _CLASSES:
        return _CLASSES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # a missing dependency, not a bug of ours
        raise MethodError(f"method {name!r} cannot be imported ({module_name}): "
                          f"{one_line(exc)}") from exc
    try:
        cls = getattr(module, class_name)
    except AttributeError:
        raise BenchmarkError(f"method {name!r}: {module_name} has no class {class_name}") from None
    _check_contract(name, cls)
    base, variant = split_variant(name)
    if variant is not None and "semantic_ids" not in {f.name for f in
                                                      dataclasses.fields(cls.Config)}:
        raise BenchmarkError(f"method {name!r}: {base!r} has no semantic IDs; "
                             f"`{VARIANT_SEP}<index>` applies to semantic-ID methods only")
    return cls


def method_yaml(name: str) -> dict[str, Any]:
    """The method's YAML with its ``include:`` chain merged (without `adapter`), or {}; a
    :class:`benchmark.config.SourcedYAML`, which knows the file behind each key."""
    from benchmark.config import SourcedYAML

    s = spec(name)
    if s.yaml_path is None:
        return {}
    data, origins = _resolved_with_origins(s.yaml_path)
    data.pop("adapter", None)
    return SourcedYAML(data, origins, s.yaml_path.resolve())
