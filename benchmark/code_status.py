"""Whether each result was made by the code of this checkout, for the report.

A result records the fingerprint of the code it ran (``code.fingerprint``, schema 3). The report
compares it with the checkout's fingerprint of the same adapter module and harness: equal, or
linked by code-equivalence entries, the result is this code's; different, the report says so,
naming the methods; absent (files made before schema 3), the report says how many results
cannot be checked. Methods from outside the repository are checked only where their module is
loaded (``--adapter-module``); otherwise they count as unchecked.

The same table also says when a method's seeds ran with different configs (:func:`config_lines`):
the seeds are pooled as one method, so a recipe that changed between seeds must be visible.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from benchmark import code_fingerprint as cf
from benchmark import registry
from benchmark.config import method_layers
from benchmark.errors import BenchmarkError


@dataclass
class CodeStatus:
    """The results of one table, sorted by whose code made them."""

    current: int = 0
    unknown: list[str] = field(default_factory=list)  # "method seedK" made before schema 3
    differs: list[str] = field(default_factory=list)  # made by other code, no entry links it

    def lines(self) -> list[str]:
        """What the report says under the table (nothing when every result is this code's)."""
        out = []
        if self.differs:
            out.append(f"Code: {len(self.differs)} result(s) were made with code that differs "
                       f"from this checkout's and no code-equivalence entry links them: "
                       f"{_grouped(self.differs)}. Rerun them to measure this code.")
        if self.unknown:
            out.append(f"Code: {len(self.unknown)} of {self._total()} results predate code "
                       f"fingerprints (result schema < 3), so whether this checkout's code "
                       f"reproduces them is not recorded: {_grouped(self.unknown)}.")
        return out

    def _total(self) -> int:
        return self.current + len(self.unknown) + len(self.differs)


def _grouped(labels: list[str]) -> str:
    """``a seed0, a seed1, b seed0`` -> ``a (seeds 0, 1), b (seed 0)``."""
    seeds: dict[str, list[str]] = {}
    for label in labels:
        method, _, seed = label.rpartition(" seed")
        seeds.setdefault(method, []).append(seed)
    return ", ".join(f"{m} ({_seeds(s)})" for m, s in seeds.items())


def code_status(results: Iterable[dict[str, Any]], entries: list[dict] | None = None
                ) -> CodeStatus:
    """Sort ``results`` (result JSONs of one table) by whether this checkout's code made them."""
    entries = cf.equivalences() if entries is None else entries
    status, current_of = CodeStatus(), {}
    for result in results:
        label = f"{result.get('method')} seed{result.get('seed')}"
        recorded = (result.get("code") or {}).get("fingerprint")
        module = str(result.get("adapter", "")).partition(":")[0]
        if recorded is None:
            status.unknown.append(label)
            continue
        if module not in current_of:
            try:
                current_of[module] = cf.method_fingerprint(module)
            except BenchmarkError:  # an external module that is not loaded here
                current_of[module] = None
        current = current_of[module]
        if current is None:
            status.unknown.append(label)
        elif cf.same_code(recorded, current, entries):
            status.current += 1
        else:
            status.differs.append(label)
    return status


def flat_settings(config: Any, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``: each leaf setting as canonical JSON, the form in
    which a result's recorded ``config`` is compared with another config (here and in
    :mod:`benchmark.plan`). Kept out of :mod:`benchmark.config`, which every method's code
    fingerprint covers."""
    if not isinstance(config, dict) or not config:
        return {prefix: json.dumps(config, sort_keys=True)} if prefix else {}
    out: dict[str, str] = {}
    for key, value in config.items():
        out.update(flat_settings(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _not_recorded(value: str) -> str:
    return "not recorded" if value == "null" else value


def _seeds(seeds: list[str]) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}"


def config_lines(methods: dict[str, Any],
                 yaml_of: Callable[[dict[str, Any]], dict[str, str] | None] | None = None
                 ) -> list[str]:
    """What the report says under a table about the configs its runs were made with.

    - A method whose seeds ran with different resolved configs (``config``), each differing
      setting with its value per seed: a table pools a method's seeds, so a reader must know
      when they are not one recipe (a YAML changed after some seeds had run, or a setting such
      as precision chosen per machine).
    - A method whose runs hold a setting other than the one this checkout's YAML gives for the
      run's dataset and profile (``yaml_of``, default :func:`yaml_settings`): made before the
      YAML changed, or with ``--set``. Only the keys the YAML sets are compared.

    A setting a run does not record (it predates the setting) reads "not recorded"; ``null``
    counts as not recorded."""
    if yaml_of is None:  # every seed of a method asks for the same YAML: read it once here
        yaml_of = _memo(yaml_settings, lambda r: (r.get("method"), r.get("profile"),
                                                  (r.get("dataset") or {}).get("name")))
    pooled, drift = [], []
    for name, runs in methods.items():
        flats = [(str(r.get("seed")), flat_settings(r.get("config") or {}), r) for r in runs.results]
        keys = sorted({k for _, f, _ in flats for k in f})
        differ = []
        for key in keys:
            seeds: dict[str, list[str]] = {}
            for seed, f, _ in flats:
                seeds.setdefault(_not_recorded(f.get(key, "null")), []).append(seed)
            if len(seeds) > 1:
                differ.append(f"`{key}` " + ", ".join(f"{_short_value(v)} ({_seeds(s)})"
                                                      for v, s in seeds.items()))
        if differ:
            pooled.append(f"{name}: {'; '.join(differ)}")
        moved: dict[tuple[str, str, str], list[str]] = {}
        for seed, f, result in flats:
            for key, want in (yaml_of(result) or {}).items():
                have, want = _not_recorded(f.get(key, "null")), _not_recorded(want)
                if have != want:
                    moved.setdefault((key, have, want), []).append(seed)
        if moved:
            drift.append(f"{name}: " + "; ".join(
                f"`{key}` {_short_value(have)} ({_seeds(seeds)}), YAML {_short_value(want)}"
                for (key, have, want), seeds in sorted(moved.items())))
    out = []
    if pooled:
        out.append("Config: pooled here as one method, these seeds ran with different settings - "
                   + " | ".join(pooled) + ".")
    if drift:
        out.append("Config: these runs hold settings other than this checkout's YAML gives "
                   "(made before it changed, or with `--set`) - " + " | ".join(drift) + ".")
    return out


def yaml_settings(result: dict[str, Any]) -> dict[str, str] | None:
    """{setting: canonical JSON} that the checkout's YAML gives the run's method for its
    dataset and profile (the ``--set`` layer left out), flattened as :func:`flat_settings`; None for a
    method this checkout does not know."""
    base, variant = registry.split_variant(str(result.get("method", "")))
    try:
        layers = method_layers(base, registry.method_yaml(base),
                               str(result.get("profile", "default")), {},
                               (result.get("dataset") or {}).get("name"))
    except BenchmarkError:
        return None
    merged: dict[str, str] = {}
    for _, mapping in layers[:-1]:
        for key, value in mapping.items():
            merged = {k: v for k, v in merged.items()
                      if not (k == key or k.startswith(f"{key}."))} | flat_settings({key: value})
    if variant is not None:
        merged["semantic_ids.source"] = json.dumps(f"published:{variant}")
    return merged


def _memo(fn: Callable[[dict[str, Any]], Any], key: Callable[[dict[str, Any]], Any]
          ) -> Callable[[dict[str, Any]], Any]:
    """``fn`` remembering its answer per ``key(result)`` for the life of the returned function."""
    seen: dict[Any, Any] = {}

    def call(result: dict[str, Any]) -> Any:
        k = key(result)
        if k not in seen:
            seen[k] = fn(result)
        return seen[k]
    return call


def _short_value(value: str, limit: int = 40) -> str:
    return value if len(value) <= limit else value[:limit - 3] + "..."
