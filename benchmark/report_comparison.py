"""The methods of one (dataset, protocol) side by side: which files share the table's test
cases and each method's semantic-ID source, which method is the reference, the slice masks,
and :class:`Comparison`, which runs every paired test once (the statistics are
benchmark.comparisons and benchmark.seed_test)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.comparisons import compare
from benchmark.errors import BenchmarkError
from benchmark.evaluation import HEADLINE
from benchmark.registry import split_variant
from benchmark.result_checks import majority
from benchmark.results import MethodRuns, Skipped
from benchmark.settings import HarnessSettings
from benchmark.statistics import bootstrap_ci

COLD_LABELS = ("cold_item=cold", "cold_item=cold_valid")
SLICE_COLUMNS = {"history_bucket": ("short", "medium", "long"),
                 "popularity_bucket": ("head", "torso", "tail"),
                 "tied_target": (True, False),
                 "cold_item": (True, False)}


def _choose_reference(methods: dict[str, MethodRuns], preferred: str, fallback: str) -> str | None:
    if preferred in methods:
        return preferred
    return fallback if fallback in methods else None


def _slice_masks(table0: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    """(label, column header, mask) of every slice bucket present in a per-user file.

    Under ``cold_item``: ``cold`` (target in C), ``cold_valid`` (target in the cold-validation
    set C_v, when the file has that column) and ``warm`` (neither).
    """
    out = []
    for column, buckets in SLICE_COLUMNS.items():
        if column not in table0 or table0[column].isna().all():
            continue
        if column == "cold_item":
            out += _cold_masks(table0)
            continue
        for bucket in buckets:
            mask = (table0[column].astype(str) == str(bucket)).to_numpy()
            if column == "tied_target":
                bucket = "tied" if bucket else "untied"
            out.append((f"{column}={bucket}", f"{bucket} (n={int(mask.sum())})", mask))
    return out


def slice_columns(methods: dict[str, MethodRuns]) -> pd.DataFrame:
    """The slice columns of a (dataset, protocol), each taken from the first per-user file that
    fills it. Every file holds the same test cases in the same order (:func:`_same_users`), so
    a column a newer runner writes (``tied_target``, ``cold_valid``) serves the older files
    beside it."""
    tables = [t for runs in methods.values() for t in runs.tables]
    out = tables[0].copy()
    for column in (*SLICE_COLUMNS, "cold_valid"):
        for table in tables:
            if column in table and not table[column].isna().all():
                out[column] = table[column].to_numpy()
                break
    return out


def _is_true(table0: pd.DataFrame, column: str) -> np.ndarray:
    if column not in table0:
        return np.zeros(len(table0), dtype=bool)
    return (table0[column].astype(str) == "True").to_numpy()


def _cold_masks(table0: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    cold, cold_valid = _is_true(table0, "cold_item"), _is_true(table0, "cold_valid")
    buckets = [("cold", cold)]
    if "cold_valid" in table0 and not table0["cold_valid"].isna().all():
        buckets.append(("cold_valid", cold_valid))
    buckets.append(("warm", ~cold & ~cold_valid))
    return [(f"cold_item={label}", f"{label} (n={int(mask.sum())})", mask)
            for label, mask in buckets]


def _users(table: pd.DataFrame) -> tuple[tuple[str, str], ...]:
    """The test cases of a per-user file: (user, target item) pairs in user order."""
    return tuple(zip(table["user_id"], table["target_item_id"]))


def _refuse(path: Path, why: str, lenient: bool, skipped: list[Skipped]) -> None:
    """A file that does not belong in the table: a one-line error, or with ``lenient`` a
    skipped file that the report lists."""
    if not lenient:
        raise BenchmarkError(f"{path}: {why} (`report --lenient` skips such files)")
    skipped.append(Skipped(path, why))


def sid_source(result: dict) -> str:
    """Where a run's semantic IDs came from: ``config.semantic_ids.source``, else ``ours``
    (also for a method without semantic IDs, where every run agrees)."""
    config = result.get("config") if isinstance(result.get("config"), dict) else {}
    block = config.get("semantic_ids") if isinstance(config.get("semantic_ids"), dict) else {}
    return str(block.get("source") or "ours")


def _same_sources(methods: dict[str, MethodRuns], lenient: bool,
                  skipped: list[Skipped]) -> dict[str, MethodRuns]:
    """The methods (and seeds) whose runs read their method's semantic IDs; any other file is an
    error, or, with ``lenient``, skipped. ``<method>@<variant>``'s source is
    ``published:<variant>``; a plain method's is the one most of its seeds read (on a tie, its
    first run's). ``--set tiger.semantic_ids.source=published:<variant>`` keeps the name
    ``tiger``, so one such run in a results folder would otherwise become a seed of the default
    ``tiger`` row with no note."""
    kept: dict[str, MethodRuns] = {}
    for name, runs in methods.items():
        sources = [sid_source(result) for result in runs.results]
        base, variant = split_variant(name)
        want = f"published:{variant}" if variant else majority(sources, [False] * len(sources))
        keep = MethodRuns(name)
        for result, table, path, source in zip(runs.results, runs.tables, runs.paths, sources):
            if source == want:
                keep.results.append(result)
                keep.tables.append(table)
                keep.paths.append(path)
                continue
            fix = (f"; a run on a published index is the method `{base}@"
                   f"{source.partition(':')[2]}`" if source.startswith("published:") else "")
            why = (f"semantic IDs from `{source}`, but {name}'s "
                   f"{'name says' if variant else 'other seeds say'} `{want}` (one method, one ID "
                   f"source{fix})")
            _refuse(path, why, lenient, skipped)
        if keep.results:
            kept[name] = keep
    return kept


def _same_users(methods: dict[str, MethodRuns], settings: HarnessSettings, lenient: bool,
                skipped: list[Skipped]) -> dict[str, MethodRuns]:
    """The methods (and seeds) whose per-user files hold the table's test cases; any other file
    is an error, or, with ``lenient``, skipped. Per-user values are paired by position, so a
    file on other users would compare different test cases. The table's test cases are those
    most files hold, the reference's on a tie (:func:`benchmark.result_checks.majority`)."""
    reference = _choose_reference(methods, settings.reference, settings.fallback_reference)
    files = [(path, _users(table), name == reference) for name, runs in methods.items()
             for path, table in zip(runs.paths, runs.tables)]
    users = majority([u for _, u, _ in files], [ref for *_, ref in files])
    ref_path = next(p for p, u, _ in sorted(files, key=lambda f: not f[2]) if u == users)
    ref_name = f"{ref_path.parent.name}/{ref_path.name}"
    split = next(r.get("split_hash") for ms in methods.values()
                 for r, p in zip(ms.results, ms.paths) if p == ref_path)
    kept: dict[str, MethodRuns] = {}
    for name, runs in methods.items():
        keep = MethodRuns(name)
        for result, table, path in zip(runs.results, runs.tables, runs.paths):
            if _users(table) == users and result.get("split_hash") != split:
                # Same test cases, other training data or histories (an older split rule):
                # the rows would compare methods trained on different data.
                why = (f"its split `{result.get('split_hash')}` is not the split `{split}` of "
                       f"{ref_name}; rerun it (methods of one dataset and protocol must share "
                       "one split)")
                _refuse(path, why, lenient, skipped)
                continue
            if _users(table) == users:
                keep.results.append(result)
                keep.tables.append(table)
                keep.paths.append(path)
                continue
            ours, theirs = set(table["user_id"]), {u for u, _ in users}
            moved = len(set(_users(table)) - set(users))
            differ = (f"{len(ours - theirs)} of its {len(ours)} users are not among the "
                      f"{len(theirs)} users of {ref_name}" if ours != theirs else
                      f"its users are those of {ref_name}, but {moved} "
                      "target items differ (another split?)")
            why = (f"{differ}; methods of one dataset and protocol must be evaluated on the same "
                   "test cases")
            _refuse(path, why, lenient, skipped)
        if keep.results:
            kept[name] = keep
    return kept


@dataclass
class Comparison:
    """The methods of one (dataset, protocol), in leaderboard order, and what they are tested
    against (every method holds the same users: see :func:`_same_users`)."""

    methods: dict[str, MethodRuns]
    reference: str | None
    order: list[str]
    slices: list[tuple[str, str, np.ndarray]]
    settings: HarnessSettings
    _tests: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, methods: dict[str, MethodRuns], settings: HarnessSettings) -> Comparison:
        reference = _choose_reference(methods, settings.reference, settings.fallback_reference)
        order = sorted(methods, key=lambda n: -(methods[n].per_user(HEADLINE).mean()))
        return cls(methods, reference, order, _slice_masks(slice_columns(methods)), settings)

    def ci(self, values: np.ndarray) -> tuple[float, float]:
        """95% bootstrap CI of the mean, with the profile's resamples and seed."""
        return bootstrap_ci(values, seed=self.settings.bootstrap_seed,
                            n_resamples=self.settings.bootstrap_resamples)

    def tests(self, metric: str, mask: np.ndarray | None = None, label: str = "all"
              ) -> dict[str, dict]:
        """Paired tests of every method against the reference on ``metric`` (Holm-corrected)."""
        key = (metric, label)
        if key not in self._tests:
            self._tests[key] = self._compare(metric, mask, label)
        return self._tests[key]

    def reference_for(self, label: str) -> str | None:
        """The reference of a slice: `random` on cold targets (where an ID model scores 0 by
        construction), the table's reference elsewhere."""
        if label in COLD_LABELS and "random" in self.methods:
            return "random"
        return self.reference

    def _compare(self, metric: str, mask: np.ndarray | None, label: str = "all"
                 ) -> dict[str, dict]:
        reference = self.reference_for(label)
        if reference is None:
            return {}
        per_seed = {}
        for name, runs in self.methods.items():
            v = runs.per_seed(metric, mask)
            if v is not None and v.shape[1]:
                per_seed[name] = v
        clusters = None
        if label in COLD_LABELS:  # cold cases cluster on items
            targets = slice_columns(self.methods)["target_item_id"].to_numpy()
            clusters = targets if mask is None else targets[mask]
        return compare(per_seed, reference, self.settings.families or None, clusters)

    def slice_means_of(self, mask: np.ndarray) -> dict[str, float]:
        """{method: mean of the headline metric over ``mask``}."""
        out = {}
        for name, runs in self.methods.items():
            v = runs.per_user(HEADLINE, mask)
            if v is not None and len(v):
                out[name] = float(v.mean())
        return out

    def slice_means(self, name: str) -> dict[str, tuple[float, float, float]]:
        """{slice label: (mean, CI low, CI high)} of the headline metric."""
        out = {}
        for label, _, mask in self.slices:
            v = self.methods[name].per_user(HEADLINE, mask)
            if v is not None and len(v):
                out[label] = (float(v.mean()), *self.ci(v))
        return out
