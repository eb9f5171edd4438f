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
Text files are read as UTF-8; a byte that is not UTF-8 is an error naming the file and line.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import importlib.util
import json
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


# --------------------------------------------------------------------------- RecBole atomic files


def _text_lines(path: Path, lines: Any) -> Any:
    """(line number, text) of each line, decoded as UTF-8 with an error naming the line."""
    for lineno, raw in enumerate(lines, start=1):
        try:
            yield lineno, raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                            f"{exc.start + 1}); save the file as UTF-8") from None


def _read_atomic(path: Path) -> pd.DataFrame:
    """Read a RecBole atomic file (tab-separated, header ``name:type``), checking every row."""
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
        rows = []
        for lineno, line in lines:
            line = line.rstrip("\r\n")
            if not line:
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
    frame = _read_atomic(inter)
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
        items = _read_atomic(item_file)
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
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: expected one JSON object per line "
                                    f"({exc.msg})") from None
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
    rows = []
    for lineno, rec in _iter_jsonl(reviews):
        missing = [k for k in ("user_id", "parent_asin", "timestamp") if k not in rec]
        if missing:
            raise DataError(f"{reviews}:{lineno}: review record lacks {', '.join(missing)}")
        try:
            ts = float(rec["timestamp"])
            rating = float(rec.get("rating", "nan"))
        except (TypeError, ValueError):
            raise DataError(f"{reviews}:{lineno}: timestamp and rating must be numbers") from None
        rows.append((str(rec["user_id"]), str(rec["parent_asin"]), rating, ts))
    raw = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    text, labels = {}, {}
    if meta.exists():
        for lineno, rec in _iter_jsonl(meta):
            if "parent_asin" not in rec:
                raise DataError(f"{meta}:{lineno}: meta record lacks parent_asin")
            asin = str(rec["parent_asin"])
            cats = tuple(str(c) for c in (rec.get("categories") or []) if c)
            text[asin] = {
                "title": _as_text(rec.get("title"))[:max_chars],
                "store": _as_text(rec.get("store"))[:max_chars],
                "categories": ", ".join(cats),
                "features": _as_text(rec.get("features"))[:max_chars],
                "description": _as_text(rec.get("description"))[:max_chars],
            }
            labels[asin] = cats
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
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
        return json.loads(raw.decode("utf-8")), raw
    except (gzip.BadGzipFile, EOFError, OSError) as exc:
        raise DataError(f"{path}: unreadable ({type(exc).__name__}: {exc}); the file is damaged "
                        "or not gzip") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 at byte {exc.start}; save the file as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


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
    sums = inter.with_name("SHA256SUMS")
    sha256 = dict(reversed(line.split()) for line in sums.read_text().splitlines()
                  if line.strip()) if sums.is_file() else {}
    for path, raw in ((inter, inter_raw), (item_path, item_raw)):
        expected = sha256.get(path.name.removesuffix(".gz"))
        if expected and hashlib.sha256(raw).hexdigest() != expected:
            raise DataError(f"{path}: sha256 of the decompressed file is not {expected}; the "
                            "shipped copy was changed or damaged: restore it from git")
    if not isinstance(sequences, dict) or not isinstance(items, dict):
        raise DataError(f"{inter}: expected JSON objects (user -> item list, item -> fields)")
    rows = []
    for user, seq in sequences.items():
        if not isinstance(seq, list):
            raise DataError(f"{inter}: user {user!r}: expected a list of item ids")
        rows.extend((str(user), str(item), float(t)) for t, item in enumerate(seq))
    raw = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    text: dict[str, dict[str, str]] = {}
    labels: dict[str, tuple[str, ...]] = {}
    for iid, fields in items.items():
        if not isinstance(fields, dict):
            raise DataError(f"{item_path}: item {iid!r}: expected an object of text fields")
        path = [c.strip() for c in html.unescape(str(fields.get("categories") or "")).split(",")
                if c.strip()]
        root = path[:1]
        levels = tuple(path[1:])
        text[str(iid)] = {
            "title": clean_lcrec_title(str(fields.get("title") or ""), tuple(root)),
            "brand": html.unescape(str(fields.get("brand") or "")).strip(),
            "categories": ", ".join(levels),
            "description": html.unescape(str(fields.get("description") or "")).strip()[:max_chars],
        }
        labels[str(iid)] = levels
    dataset = preprocess(raw, text, labels, prep, name, str(inter))
    dataset.catalog.text_fields = text_fields
    dataset.stats["timestamps"] = False
    return dataset
