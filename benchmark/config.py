"""Config resolution: dataclass defaults < YAML < YAML ``profiles.<profile>`` < ``--set``.

Values from the command line are parsed as YAML scalars (never ``eval``). Unknown keys and wrong
types are errors that name the key and the source.

A config dataclass checks its own values in ``__post_init__`` with the ``require_*`` helpers
below, which raise ``ValueError("key: what is wrong")``; :func:`build_config` turns that into a
:class:`BenchmarkError` naming the key, its value and the layer(s) that set it, so a value that
would train nonsense fails before any data or model is loaded.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from benchmark.errors import BenchmarkError

PROFILES = ("smoke", "default", "gpu", "paper")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["a=1", "m.b=x"]`` -> ``{"a": 1, "m.b": "x"}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise BenchmarkError(f"--set expects key=value, got {pair!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out[key.strip()] = _number_or_self(value)
    return out


def _number_or_self(value: Any) -> Any:
    """YAML 1.1 reads `1e-3` as a string; a user typing it means a number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _check_type(value: Any, tp: Any) -> Any:
    """Return ``value`` converted to ``tp`` where lossless (int -> float), else raise TypeError."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise TypeError(f"expected one of {list(get_args(tp))}")
    if origin in (Union, types.UnionType):
        errors = []
        for arg in get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_type(value, arg)
            except TypeError as exc:
                errors.append(str(exc))
        raise TypeError(" or ".join(errors) or "unexpected value")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError("expected a list")
        args = get_args(tp)
        inner = args[0] if args else Any
        items = [_check_type(v, inner) for v in value]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError("expected a mapping")
        return dict(value)
    if tp is float:
        value = _number_or_self(value)  # `lr: 1e-3` in YAML 1.1 is a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("expected a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("expected an integer")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError("expected true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise TypeError("expected a string")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise TypeError(f"expected {tp.__name__}")
    return value


def build_config(cls: type, layers: list[tuple[str, dict[str, Any]]]) -> Any:
    """Instantiate dataclass ``cls`` from its defaults overlaid by each (source, mapping) layer.

    Unknown keys, wrong types and values the class's ``__post_init__`` refuses are errors that
    name the key and the layer(s) that set it. A dotted key ``block.key`` (``--set
    sasrec_sid.semantic_ids.source=...``) sets one key inside a mapping field such as
    ``semantic_ids``, over what earlier layers gave it; a plain ``block`` replaces the mapping.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for source, mapping in layers:
        for key, value in mapping.items():
            block, dot, inner = key.partition(".")
            if key not in fields and dot and block in fields and _is_mapping(hints[block]):
                earlier = values[block] if block in values else _default(cls, block)
                earlier = {} if earlier is dataclasses.MISSING else earlier
                values[block] = {**earlier, inner: value}
                continue
            if key not in fields:
                known = ", ".join(sorted(fields)) or "(none)"
                raise BenchmarkError(f"{source}: unknown config key {key!r}; known keys: {known}")
            try:
                values[key] = _check_type(value, hints[key])
            except TypeError as exc:
                raise BenchmarkError(f"{source}: config key {key!r}={value!r}: {exc}") from None
    try:
        return cls(**values)
    except ValueError as exc:
        raise _invalid_value(cls, layers, values, exc) from None


def _is_mapping(tp: Any) -> bool:
    return tp is dict or get_origin(tp) is dict


def _default(cls: type, name: str) -> Any:
    """The dataclass default of field ``name`` (``dataclasses.MISSING`` when it has none)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _invalid_value(cls: type, layers: list[tuple[str, dict[str, Any]]], values: dict[str, Any],
                   exc: ValueError) -> BenchmarkError:
    """A ``ValueError("key: problem")`` from ``__post_init__`` as an error naming its sources.

    The sources are the last layer that set the key and the last layer that set each other field
    the problem names (``hidden: must be divisible by n_heads (3)`` blames ``--set n_heads=3``
    as much as the YAML's ``hidden``); when no layer set any of them, the dataclass defaults.
    """
    key, sep, problem = str(exc).partition(": ")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if not sep or key not in fields:  # not one of ours: say what we know
        return BenchmarkError(f"{cls.__qualname__}: invalid config: {exc}")
    unquoted = re.sub(r"'[^']*'", "", problem)  # a nested config's own keys are quoted
    named = [key] + [f for f in fields if f != key and re.search(rf"\b{f}\b", unquoted)]
    sources: list[str] = []
    for name in named:
        source = next((s for s, m in reversed(layers)
                       if name in m or any(k.startswith(f"{name}.") for k in m)), None)
        if source is not None and source not in sources:
            sources.append(source)
    sources = sources or [f"{cls.__qualname__} defaults"]
    value = values[key] if key in values else _default(cls, key)
    return BenchmarkError(f"{' and '.join(sources)}: config key {key!r}={value!r}: {problem}")


# --------------------------------------------------------------------------- value checks
# Called from a config dataclass's ``__post_init__``; each raises ValueError("key: problem").


def require_range(key: str, value: float | int | None, low: float | None = None,
                  high: float | None = None, *, low_open: bool = False,
                  high_open: bool = False, optional: bool = False) -> None:
    """``value`` is a finite number within [low, high] (an end is excluded when ``*_open``);
    ``None`` passes when ``optional``."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key}: must be a finite number")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ValueError(f"{key}: must be {_describe_range(low, high, low_open, high_open)}"
                         + (" (or null)" if optional else ""))


def _describe_range(low, high, low_open: bool, high_open: bool) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low:g}"
    if low is None:
        return f"{'<' if high_open else '<='} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def require_positive(key: str, value: float | int | None, *, optional: bool = False) -> None:
    """``value`` is a finite number > 0 (a learning rate, a temperature)."""
    require_range(key, value, 0, low_open=True, optional=optional)


def require_at_least(key: str, value: int | None, low: int, *, optional: bool = False) -> None:
    """``value`` >= ``low`` (counts: epochs, batch sizes, layers)."""
    require_range(key, value, low, optional=optional)


def require_probability(key: str, value: float, *, below_one: bool = False) -> None:
    """``value`` in [0, 1] (or [0, 1) with ``below_one``: a dropout of 1 drops everything)."""
    require_range(key, value, 0, 1, high_open=below_one)


def require_each(key: str, values: list, low: int, *, non_empty: bool = False) -> None:
    """Every element of ``values`` is >= ``low`` (a grid of neighbourhood sizes, layer widths)."""
    if non_empty and not values:
        raise ValueError(f"{key}: must not be empty")
    for value in values:
        try:
            require_at_least(key, value, low)
        except ValueError:
            raise ValueError(f"{key}: every element must be >= {low:g}, got {value!r}") from None


def require_divisible(key: str, value: int, by_key: str, by: int) -> None:
    """``value`` is a multiple of field ``by_key``'s value ``by`` (attention heads)."""
    if by > 0 and value % by:
        raise ValueError(f"{key}: must be divisible by {by_key} ({by})")


def require_nested(key: str, cls: type, mapping: dict[str, Any]) -> Any:
    """Build the nested config ``cls`` from ``mapping`` (a dict field such as ``semantic_ids``)
    now, so its unknown keys and bad values fail with the outer config."""
    try:
        return build_config(cls, [(key, mapping)])
    except BenchmarkError as exc:
        raise ValueError(f"{key}: {str(exc).removeprefix(f'{key}: ')}") from None


class SourcedYAML(dict):
    """A method's YAML (its ``include:`` chain merged) that knows which file set each key:
    ``origins`` maps ``(key,)``, ``(block, name)`` and ``(block, name, key)`` (``block`` being
    ``profiles`` or ``datasets``) to a path; anything else comes from ``path``, the method's
    own YAML. Compares equal to the plain mapping."""

    def __init__(self, data: dict[str, Any], origins: dict[tuple, Path], path: Path) -> None:
        super().__init__(data)
        self.origins = origins
        self.path = path

    def source(self, *key: Any) -> Path:
        return self.origins.get(key, self.path)


def source_label(path: Path) -> str:
    """A YAML file as an error names it: relative to the working directory when under it
    (``configs/methods/sasrec_id.yaml`` from the repository), else absolute."""
    path = Path(path)
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def method_layers(
    name: str, yaml_data: dict[str, Any], profile: str, overrides: dict[str, Any],
    dataset: str | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """The layers of method ``name``'s config, later ones winning: its YAML, the YAML's
    ``datasets.<dataset>`` block (settings chosen on that dataset's validation), its
    ``profiles.<profile>`` block, and the ``--set`` overrides that apply to it.

    The profile block comes after the dataset block so that ``smoke`` stays tiny everywhere.

    Each layer is named by the file that holds its keys: for a :class:`SourcedYAML` (what
    ``registry.method_yaml`` returns) the real path, beside an external module or up an
    ``include:`` chain (a YAML layer whose keys come from several files is split by file);
    for a plain mapping, ``configs/methods/<name>.yaml``.
    """
    sourced = isinstance(yaml_data, SourcedYAML)

    def where(*key: Any) -> str:
        return source_label(yaml_data.source(*key)) if sourced else f"configs/methods/{name}.yaml"

    def by_file(mapping: dict[str, Any], block: tuple = (), suffix: str = ""
                ) -> list[tuple[str, dict[str, Any]]]:
        layers: dict[str, dict[str, Any]] = {}
        for key, value in mapping.items():
            layers.setdefault(where(*block, key) + suffix, {})[key] = value
        return list(layers.items()) or [(where(*block) + suffix, {})]

    base = dict(yaml_data)
    profiles = base.pop("profiles", {}) or {}
    if not isinstance(profiles, dict):
        raise BenchmarkError(f"{where('profiles')}: `profiles:` keys must be {PROFILES}")
    for p in profiles:
        if p not in PROFILES:
            raise BenchmarkError(f"{where('profiles', p)}: `profiles:` keys must be {PROFILES}")
    datasets = base.pop("datasets", {}) or {}
    if not isinstance(datasets, dict):
        raise BenchmarkError(f"{where('datasets')}: `datasets:` must map dataset names "
                             "to mappings")
    cli: dict[str, Any] = {}
    for key, value in overrides.items():
        scope, dot, rest = key.partition(".")
        if dot and scope == name:
            cli[rest] = value
        elif not dot:
            cli[key] = value
    return [
        *by_file(base),
        *by_file((datasets.get(dataset) or {}) if dataset else {}, ("datasets", dataset),
                 f" datasets.{dataset}"),
        *by_file(profiles.get(profile) or {}, ("profiles", profile), f" profiles.{profile}"),
        ("--set", cli),
    ]


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
