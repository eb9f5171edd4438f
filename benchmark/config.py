"""Config resolution: dataclass defaults < YAML < YAML ``profiles.<profile>`` < ``--set``.

Values from the command line are parsed as YAML scalars (never ``eval``). Unknown keys and wrong
types are errors that name the key and the source.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from benchmark.errors import BenchmarkError

PROFILES = ("smoke", "default", "paper")


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
    """Instantiate dataclass ``cls`` from its defaults overlaid by each (source, mapping) layer."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for source, mapping in layers:
        for key, value in mapping.items():
            if key not in fields:
                known = ", ".join(sorted(fields)) or "(none)"
                raise BenchmarkError(f"{source}: unknown config key {key!r}; known keys: {known}")
            try:
                values[key] = _check_type(value, hints[key])
            except TypeError as exc:
                raise BenchmarkError(f"{source}: config key {key!r}={value!r}: {exc}") from None
    return cls(**values)


def method_layers(
    name: str, yaml_data: dict[str, Any], profile: str, overrides: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """The YAML, its profile block and the ``--set`` overrides that apply to method ``name``."""
    base = dict(yaml_data)
    profiles = base.pop("profiles", {}) or {}
    if not isinstance(profiles, dict) or any(p not in PROFILES for p in profiles):
        raise BenchmarkError(f"configs/methods/{name}.yaml: `profiles:` keys must be {PROFILES}")
    cli: dict[str, Any] = {}
    for key, value in overrides.items():
        scope, dot, rest = key.partition(".")
        if dot and scope == name:
            cli[rest] = value
        elif not dot:
            cli[key] = value
    return [
        (f"configs/methods/{name}.yaml", base),
        (f"configs/methods/{name}.yaml profiles.{profile}", profiles.get(profile) or {}),
        ("--set", cli),
    ]


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
