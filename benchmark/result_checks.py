"""Cross-checks of result files: the report believes no file on its word.

Two kinds of check, both raising a one-line BenchmarkError that names the file (``report
--lenient`` turns each into a skipped file instead):

- :func:`check_run`, one run (its JSON and per-user file): every rank is an integer in
  1..``dataset.stats.n_items``; a rank is empty (a miss) only for a method that returns lists
  (``output`` "ranking" or a ``list_length``), and within such a list (<= ``list_length``);
  and the JSON's ``metrics`` (``n`` and the mean of every slice, bucket and metric) are what the
  per-user file's ranks and slice columns give, to ``TOLERANCE``. The confidence intervals are
  not recomputed.
- :func:`check_table`, the runs of one (dataset, protocol) table: every run must share the
  settings that change what a metric means (``SETTINGS``: history masking, the tie rule, the
  metric cutoffs where recorded, the evaluation users, the protocol). A list method's length
  only makes a metric such as HR@100 n/a, so it is not compared.

Which side is the odd one out (here and for the test cases, :func:`majority`): the value most
runs of the table share (every seed of every method counts once) is the table's; on a tie, the
reference method's (its first seed's, where it holds one of the tied values), else the tied
value met first in file order. The runs with another value are the odd ones.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from benchmark.errors import BenchmarkError
from benchmark.evaluation import HEADLINE, HISTORY_BUCKETS, POPULARITY_BUCKETS, metric_values
from benchmark.results import MethodRuns, Skipped, ranks_from_table

TOLERANCE = 1e-9  # |recomputed mean - JSON mean| allowed (summation order only)
LENIENT_HINT = " (`report --lenient` skips such files)"
NOT_RECORDED = "not recorded"

H = TypeVar("H", bound=Hashable)

# --------------------------------------------------------------------------- one run


def is_list_method(result: dict[str, Any]) -> bool:
    """Whether a run's method returns top-K lists (it may miss) rather than scores."""
    return result.get("output") == "ranking" or result.get("list_length") is not None


def _dict(value: Any) -> dict:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _true(table: pd.DataFrame, column: str) -> np.ndarray:
    """Rows where a boolean slice column says True (an absent column: none)."""
    if column not in table:
        return np.zeros(len(table), dtype=bool)
    return (table[column].astype(str) == "True").to_numpy()


def _filled(table: pd.DataFrame, column: str) -> bool:
    return column in table and not table[column].isna().all()


def slice_masks(table: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """{(slice, bucket): rows} as the runner builds the JSON's slices
    (:func:`benchmark.results.per_user_table`), from a per-user file's slice columns: all,
    history and popularity buckets always; tied / untied targets and cold / cold_valid / warm
    targets where the file fills those columns."""
    n = len(table)
    masks = {("all", "all"): np.ones(n, dtype=bool)}
    for column, buckets in (("history_bucket", HISTORY_BUCKETS),
                            ("popularity_bucket", POPULARITY_BUCKETS)):
        labels = (table[column].astype(str).to_numpy() if column in table
                  else np.full(n, "", dtype=object))
        masks.update({(column, b): labels == b for b in buckets})
    if _filled(table, "tied_target"):
        tied = _true(table, "tied_target")
        masks[("tied_target", "tied")], masks[("tied_target", "untied")] = tied, ~tied
    if _filled(table, "cold_item"):
        cold, cold_valid = _true(table, "cold_item"), _true(table, "cold_valid")
        masks[("cold_item", "cold")] = cold
        masks[("cold_item", "cold_valid")] = cold_valid
        masks[("cold_item", "warm")] = ~cold & ~cold_valid
    return masks


def recomputed_metrics(table: pd.DataFrame, list_length: int | None
                       ) -> tuple[list[tuple[str, str]], list[str], np.ndarray, np.ndarray]:
    """The slices' (slice, bucket) keys, the metric names (headline first), the rows of each
    bucket, and the [buckets, metrics] means from the per-user file (NaN for an empty bucket)."""
    values = metric_values(ranks_from_table(table), list_length)
    metrics = sorted(values, key=lambda m: m != HEADLINE)
    masks = slice_masks(table)
    keys = list(masks)
    m = np.stack([masks[k] for k in keys]).astype(np.float64)        # [buckets, users]
    v = np.stack([values[name] for name in metrics])                  # [metrics, users]
    n = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (m @ v.T) / n[:, None]
    return keys, metrics, n.astype(np.int64), means


def _fmt(a: float, b: float) -> tuple[str, str]:
    """Both numbers, with digits enough to tell them apart."""
    for digits in (4, 12):
        x, y = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if x != y:
            break
    return x, y


def _rank_problem(result: dict[str, Any], table: pd.DataFrame) -> str | None:
    """What is wrong with the ranks of a per-user file, or None."""
    stats = _dict(_dict(result.get("dataset")).get("stats"))
    n_items = stats.get("n_items")
    if not _count(n_items):
        return f"dataset.stats.n_items is {n_items!r}, so its ranks cannot be bounded"
    list_length = result.get("list_length")
    if list_length is not None and not _count(list_length):
        return f"list_length is {list_length!r}, neither null (a scoring method) nor a count"
    rank = table["rank"]
    users = table["user_id"].to_numpy()
    empty = rank.isna().to_numpy()
    if empty.any() and not is_list_method(result):
        return (f"user {users[np.flatnonzero(empty)[0]]!r} has an empty rank (a miss), but "
                f"`{result.get('method')}` returns scores (output {result.get('output')!r}, "
                "no list length): it ranks every target, so it cannot miss")
    filled = rank.fillna(1).to_numpy(dtype=np.int64)
    for bound, what in ((n_items, f"the catalogue of {n_items} items (dataset.stats.n_items)"),
                        (list_length, f"its list of {list_length} (list_length)")):
        if bound is not None and (filled > bound).any():
            row = int(np.flatnonzero(filled > bound)[0])
            return f"user {users[row]!r} has rank {filled[row]}, beyond {what}"
    return None


def _metrics_problem(result: dict[str, Any], table: pd.DataFrame) -> str | None:
    """Where the JSON's ``metrics`` and the per-user file disagree, or None."""
    stated = result.get("metrics")
    if not isinstance(stated, dict) or not all(isinstance(b, dict) for b in stated.values()):
        return "its JSON has no `metrics` to check the ranks against"
    keys, metrics, n, means = recomputed_metrics(table, result.get("list_length"))
    json_keys = [(s, b) for s, buckets in stated.items() for b in buckets]
    if set(json_keys) != set(keys):
        extra = sorted(f"{s}={b}" for s, b in set(json_keys) - set(keys))
        lacking = sorted(f"{s}={b}" for s, b in set(keys) - set(json_keys))
        return ("the JSON's metric slices are not those of its per-user file ("
                + "; ".join(x for x in (f"not in the file: {', '.join(extra)}" if extra else "",
                                        f"not in the JSON: {', '.join(lacking)}" if lacking
                                        else "") if x) + ")")
    for i, (slice_name, bucket) in enumerate(keys):
        entry = _dict(stated[slice_name][bucket])
        label = "all" if slice_name == "all" else f"{slice_name}={bucket}"
        where = "" if slice_name == "all" else f" ({label})"
        if entry.get("n") != n[i]:
            return (f"the per-user file has {n[i]} users in {label}, the JSON says "
                    f"n = {entry.get('n')!r}")
        named = sorted(k for k in entry if k != "n")
        if named != sorted(metrics):
            return (f"the JSON's metrics{where} are {', '.join(named) or 'none'}; the ranks "
                    f"(list_length {result.get('list_length')}) give {', '.join(sorted(metrics))}")
        for j, metric in enumerate(metrics):
            said = entry[metric].get("mean") if isinstance(entry[metric], dict) else entry[metric]
            ours = None if n[i] == 0 else float(means[i, j])
            number = isinstance(said, (int, float)) and not isinstance(said, bool)
            if ours is None or not number:
                if said is None and ours is None:
                    continue
                shown = "undefined (no users)" if ours is None else f"{ours:.4f}"
                return (f"{metric}{where} recomputed from the ranks is {shown}, the JSON says "
                        f"{said!r}")
            if not abs(ours - said) <= TOLERANCE:
                a, b = _fmt(ours, said)
                return f"{metric}{where} recomputed from the ranks is {a}, the JSON says {b}"
    return None


def check_run(json_path: Path, result: dict[str, Any], table: pd.DataFrame) -> None:
    """A BenchmarkError naming the per-user file and what disagrees, if its ranks are
    impossible for the run (see the module docstring) or its metrics are not the JSON's."""
    problem = _rank_problem(result, table) or _metrics_problem(result, table)
    if problem:
        raise BenchmarkError(f"{Path(json_path).with_suffix('.per_user.csv')}: {problem}")


# --------------------------------------------------------------------------- one table


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def settings_of(result: dict[str, Any]) -> dict[str, str]:
    """{setting: canonical JSON value} of the settings that change what a metric means.

    Masking and the tie rule a run lacks read as ``NOT_RECORDED`` (a value of its own); metric
    cutoffs are compared only between runs that record them (``harness.cutoffs`` or a top-level
    ``cutoffs``); no ``eval_users`` (result schema 1) is every user, ``"all"``.
    """
    harness = _dict(result.get("harness"))
    out = {name: _canonical(harness[name]) if name in harness else NOT_RECORDED
           for name in ("mask_history", "ties")}
    out = {f"harness.{name}": value for name, value in out.items()}
    cutoffs = harness.get("cutoffs", result.get("cutoffs"))
    if cutoffs is not None:
        out["cutoffs"] = _canonical(cutoffs)
    out["eval_users"] = _canonical(result.get("eval_users") or "all")
    out["protocol"] = _canonical(result.get("protocol"))
    return out


SETTINGS = ("harness.mask_history", "harness.ties", "cutoffs", "eval_users", "protocol")


def majority(values: Sequence[H], preferred: Sequence[bool]) -> H:
    """The value most entries share; on a tie the first preferred entry's value among the tied
    ones (the reference method's runs), else the tied value met first."""
    counts = Counter(values)
    top = max(counts.values())
    tied = [v for v in counts if counts[v] == top]  # in order of first appearance
    return next((v for v, p in zip(values, preferred) if p and v in tied), tied[0])


def _short(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def check_table(methods: dict[str, MethodRuns], reference: str | None, lenient: bool,
                skipped: list[Skipped]) -> dict[str, MethodRuns]:
    """The runs of one (dataset, protocol) whose ``SETTINGS`` are the table's (by
    :func:`majority`, the reference method preferred on a tie). A run with another value is a
    one-line BenchmarkError naming it and the setting, or with ``lenient`` skipped."""
    runs = [(name, path, settings_of(result)) for name, r in methods.items()
            for path, result in zip(r.paths, r.results)]
    if not runs:
        return methods
    table_value: dict[str, tuple[str, int, int]] = {}
    for setting in SETTINGS:
        have = [(name, s[setting]) for name, _, s in runs if setting in s]
        if have:
            value = majority([v for _, v in have], [name == reference for name, _ in have])
            table_value[setting] = (value, sum(v == value for _, v in have), len(have))
    where = "/".join(runs[0][1].parts[-4:-2])
    odd: dict[Path, str] = {}
    for _, path, s in runs:
        differ = [f"{setting} is {_shown(s[setting])}, but {k} of the {n} runs of {where} have "
                  f"{_shown(value)}" for setting, (value, k, n) in table_value.items()
                  if setting in s and s[setting] != value]
        if differ:
            odd[path] = "; ".join(differ) + " (runs compared in one table must share it)"
    if odd and not lenient:
        path, why = next(iter(odd.items()))
        others = [_short(p) for p in odd if p != path]
        also = f"; {len(others)} more differ: {', '.join(others)}" if others else ""
        raise BenchmarkError(f"{path}: {why}{also}{LENIENT_HINT}")
    skipped.extend(Skipped(path, why) for path, why in odd.items())
    kept = {}
    for name, r in methods.items():
        keep = [i for i, path in enumerate(r.paths) if path not in odd]
        if keep:
            kept[name] = dataclasses.replace(
                r, results=[r.results[i] for i in keep], tables=[r.tables[i] for i in keep],
                paths=[r.paths[i] for i in keep])
    return kept


def _shown(value: str) -> str:
    return value if value == NOT_RECORDED else f"`{value}`"
