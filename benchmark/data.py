"""Datasets: loading, preprocessing, item text.

Four sources, one result (:class:`Dataset`):

- ``ml-100k``: MovieLens-100K as shipped inside the installed ``recbole`` wheel (offline);
- Amazon Reviews 2023 official JSONL / JSONL.GZ (``<Category>.jsonl`` + ``meta_<Category>.jsonl``);
- any RecBole atomic-file dataset (``<name>.inter`` and optional ``<name>.item``);
- the LC-Rec / LETTER JSON format (``<Name>.inter.json`` user -> ordered item list, and
  ``<Name>.item.json`` item -> text fields beside it, either optionally gzipped): ordered
  sequences without timestamps, e.g. the shipped ``amazon-scientific``.

Preprocessing, in this order: drop exact duplicate rows, resolve conflicting duplicates (the
same user, item and timestamp with different ratings: an error by default, or keep the first
row and count it), optional rating threshold, iterative k-core, drop users with fewer than
``min_user_interactions`` (leave-one-out needs 3), then order each user's interactions by
timestamp. Equal timestamps keep the order of the source file: the sort key is (user,
timestamp, source row), so the order is decided, not left to the sort algorithm. On ML-100K
this matters: 599 of 943 users have a tie among their last three.

Timestamps must be present and numeric in every row; a file without them is accepted only when
its dataset config declares the file order chronological (``preprocessing: {order: file}``).
Text files are read as UTF-8; a byte that is not UTF-8 is an error naming the file and line. A
leading UTF-8 byte-order mark (BOM) is accepted and removed, in every format: RecBole atomic
files, JSONL, JSON and ``SHA256SUMS``.

Malformed input is never read as data: each loader checks what it reads and stops at the first
bad value with a one-line :class:`~benchmark.errors.DataError` naming the file, the line (LC-Rec
JSON has no useful lines: the user or item key and the list position instead) and the field.

- Ids (user and item ids, in every format, item files included): an id is non-empty printable
  text (no control or invisible characters such as a tab, a newline or a BOM inside it) without
  leading or trailing whitespace that does not read as a missing value. Missing-value
  words are the strings pandas reads as missing, in any letter case (``NA``, ``N/A``, ``NaN``,
  ``null``, ``None``, ``<NA>``, ``#N/A``, ...; see ``_MISSING_IDS``). Such an id is an error,
  not a dropped row: dropping would change the data silently, and keeping it breaks every
  later step that reads ids back with pandas. In JSON an id is a string or an integer (an
  integer becomes its decimal string, ``7`` -> ``"7"``); ``null``, ``true``/``false``, a
  non-integer number, a list or an object is an error.
- Timestamps are finite numbers in every row (``NaN``, ``inf``, empty, a JSON ``null`` or
  ``true``/``false`` is an error); so are ratings where a row has one (a missing rating is
  allowed: an empty atomic field, an absent JSON key).
- Text fields (Amazon meta, LC-Rec items) are text, numbers or null (Amazon: or a list of
  those); a nested list or an object is an error, as is an Amazon ``categories`` that is not a
  list.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import importlib.util
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from benchmark.cache import stable_hash
from benchmark.errors import DataError


@dataclass(frozen=True)
class Preprocessing:
    drop_duplicates: bool = True
    rating_threshold: float | None = None  # keep interactions with rating >= threshold
    k_core: int = 0  # iterative: every user and item keeps >= k interactions (0 = off)
    min_user_interactions: int = 3  # leave-one-out needs train, valid and test items
    # Same (user, item, timestamp) with different ratings: "error", or keep the first row
    # (the count is recorded in the dataset stats).
    conflicting_duplicates: Literal["error", "keep_first"] = "error"
    # "timestamp": order by the timestamp column (it must be there); "file": the file order
    # is chronological (datasets shipped as ordered sequences, or files without timestamps).
    order: Literal["timestamp", "file"] = "timestamp"


@dataclass
class ItemCatalog:
    """Item text, aligned with item indices ``0 .. n_items-1``.

    ``attributes[i]`` is an ordered mapping field -> text (``title`` first) for item ``i``;
    ``labels[i]`` the item's categorical labels (MovieLens genres, Amazon categories), used by
    slices, semantic-coherence diagnostics and steering checks.
    """

    item_ids: list[str]
    attributes: list[dict[str, str]]
    labels: list[tuple[str, ...]]
    # Fields that make up the item's one-line text (None: every attribute); the other
    # attributes stay available to methods that read them (e.g. a long description).
    text_fields: tuple[str, ...] | None = None
    # The folder the dataset was read from, where files shipped beside it are found (published
    # semantic-ID indexes); None for a catalogue made in memory. Not in the fingerprint: where
    # the files lie changes no item text.
    source_dir: Path | None = None

    def __len__(self) -> int:
        return len(self.item_ids)

    def title(self, i: int) -> str:
        return self.attributes[i].get("title", "") or self.item_ids[i]

    def text(self, i: int) -> str:
        """One line of text per item: ``title: ...; year: ...; genres: ...``."""
        return "; ".join(f"{k}: {v}" for k, v in self.text_attributes(i).items())

    def text_attributes(self, i: int, fields: Sequence[str] | None = None) -> dict[str, str]:
        """Item ``i``'s non-empty attributes among ``fields`` (default: ``text_fields``, or every
        attribute where the dataset names none), in the order of ``fields``."""
        attrs = self.attributes[i]
        fields = fields if fields is not None else self.text_fields
        keys = attrs if fields is None else fields
        return {k: attrs[k] for k in keys if attrs.get(k)}

    def texts(self) -> list[str]:
        return [self.text(i) for i in range(len(self))]

    @property
    def has_text(self) -> bool:
        return any(a.get("title") for a in self.attributes)

    def fingerprint(self) -> str:
        parts = [self.item_ids, self.attributes, [list(x) for x in self.labels]]
        if self.text_fields is not None:  # only then, so older fingerprints stay valid
            parts.append(list(self.text_fields))
        return stable_hash(parts)


@dataclass
class Dataset:
    """Preprocessed interactions in chronological order per user, plus item text.

    ``interactions`` has integer columns ``user`` and ``item`` (indices) and ``timestamp``,
    sorted by (user, timestamp, source row).
    """

    name: str
    interactions: pd.DataFrame
    user_ids: list[str]
    catalog: ItemCatalog
    stats: dict[str, Any] = field(default_factory=dict)
    # Evaluation users (the dataset YAML's `eval_users`): None = every user, else a seeded
    # uniform sample of this size (benchmark.splits.eval_user_sample).
    eval_sample: int | None = None
    eval_seed: int = 0

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.catalog)

    def tied_targets(self) -> np.ndarray | None:
        """Per user: do the last two interactions (the leave-one-out validation and test
        targets) share a timestamp? Then the "next" item is the source file's order. None for
        a dataset without timestamps."""
        if not self.stats.get("timestamps", True):
            return None
        users = self.interactions["user"].to_numpy()
        times = self.interactions["timestamp"].to_numpy()
        ends = np.searchsorted(users, np.arange(self.n_users), side="right")
        return times[ends - 1] == times[ends - 2]

    def sequences(self) -> list[np.ndarray]:
        """Per-user chronological item-index arrays."""
        users = self.interactions["user"].to_numpy()
        items = self.interactions["item"].to_numpy()
        bounds = np.searchsorted(users, np.arange(self.n_users + 1))
        return [items[bounds[u] : bounds[u + 1]].astype(np.int64) for u in range(self.n_users)]


# --------------------------------------------------------------------------- preprocessing


def preprocess(
    raw: pd.DataFrame, item_text: dict[str, dict[str, str]], labels: dict[str, tuple[str, ...]],
    prep: Preprocessing, name: str, source: str,
) -> Dataset:
    """Filter raw (user_id, item_id, rating?, timestamp) rows and index them.

    Items with text but no interactions are dropped: the catalogue is the set of items that
    survive filtering (the cold protocol hides interactions, not items, so cold items stay).
    """
    df = raw.copy()
    df["source_row"] = np.arange(len(df))
    stats: dict[str, Any] = {"source": source, "raw_interactions": int(len(df))}
    if prep.drop_duplicates:
        cols = [c for c in ("user_id", "item_id", "rating", "timestamp") if c in df.columns]
        df = df.drop_duplicates(subset=cols, keep="first")
    stats["after_duplicates"] = int(len(df))
    conflicts = df.duplicated(subset=["user_id", "item_id", "timestamp"], keep="first")
    if conflicts.any():
        first = df[conflicts].iloc[0]
        if prep.conflicting_duplicates == "error":
            raise DataError(
                f"{source}: {int(conflicts.sum())} interaction(s) repeat a (user, item, "
                f"timestamp) with another rating (first: user {first['user_id']}, item "
                f"{first['item_id']}); fix the file or set `preprocessing: "
                "{conflicting_duplicates: keep_first}` in the dataset config")
        df = df[~conflicts]
    stats["conflicting_duplicates_dropped"] = int(conflicts.sum())
    if prep.rating_threshold is not None:
        if "rating" not in df.columns:
            raise DataError(f"{source}: rating_threshold is set but the data has no ratings")
        df = df[df["rating"] >= prep.rating_threshold]
    if prep.k_core > 0:
        df = _k_core(df, prep.k_core)
    if prep.min_user_interactions > 1:
        counts = df.groupby("user_id")["item_id"].transform("size")
        df = df[counts >= prep.min_user_interactions]
    if df.empty:
        raise DataError(
            f"{source}: the dataset is empty after filtering (rating_threshold="
            f"{prep.rating_threshold}, k_core={prep.k_core}, "
            f"min_user_interactions={prep.min_user_interactions})"
        )
    user_ids = sorted(df["user_id"].unique(), key=_natural_key)
    item_ids = sorted(df["item_id"].unique(), key=_natural_key)
    user_index = {u: i for i, u in enumerate(user_ids)}
    item_index = {it: i for i, it in enumerate(item_ids)}
    out = pd.DataFrame(
        {
            "user": df["user_id"].map(user_index).to_numpy(np.int64),
            "item": df["item_id"].map(item_index).to_numpy(np.int64),
            "timestamp": df["timestamp"].to_numpy(np.float64),
            "source_row": df["source_row"].to_numpy(np.int64),
        }
    )
    # Explicit tie rule: equal timestamps keep source-file order.
    out = out.sort_values(["user", "timestamp", "source_row"], kind="stable").reset_index(drop=True)
    catalog = ItemCatalog(
        item_ids=[str(i) for i in item_ids],
        attributes=[item_text.get(str(i), {}) for i in item_ids],
        labels=[labels.get(str(i), ()) for i in item_ids],
        source_dir=Path(source).parent,
    )
    stats.update(
        n_users=len(user_ids),
        n_items=len(item_ids),
        n_interactions=int(len(out)),
        density=float(len(out) / (len(user_ids) * len(item_ids))),
        timestamps=True,  # loaders of ordered files without timestamps say False
        preprocessing=prep.__dict__.copy(),
    )
    return Dataset(name, out, [str(u) for u in user_ids], catalog, stats)


def _natural_key(value: Any) -> tuple[int, Any]:
    """Sort numeric-looking ids numerically, others lexically (stable indices across runs)."""
    text = str(value)
    return (0, int(text)) if text.isdigit() else (1, text)


def _k_core(df: pd.DataFrame, k: int) -> pd.DataFrame:
    while True:
        user_counts = df.groupby("user_id")["item_id"].transform("size")
        item_counts = df.groupby("item_id")["user_id"].transform("size")
        keep = (user_counts >= k) & (item_counts >= k)
        if keep.all():
            return df
        df = df[keep]


# --------------------------------------------------------------------------- input validation

_BOM = "\ufeff"

# Strings that read as a missing value (pandas' default NA strings), compared in lower case.
_MISSING_IDS = frozenset(v.lower() for v in (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"))

_ID_SHAPE = ("an id is non-empty printable text without surrounding spaces (or a JSON integer), "
             "not a missing-value word such as NA, N/A, NaN, null, None")


def _show(value: Any, limit: int = 40) -> str:
    """``repr`` of a value on one line, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_kind(value: Any) -> str:
    """How a JSON value is named in an error: ``null``, ``true``, ``a list``, ``the number 1.5``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return f"a list {_show(value)}"
    if isinstance(value, dict):
        return f"an object {_show(value)}"
    if isinstance(value, float):
        return f"the number {value!r}"
    return _show(value)


def _id_problem(value: str) -> str | None:
    """Why ``value`` is not an id (see the module docstring), or None."""
    if not value.strip():
        return f"is empty ({value!r})" if value else "is empty"
    if value.lower() in _MISSING_IDS:
        return f"is {value!r}, which reads as a missing value"
    if value != value.strip():
        return f"{_show(value)} has leading or trailing whitespace"
    if not value.isprintable():
        char = next(c for c in value if not c.isprintable())
        return f"{_show(value)} holds the control or invisible character {char!r}"
    return None


def _first_bad_id(values: Any) -> tuple[str, str] | None:
    """(value, problem) of the first bad id among ``values`` (strings) in their order, or None.

    Checks the distinct values only (ids repeat: ML-100K has 2,625 distinct among 200,000), and
    first in bulk: letters and digits only (so non-empty, printable, no spaces), none of them a
    missing-value word, is the common case."""
    unique = pd.unique(np.asarray(values, dtype=object))
    if all(map(str.isalnum, unique)) and _MISSING_IDS.isdisjoint(map(str.lower, unique)):
        return None
    for value in unique:
        problem = _id_problem(value)
        if problem is not None:
            return value, problem
    return None


class _RepeatedKey(ValueError):
    """A JSON object names a key twice (``json`` would keep the last value silently)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for :func:`json.loads` that refuses a repeated key."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return obj


_ID_TYPES = frozenset((str, int))  # JSON values that are ids (bool is not: type(True) is bool)


def _json_id(value: Any) -> str | None:
    """A JSON id as text: a string as it is, an integer as its decimal string; None otherwise."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        return str(value)
    return None


def _finite(value: Any) -> float | None:
    """A JSON number (or numeric text) as a finite float; None for anything else."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------- RecBole atomic files


def _text_lines(path: Path, lines: Any) -> Any:
    """(line number, text) of each line, decoded as UTF-8 with an error naming the line; a
    byte-order mark at the start of the first line is removed."""
    first = True
    for lineno, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                            f"{exc.start + 1}); save the file as UTF-8") from None
        if first:
            text, first = text.removeprefix(_BOM), False
        yield lineno, text


def _read_atomic(path: Path, ids: Sequence[str] = ()) -> pd.DataFrame:
    """Read a RecBole atomic file (tab-separated, header ``name:type``), checking every row.

    The columns named in ``ids`` (those present) must hold ids (see the module docstring)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as fh:
        lines = _text_lines(path, fh)
        _, first = next(lines, (1, ""))
        header = first.rstrip("\r\n").split("\t")
        if not header or any(":" not in h for h in header):
            raise DataError(
                f"{path}:1: expected a RecBole header of tab-separated `field:type` columns, "
                f"got {header[:4]!r}"
            )
        names = [h.split(":", 1)[0] for h in header]
        types = [h.split(":", 1)[1] for h in header]
        # Timestamps are numbers whatever type the header gives them, and never empty.
        numeric = [t == "float" or n == "timestamp" for n, t in zip(names, types)]
        rows, blank = [], []  # blank: numbers of the (skipped) empty lines, to name a row's line
        for lineno, line in lines:
            line = line.rstrip("\r\n")
            if not line:
                blank.append(lineno)
                continue
            parts = line.split("\t")
            if len(parts) != len(names):
                raise DataError(
                    f"{path}:{lineno}: expected {len(names)} tab-separated fields "
                    f"({', '.join(header)}), got {len(parts)}"
                )
            for j, is_number in enumerate(numeric):
                if not is_number or (parts[j] == "" and names[j] != "timestamp"):
                    continue
                try:
                    value = float(parts[j])
                except ValueError:
                    value = float("nan")
                if not np.isfinite(value):
                    raise DataError(
                        f"{path}:{lineno}: field {header[j]} expected a number, "
                        f"got {parts[j]!r}"
                    )
            rows.append(parts)
    frame = pd.DataFrame(rows, columns=names, dtype=object)
    for column in ids:
        if column not in names:
            continue
        values = frame[column].to_numpy()
        bad = _first_bad_id(values)
        if bad is not None:
            lineno = int(np.flatnonzero(values == bad[0])[0]) + 2  # the header is line 1
            for skipped in blank:
                lineno += skipped <= lineno
            raise DataError(f"{path}:{lineno}: field {header[names.index(column)]}: the id "
                            f"{bad[1]}; {_ID_SHAPE}")
    for name, is_number in zip(names, numeric):
        if is_number:
            frame[name] = pd.to_numeric(frame[name])
    return frame


def load_atomic(path: Path | str, name: str, prep: Preprocessing) -> Dataset:
    """A RecBole atomic dataset: ``path`` is the ``.inter`` file or the folder holding it."""
    path = Path(path)
    inter = path if path.suffix == ".inter" else path / f"{path.name}.inter"
    if path.is_dir() and not inter.exists():
        found = sorted(path.glob("*.inter"))
        if len(found) != 1:
            raise DataError(f"{path}: expected exactly one .inter file, found {len(found)}")
        inter = found[0]
    frame = _read_atomic(inter, ids=("user_id", "item_id"))
    for column in ("user_id", "item_id"):
        if column not in frame.columns:
            raise DataError(f"{inter}:1: expected a `{column}:token` column")
    raw = pd.DataFrame({"user_id": frame["user_id"], "item_id": frame["item_id"]})
    if prep.order == "file":
        raw["timestamp"] = np.arange(len(frame), dtype=np.float64)
    elif "timestamp" in frame:
        raw["timestamp"] = frame["timestamp"]
    else:
        raise DataError(
            f"{inter}:1: no `timestamp` column, so the order of interactions is unknown; add "
            "one, or declare the file order chronological with `preprocessing: {order: file}` "
            "in a dataset config (configs/datasets/<name>.yaml)")
    if "rating" in frame:
        raw["rating"] = frame["rating"]
    item_file = inter.with_suffix(".item")
    text: dict[str, dict[str, str]] = {}
    labels: dict[str, tuple[str, ...]] = {}
    if item_file.exists():
        items = _read_atomic(item_file, ids=("item_id",))
        if "item_id" not in items.columns:
            raise DataError(f"{item_file}:1: expected an `item_id:token` column")
        text, labels = _atomic_item_text(items)
    dataset = preprocess(raw, text, labels, prep, name, str(inter))
    dataset.stats["timestamps"] = prep.order == "timestamp"
    return dataset


# Field names RecBole's converted datasets use, mapped to our attribute names.
_TITLE_FIELDS = ("movie_title", "title", "name")
_LABEL_FIELDS = ("class", "genre", "genres", "categories", "category")


def _atomic_item_text(items: pd.DataFrame) -> tuple[dict, dict]:
    title_col = next((c for c in _TITLE_FIELDS if c in items.columns), None)
    label_col = next((c for c in _LABEL_FIELDS if c in items.columns), None)
    text, labels = {}, {}
    for rec in items.to_dict("records"):
        iid = str(rec["item_id"])
        attrs: dict[str, str] = {}
        if title_col:
            attrs["title"] = str(rec[title_col]).strip()
        for col, value in rec.items():
            if col in ("item_id", title_col, label_col) or value in (None, ""):
                continue
            key = "year" if col == "release_year" else col
            attrs[key] = str(value).strip()
        if label_col:
            genre_list = tuple(str(rec[label_col]).split()) if rec[label_col] else ()
            labels[iid] = genre_list
            attrs["genres" if label_col in ("class", "genre", "genres") else "categories"] = (
                ", ".join(genre_list)
            )
        text[iid] = attrs
    return text, labels


def recbole_ml100k_dir() -> Path:
    """Locate the ML-100K copy inside the installed ``recbole`` package."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the default dataset ml-100k ships inside `recbole`; pip install recbole")
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
    if not (path / "ml-100k.inter").exists():
        raise DataError(f"{path}: ml-100k.inter not found in the installed recbole package")
    return path


def load_ml100k(prep: Preprocessing) -> Dataset:
    return load_atomic(recbole_ml100k_dir() / "ml-100k.inter", "ml-100k", prep)


# --------------------------------------------------------------------------- Amazon Reviews 2023


def _iter_jsonl(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    lineno = 0
    try:
        with opener(path, "rb") as fh:
            for lineno, line in _text_lines(path, fh):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line, object_pairs_hook=_unique_keys)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: expected one JSON object per line "
                                    f"({exc.msg})") from None
                except _RepeatedKey as exc:
                    raise DataError(f"{path}:{lineno}: field {_show(exc.args[0])} appears twice "
                                    "in one object") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}:{lineno}: expected a JSON object, got "
                                    f"{type(record).__name__}")
                yield lineno, record
    except (gzip.BadGzipFile, EOFError, OSError) as exc:  # not gzip, or cut short
        raise DataError(f"{path}: unreadable after line {lineno} ({type(exc).__name__}: {exc}); "
                        "the file is damaged or not gzip: download it again") from None


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(_as_text(v) for v in value if v)
    return str(value).strip()


def _meta_text(value: Any, where: str, name: str) -> str:
    """An Amazon meta text field: text, a number, null, or a list of those (joined by spaces)."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, (list, dict)):
            raise DataError(f"{where}: field {name}: expected text or a list of texts, got "
                            f"{_json_kind(value)}")
    return _as_text(value)


def _review_id(rec: dict, key: str, where: str) -> str:
    text = _json_id(rec[key])
    if text is None:
        raise DataError(f"{where}: field {key}: expected an id (a string or an integer), got "
                        f"{_json_kind(rec[key])}")
    return text


def _check_ids(path: Path, linenos: list[int], field_values: dict[str, list[str]]) -> None:
    """The id rules on JSONL ids already read as text, naming the line of the first bad one."""
    for key, values in field_values.items():
        array = np.asarray(values, dtype=object)
        bad = _first_bad_id(array)
        if bad is not None:
            row = int(np.flatnonzero(array == bad[0])[0])
            raise DataError(f"{path}:{linenos[row]}: field {key}: the id {bad[1]}; {_ID_SHAPE}")


def load_amazon2023(reviews: Path | str, meta: Path | str | None, name: str, prep: Preprocessing,
                    max_chars: int = 512) -> Dataset:
    """Amazon Reviews 2023: ``reviews`` (user_id, parent_asin, rating, timestamp) + ``meta_`` file.

    When ``meta`` is None it is looked up beside ``reviews`` as ``meta_<same name>``. Long text
    fields (description, features) are cut to ``max_chars`` characters.
    """
    reviews = Path(reviews)
    if meta is None:
        meta = reviews.with_name("meta_" + reviews.name)
    meta = Path(meta)
    users, asins, ratings, times, linenos = [], [], [], [], []
    for lineno, rec in _iter_jsonl(reviews):
        missing = [k for k in ("user_id", "parent_asin", "timestamp") if k not in rec]
        if missing:
            raise DataError(f"{reviews}:{lineno}: review record lacks {', '.join(missing)}")
        where = f"{reviews}:{lineno}"
        ts = _finite(rec["timestamp"])
        if ts is None:
            raise DataError(f"{where}: field timestamp: expected a finite number, got "
                            f"{_json_kind(rec['timestamp'])}")
        if "rating" in rec:
            rating = _finite(rec["rating"])
            if rating is None:
                raise DataError(f"{where}: field rating: expected a finite number, got "
                                f"{_json_kind(rec['rating'])}")
        else:
            rating = float("nan")  # no rating: kept, and below any rating_threshold
        users.append(_review_id(rec, "user_id", where))
        asins.append(_review_id(rec, "parent_asin", where))
        ratings.append(rating)
        times.append(ts)
        linenos.append(lineno)
    _check_ids(reviews, linenos, {"user_id": users, "parent_asin": asins})
    raw = pd.DataFrame({"user_id": users, "item_id": asins, "rating": ratings,
                        "timestamp": times})
    text, labels = {}, {}
    if meta.exists():
        meta_asins, meta_lines = [], []
        for lineno, rec in _iter_jsonl(meta):
            if "parent_asin" not in rec:
                raise DataError(f"{meta}:{lineno}: meta record lacks parent_asin")
            where = f"{meta}:{lineno}"
            asin = _review_id(rec, "parent_asin", where)
            categories = rec.get("categories")
            if categories is None:
                categories = []
            if not isinstance(categories, list) or any(isinstance(c, (list, dict))
                                                       for c in categories):
                raise DataError(f"{where}: field categories: expected a list of texts, got "
                                f"{_json_kind(categories)}")
            cats = tuple(str(c) for c in categories if c)
            text[asin] = {
                "title": _meta_text(rec.get("title"), where, "title")[:max_chars],
                "store": _meta_text(rec.get("store"), where, "store")[:max_chars],
                "categories": ", ".join(cats),
                "features": _meta_text(rec.get("features"), where, "features")[:max_chars],
                "description": _meta_text(rec.get("description"), where,
                                          "description")[:max_chars],
            }
            labels[asin] = cats
            meta_asins.append(asin)
            meta_lines.append(lineno)
        _check_ids(meta, meta_lines, {"parent_asin": meta_asins})
    return preprocess(raw, text, labels, prep, name, str(reviews))


# --------------------------------------------------------------------------- LC-Rec / LETTER JSON

_PLACEHOLDER_SUFFIX = " />."


def clean_lcrec_title(title: str, placeholders: tuple[str, ...] = ()) -> str:
    """A title of the LC-Rec pipeline, cleaned by a fixed rule.

    HTML entities are decoded; the ``.`` that the pipeline appended to every title is removed;
    a scraped ``" />."`` ending is removed with it, and what remains is treated as missing
    (``""``) when it is a placeholder (the category name the scraper found instead of a title).
    """
    text = html.unescape(title).strip()
    if text.endswith(_PLACEHOLDER_SUFFIX):
        text = text[: -len(_PLACEHOLDER_SUFFIX)].strip()
    elif text.endswith("."):
        text = text[:-1].strip()
    return "" if text in placeholders else text


def _read_json(path: Path) -> Any:
    """(parsed JSON, the decompressed bytes); a leading byte-order mark is removed, and a key
    repeated within one object is an error (``json`` would keep the last value silently)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
        text = raw.decode("utf-8").removeprefix(_BOM)
        return json.loads(text, object_pairs_hook=_unique_keys), raw
    except _RepeatedKey as exc:
        raise DataError(f"{path}: key {_show(exc.args[0])} appears twice in one object; each "
                        "user and item is listed once") from None
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        raise DataError(f"{path}: unreadable ({type(exc).__name__}: {exc}); the file is damaged "
                        "or not gzip") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 at byte {exc.start}; save the file as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def _read_sha256sums(path: Path) -> dict[str, str]:
    """``SHA256SUMS`` (``<digest>  <name>`` per line) as name -> digest; {} without the file."""
    if not path.is_file():
        return {}
    sums = {}
    for lineno, line in _text_lines(path, path.read_bytes().splitlines()):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DataError(f"{path}:{lineno}: expected `<sha256>  <file name>`, got "
                            f"{len(parts)} fields")
        sums[parts[1].removeprefix("*")] = parts[0]
    return sums


def verified_bytes(path: Path, sums: Path) -> bytes:
    """The bytes of ``path``, checked against its digest in ``sums`` (a ``SHA256SUMS`` file naming
    files relative to its own folder): a DataError when the file is missing, not listed or
    changed, so a shipped input is never used unverified."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    name = path.relative_to(sums.parent).as_posix()
    expected = _read_sha256sums(sums).get(name)
    if expected is None:
        raise DataError(f"{path}: not listed in {sums}, so it cannot be verified; add its "
                        f"`sha256sum` line (`<sha256>  {name}`)")
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != expected:
        raise DataError(f"{path}: sha256 is not {expected} (listed in {sums}); the shipped copy "
                        "was changed or damaged: restore it from git")
    return raw


def load_lcrec(inter: Path | str, name: str, prep: Preprocessing, *,
               text_fields: tuple[str, ...] | None = None, max_chars: int = 512) -> Dataset:
    """The LC-Rec / LETTER format: ``<Name>.inter.json[.gz]`` and ``<Name>.item.json[.gz]``.

    A user's list is their interactions in chronological order (the format has no timestamps;
    the position is the time). Item text: ``title`` (cleaned by :func:`clean_lcrec_title`),
    ``brand``, ``categories`` (the comma-joined path without the root category that every item
    shares; the path's levels are the item's labels) and ``description`` (HTML entities decoded,
    cut to ``max_chars``). A ``SHA256SUMS`` file beside the data (as shipped with
    ``amazon-scientific``) lists the digests of the decompressed files; they are checked.
    """
    inter = Path(inter)
    stem = inter.name.removesuffix(".gz").removesuffix(".inter.json")
    gz = ".gz" if inter.name.endswith(".gz") else ""
    item_path = inter.with_name(f"{stem}.item.json{gz}")
    for path in (inter, item_path):
        if not path.is_file():
            raise DataError(f"{path}: file not found (the LC-Rec format needs "
                            f"{stem}.inter.json and {stem}.item.json side by side)")
    sequences, inter_raw = _read_json(inter)
    items, item_raw = _read_json(item_path)
    sha256 = _read_sha256sums(inter.with_name("SHA256SUMS"))
    for path, raw in ((inter, inter_raw), (item_path, item_raw)):
        expected = sha256.get(path.name.removesuffix(".gz"))
        if expected and hashlib.sha256(raw).hexdigest() != expected:
            raise DataError(f"{path}: sha256 of the decompressed file is not {expected}; the "
                            "shipped copy was changed or damaged: restore it from git")
    if not isinstance(sequences, dict) or not isinstance(items, dict):
        raise DataError(f"{inter}: expected JSON objects (user -> item list, item -> fields)")
    for keys, path, what in ((sequences, inter, "user"), (items, item_path, "item")):
        bad = _first_bad_id(list(keys))
        if bad is not None:
            raise DataError(f"{path}: {what} key {_show(bad[0])}: the {what} id {bad[1]}; "
                            f"{_ID_SHAPE}")
    users, item_ids, times = [], [], []
    for user, seq in sequences.items():
        if not isinstance(seq, list):
            raise DataError(f"{inter}: user {_show(user)}: expected a list of item ids, got "
                            f"{_json_kind(seq)}")
        if not _ID_TYPES.issuperset(map(type, seq)):
            pos = next(i for i, item in enumerate(seq) if _json_id(item) is None)
            raise DataError(f"{inter}: user {_show(user)}, item [{pos}] (0-based): expected an "
                            f"item id (a string or an integer), got {_json_kind(seq[pos])}")
        ids = list(map(str, seq))
        users.extend([user] * len(ids))
        item_ids.extend(ids)
        times.extend(range(len(ids)))
    bad = _first_bad_id(item_ids)
    if bad is not None:
        for user, seq in sequences.items():  # name the first place it occurs
            ids = [_json_id(item) for item in seq]
            if bad[0] in ids:
                raise DataError(f"{inter}: user {_show(user)}, item [{ids.index(bad[0])}] "
                                f"(0-based): the item id {bad[1]}; {_ID_SHAPE}")
    raw = pd.DataFrame({"user_id": users, "item_id": item_ids,
                        "timestamp": np.asarray(times, dtype=np.float64)})
    text: dict[str, dict[str, str]] = {}
    labels: dict[str, tuple[str, ...]] = {}
    for iid, fields in items.items():
        if not isinstance(fields, dict):
            raise DataError(f"{item_path}: item {_show(iid)}: expected an object of text fields, "
                            f"got {_json_kind(fields)}")
        for key in ("title", "brand", "categories", "description"):
            value = fields.get(key)
            if isinstance(value, (list, dict, bool)):
                raise DataError(f"{item_path}: item {_show(iid)}, field {key}: expected text, got "
                                f"{_json_kind(value)}")
        path = [c.strip() for c in html.unescape(str(fields.get("categories") or "")).split(",")
                if c.strip()]
        root = path[:1]
        levels = tuple(path[1:])
        text[iid] = {
            "title": clean_lcrec_title(str(fields.get("title") or ""), tuple(root)),
            "brand": html.unescape(str(fields.get("brand") or "")).strip(),
            "categories": ", ".join(levels),
            "description": html.unescape(str(fields.get("description") or "")).strip()[:max_chars],
        }
        labels[iid] = levels
    dataset = preprocess(raw, text, labels, prep, name, str(inter))
    dataset.catalog.text_fields = text_fields
    dataset.stats["timestamps"] = False
    return dataset
