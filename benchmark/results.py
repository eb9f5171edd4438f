"""Result files: what a run writes and how the report reads it back.

Layout: ``<results>/<dataset>/<protocol>/<method>/seed<k>.json`` with ``seed<k>.per_user.csv``
beside it (``user_id``, ``target_item_id``, ``rank`` -- 1-based, empty for a miss -- then one
column per slice). A finished run is first written into its cache folder, then copied into
place; both files are written all-or-nothing (:func:`benchmark.cache.atomic_write_files`), so an
interrupted run, a full disk or a concurrent invocation never leaves half a result.

Reading checks that each JSON parses, has its per-user file, and that the two agree (one row
per test case, ranks empty or integers >= 1, each user once); a file that fails is a
BenchmarkError naming it, or, read leniently, a :class:`Skipped` entry the report lists.

Reading accepts every schema version listed in ``READABLE_SCHEMAS`` and hands back the current
shape (:func:`upgrade`): a version-1 ``training.validation_ndcg10`` (a list of floats) becomes
``training.curve`` points whose ``examples`` and ``seconds`` are unknown (None); before version
3 the dataset's ``source`` was an absolute path of the machine that ran it, the ``harness``
block held settings that do not change a run (datasets, seeds, reference, peers, families), and
no ``code`` fingerprint was recorded (it reads as None: unknown).

A result file holds nothing that names the machine's folders: the dataset is named, with its
content fingerprint, and its source file is given relative to the repository, to the installed
package that ships it, or by file name alone (:func:`portable_source`). What changes on every
rerun of the same run (timings, peak memory, package versions, commit, hardware, the wall
seconds of curve points: :data:`VOLATILE`) is kept from the file already in place when a rerun
reproduces its per-user file and metrics exactly, and so is its code fingerprint where a
code-equivalence entry links it to the rerun's; so rerunning a committed run leaves it
byte-identical (:func:`install`).
"""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from benchmark.cache import atomic_write_files
from benchmark.code_fingerprint import same_code
from benchmark.errors import BenchmarkError
from benchmark.evaluation import HEADLINE, history_buckets, metric_values, popularity_buckets
from benchmark.registry import ALIASES, REPO_ROOT
from benchmark.statistics import bootstrap_ci

if TYPE_CHECKING:
    from benchmark.data import Dataset
    from benchmark.settings import HarnessSettings
    from benchmark.splits import Split

TUNING_VERSION = 1  # the record `tune` writes (benchmark/tuning.py)
# 2: training.curve holds {examples, seconds, valid_ndcg10} points; 3: no machine paths
# (portable dataset source), a `code` fingerprint, only run-defining harness settings.
SCHEMA_VERSION = 3
READABLE_SCHEMAS = (1, 2, 3)
# Fields that differ on every rerun of one run; kept from the file in place when a rerun
# reproduces it (and the `seconds` of each training.curve point).
VOLATILE = ("environment", "timing", "peak_rss_mb")
# Harness settings that do not change a run (what --all covers, how the report compares).
NOT_RUN_SETTINGS = ("datasets", "reference", "fallback_reference", "seeds", "peers", "families")

# --------------------------------------------------------------------------- writing


def per_user_table(dataset: Dataset, split: Split, ranks: np.ndarray
                   ) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]], list[float]]:
    """The per-user file's rows, the slice masks over them, and the history-bucket edges."""
    lengths = np.array([len(h) for h in split.test.histories])
    hist_labels, edges = history_buckets(lengths)
    pop = popularity_buckets(split.item_counts())
    targets = split.test.targets
    cold = np.isin(targets, split.cold_items)
    cold_valid = np.isin(targets, split.cold_valid_items)
    is_cold_protocol = split.protocol == "cold_item"
    all_tied = dataset.tied_targets()
    tied = None if all_tied is None else all_tied[split.test.users]
    table = pd.DataFrame({
        "user_id": [dataset.user_ids[u] for u in split.test.users],
        "target_item_id": [dataset.catalog.item_ids[i] for i in targets],
        "rank": pd.array([int(r) if np.isfinite(r) else None for r in ranks], dtype="Int64"),
        "history_bucket": hist_labels,
        "popularity_bucket": pop[targets],
        "cold_item": cold if is_cold_protocol else [None] * len(targets),
        "cold_valid": cold_valid if is_cold_protocol else [None] * len(targets),
        "tied_target": tied if tied is not None else [None] * len(targets),
    })
    slices: dict[str, dict[str, np.ndarray]] = {"all": {"all": np.ones(len(targets), bool)}}
    slices["history_bucket"] = {b: hist_labels == b for b in ("short", "medium", "long")}
    slices["popularity_bucket"] = {b: pop[targets] == b for b in ("head", "torso", "tail")}
    if tied is not None:
        slices["tied_target"] = {"tied": tied, "untied": ~tied}
    if is_cold_protocol:
        # warm: neither cold set; cold_valid targets are as cold as the cold_item ones.
        slices["cold_item"] = {"cold": cold, "cold_valid": cold_valid, "warm": ~cold & ~cold_valid}
    # One user order everywhere: by user id, the order read_run gives the report. The CIs in
    # the JSON and in REPORT.md then resample the same sequence and agree exactly.
    order = user_order(table)
    table = table.iloc[order].reset_index(drop=True)
    slices = {name: {b: mask[order] for b, mask in buckets.items()}
              for name, buckets in slices.items()}
    return table, slices, edges


def user_order(table: pd.DataFrame) -> np.ndarray:
    """Row order by user id (string order, stable): the canonical order of a per-user file."""
    return np.argsort(table["user_id"].astype(str).to_numpy(), kind="stable")


def ranks_from_table(table: pd.DataFrame) -> np.ndarray:
    """Per-user ranks back from a per-user file (empty = miss = inf)."""
    return table["rank"].astype("Float64").fillna(np.inf).to_numpy(dtype=np.float64)


def slice_metrics(per_user: pd.DataFrame, slices: dict[str, dict[str, np.ndarray]],
                  list_length: int | None, settings: HarnessSettings) -> dict:
    """{slice: {bucket: {"n", metric: {"mean", "ci95"}}}} for the result JSON."""
    values = metric_values(ranks_from_table(per_user), list_length)
    out: dict[str, dict[str, Any]] = {}
    for slice_name, buckets in slices.items():
        out[slice_name] = {}
        for bucket, mask in buckets.items():
            entry: dict[str, Any] = {"n": int(mask.sum())}
            for metric, v in values.items():
                sub = v[mask]
                lo, hi = bootstrap_ci(sub, seed=settings.bootstrap_seed,
                                      n_resamples=settings.bootstrap_resamples)
                entry[metric] = {"mean": float(sub.mean()) if len(sub) else None,
                                 "ci95": [lo, hi] if len(sub) else None}
            out[slice_name][bucket] = entry
    return out


def portable_source(source: str | None) -> str | None:
    """A dataset's source file without the machine's folders: relative to the repository
    (``data/...``), as ``package:<name>/...`` inside an installed package, or the file name."""
    if not source:
        return source
    path = Path(source)
    if not path.is_absolute():
        return path.as_posix()
    resolved = path.resolve()
    if resolved.is_relative_to(REPO_ROOT):
        return resolved.relative_to(REPO_ROOT).as_posix()
    for entry in sys.path:
        if entry and Path(entry).name in ("site-packages", "dist-packages"):
            base = Path(entry).resolve()
            if resolved.is_relative_to(base):
                return f"package:{resolved.relative_to(base).as_posix()}"
    return path.name


def result_harness(settings: HarnessSettings) -> dict[str, Any]:
    """The harness settings a result records: those that define the run."""
    from benchmark.config import to_dict

    return {k: v for k, v in to_dict(settings).items() if k not in NOT_RUN_SETTINGS}


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy values as Python ones and non-finite floats as None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_run(run_dir: Path, per_user: pd.DataFrame, result: dict[str, Any]) -> None:
    """A finished run's two files into its cache folder, all or nothing; result.json, renamed
    into place last, marks the run finished."""
    atomic_write_files({
        run_dir / "per_user.csv": per_user.to_csv(index=False).encode("utf-8"),
        run_dir / "result.json": json.dumps(result, indent=1, sort_keys=False).encode("utf-8"),
    })


NOT_FINISHED = "not finished"


def run_problem(run_dir: Path) -> str | None:
    """Why a cache folder cannot be served as a finished run: ``NOT_FINISHED`` (no result.json
    yet) or what is damaged; None when both files are there and agree."""
    if not (run_dir / "result.json").exists():
        return NOT_FINISHED
    try:
        read_run(run_dir / "result.json", run_dir / "per_user.csv")
    except BenchmarkError as exc:
        return str(exc).replace(f"{run_dir}{os.sep}", "")
    return None


def is_complete(run_dir: Path) -> bool:
    """Whether a cache folder holds both files of a finished run, readable and in agreement."""
    return run_problem(run_dir) is None


def install(run_dir: Path, target: Path) -> None:
    """Copy a finished run from its cache folder to ``target`` (the JSON) and the CSV beside it,
    both or neither. Where ``target`` holds the same run already (the same per-user file and
    metrics), its :data:`VOLATILE` fields are kept, and an otherwise equal file is left as it
    is, byte for byte."""
    per_user = (run_dir / "per_user.csv").read_bytes()
    result = _keep_volatile(target, per_user, (run_dir / "result.json").read_bytes())
    atomic_write_files({target.with_suffix(".per_user.csv"): per_user, target: result})


def _keep_volatile(target: Path, per_user: bytes, result: bytes) -> bytes:
    """``result``, or the file at ``target`` where it reports the same run (see install)."""
    try:
        if target.with_suffix(".per_user.csv").read_bytes() != per_user:
            return result
        old_bytes = target.read_bytes()
        old, new = json.loads(old_bytes), json.loads(result)
    except (OSError, ValueError):
        return result
    if not isinstance(old, dict) or old.get("metrics") != new.get("metrics"):
        return result
    for key in VOLATILE:
        if key in old:
            new[key] = old[key]
    # Code that a recorded equivalence links to the file's own: the file's record stands.
    old_code, new_code = (old.get("code") or {}), (new.get("code") or {})
    if old_code.get("fingerprint") and new_code.get("fingerprint") and same_code(
            old_code["fingerprint"], new_code["fingerprint"]):
        new["code"] = old_code
    old_curve = (old.get("training") or {}).get("curve")
    new_curve = (new.get("training") or {}).get("curve")
    if isinstance(old_curve, list) and isinstance(new_curve, list) and len(old_curve) == len(
            new_curve) and all(isinstance(p, dict) for p in old_curve):
        for o, n in zip(old_curve, new_curve):
            if {k: v for k, v in o.items() if k != "seconds"} == {
                    k: v for k, v in n.items() if k != "seconds"}:
                n["seconds"] = o.get("seconds")
    if new == old:
        return old_bytes
    return json.dumps(new, indent=1, sort_keys=False).encode("utf-8")


def headline(result_path: Path) -> str:
    """One line for the console: NDCG@10 with its CI, and the fit time."""
    result = read_result(Path(result_path))
    m = result["metrics"]["all"]["all"][HEADLINE]
    lo, hi = m["ci95"]
    return (f"{HEADLINE} {m['mean']:.4f} [{lo:.4f}, {hi:.4f}]  "
            f"fit {result['timing']['fit_seconds']:.1f}s")


# --------------------------------------------------------------------------- reading


def read_result(path: Path) -> dict[str, Any]:
    """A result JSON in the current shape; a schema this code does not know is an error."""
    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchmarkError(f"{path}: not a readable result JSON ({exc})") from exc
    if not isinstance(result, dict):
        raise BenchmarkError(f"{path}: not a result JSON (a {type(result).__name__}, not an object)")
    version = result.get("schema_version")
    if version not in READABLE_SCHEMAS:
        raise BenchmarkError(
            f"{path}: result schema version {version!r} is unknown; this version of the "
            f"benchmark reads versions {', '.join(map(str, READABLE_SCHEMAS))}")
    return upgrade(result)


def upgrade(result: dict[str, Any]) -> dict[str, Any]:
    """A result of any readable schema in the current shape (the module docstring says what
    changed); the current schema is returned as it is."""
    version = result.get("schema_version")
    if version == SCHEMA_VERSION:
        return result
    out: dict[str, Any] = {}
    for key, value in result.items():
        out[key] = value
        if key == "adapter":  # where a current file has it
            out["code"] = {"fingerprint": None, "note": f"made before code fingerprints "
                                                        f"(schema {version})"}
    out.setdefault("code", {"fingerprint": None})
    out["schema_version"] = SCHEMA_VERSION
    if version == 1:
        training = dict(out.get("training") or {})
        values = training.pop("validation_ndcg10", None) or []
        training["examples_seen"] = None
        training["curve"] = [{"examples": None, "seconds": None, "valid_ndcg10": v}
                             for v in values]
        out["training"] = training
    dataset = out.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("stats"), dict):
        stats = dataset["stats"]
        out["dataset"] = {**dataset, "stats": {**stats,
                                               "source": portable_source(stats.get("source"))}}
    if isinstance(out.get("harness"), dict):
        out["harness"] = {k: v for k, v in out["harness"].items() if k not in NOT_RUN_SETTINGS}
    return out


# What the report reads from every result JSON besides the per-user file.
REQUIRED_KEYS = ("method", "seed", "n_test_cases", "dataset", "harness", "environment",
                 "timing", "training")


def read_run(json_path: Path, csv_path: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """A result JSON and its per-user file, checked against each other; the table is sorted by
    user. Any disagreement is a BenchmarkError naming the file and what disagrees."""
    result = read_result(json_path)
    missing = [k for k in REQUIRED_KEYS if k not in result]
    if missing:
        raise BenchmarkError(f"{json_path}: lacks {', '.join(missing)}")
    n_cases = result["n_test_cases"]
    if not isinstance(n_cases, int) or isinstance(n_cases, bool):
        raise BenchmarkError(f"{json_path}: n_test_cases is {n_cases!r}, not a count")
    if not csv_path.exists():
        raise BenchmarkError(f"{json_path}: its per-user file {csv_path.name} is missing")
    table = _read_per_user(csv_path)
    if len(table) != n_cases:
        raise BenchmarkError(f"{csv_path}: {len(table)} rows, but {json_path.name} says "
                             f"n_test_cases = {n_cases}")
    return result, table.iloc[user_order(table)].reset_index(drop=True)


def _read_per_user(path: Path) -> pd.DataFrame:
    """A per-user file with its ranks checked (empty or an integer >= 1) and each user once."""
    try:
        text = path.read_bytes().decode("utf-8")
        table = pd.read_csv(io.StringIO(text), dtype={"user_id": str, "target_item_id": str,
                                                      "rank": str}, keep_default_na=False)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise BenchmarkError(f"{path}: not a readable per-user file ({exc})") from exc
    absent = [c for c in ("user_id", "target_item_id", "rank") if c not in table]
    if absent:
        raise BenchmarkError(f"{path}: no column {', '.join(absent)}")
    rank = table["rank"].str.strip()
    bad = ~(rank.eq("") | (rank.str.fullmatch(r"\d+") & ~rank.str.fullmatch(r"0+")))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise BenchmarkError(f"{path}: line {row + 2}: rank {table['rank'].iloc[row]!r} is "
                             "neither empty (a miss) nor an integer >= 1")
    repeated = table["user_id"][table["user_id"].duplicated()]
    if len(repeated):
        raise BenchmarkError(f"{path}: user {repeated.iloc[0]!r} appears more than once")
    out = pd.read_csv(io.StringIO(text), dtype={"user_id": str, "target_item_id": str},
                      keep_default_na=False, na_values=[""])  # an id "NA" stays an id
    out["rank"] = pd.array([int(r) if r else None for r in rank], dtype="Int64")
    return out


@dataclass
class MethodRuns:
    """All seeds of one method under one (dataset, protocol)."""

    name: str
    results: list[dict[str, Any]] = field(default_factory=list)
    tables: list[pd.DataFrame] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)  # each seed's result JSON

    @property
    def list_length(self) -> int | None:
        return self.results[0].get("list_length")

    def per_user(self, metric: str, mask: np.ndarray | None = None) -> np.ndarray | None:
        """Per-user values averaged over seeds (None if the metric is undefined here)."""
        seeds = self.per_seed(metric, mask)
        return None if seeds is None else seeds.mean(axis=0)

    def per_seed(self, metric: str, mask: np.ndarray | None = None) -> np.ndarray | None:
        """[seeds, users] metric values (None if the metric is undefined here)."""
        seeds = []
        for table in self.tables:
            values = metric_values(ranks_from_table(table), self.list_length)
            if metric not in values:
                return None
            seeds.append(values[metric] if mask is None else values[metric][mask])
        return np.stack(seeds)

    def seed_means(self, metric: str) -> list[float]:
        """The metric's mean over users, one value per seed."""
        out = []
        for table in self.tables:
            values = metric_values(ranks_from_table(table), self.list_length)
            if metric in values:
                out.append(float(values[metric].mean()))
        return out

    def mean_of(self, *keys: str) -> float | None:
        """Mean over seeds of a numeric field of the result JSON (``"timing", "fit_seconds"``)."""
        vals = []
        for r in self.results:
            v: Any = r
            for k in keys:
                v = v.get(k) if isinstance(v, dict) else None
            if isinstance(v, (int, float)):
                vals.append(float(v))
        return float(np.mean(vals)) if vals else None


@dataclass
class Skipped:
    """A result file a lenient read left out, and why."""

    path: Path
    why: str


@dataclass
class ResultSet:
    """What :func:`load_results` found: {(dataset, protocol): {method: MethodRuns}}, and the
    files it skipped (lenient reads only)."""

    runs: dict[tuple[str, str], dict[str, MethodRuns]]
    skipped: list[Skipped] = field(default_factory=list)


def load_results(results_dir: Path, lenient: bool = False) -> ResultSet:
    """Every ``<dataset>/<protocol>/<method>/seed*.json`` with its per-user file, checked by
    :func:`read_run` and cross-checked by :func:`benchmark.result_checks.check_run` (ranks
    possible for the run, metrics those of the JSON). Strict: the first bad file is a
    BenchmarkError; lenient: it is skipped."""
    from benchmark.result_checks import check_run  # here: kept apart from the writing side

    found: dict[tuple[str, str], dict[str, MethodRuns]] = {}
    skipped: list[Skipped] = []
    for path in sorted(Path(results_dir).glob("*/*/*/seed*.json")):
        method_dir = path.parent
        dataset, protocol = method_dir.parent.parent.name, method_dir.parent.name
        method = ALIASES.get(method_dir.name, method_dir.name)  # a renamed method's old folder
        try:
            result, table = read_run(path, path.with_suffix(".per_user.csv"))
            check_run(path, result, table)
        except BenchmarkError as exc:
            if not lenient:
                raise BenchmarkError(f"{exc} (`report --lenient` skips such files)") from exc
            skipped.append(Skipped(path, _why(exc, path)))
            continue
        runs = found.setdefault((dataset, protocol), {}).setdefault(method, MethodRuns(method))
        runs.results.append(result)
        runs.tables.append(table)
        runs.paths.append(path)
    return ResultSet(found, skipped)


def _why(exc: BenchmarkError, path: Path) -> str:
    """The message with the files of this run named by file name (the skip list names the
    JSON's path already)."""
    return str(exc).removeprefix(f"{path}: ").replace(f"{path.parent}{os.sep}", "")


def load_tuning(results_dir: Path) -> list[dict[str, Any]]:
    """Every tuning record under ``results_dir`` (``<dataset>/tuning/*.json``), sorted."""
    records = []
    for path in sorted(Path(results_dir).glob("*/tuning/*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BenchmarkError(f"{path}: unreadable tuning record ({exc})") from exc
        if not isinstance(record, dict) or record.get("tuning_version") != TUNING_VERSION:
            raise BenchmarkError(f"{path}: not a tuning record of version {TUNING_VERSION}")
        records.append(record)
    return records
