"""Published semantic-ID indexes shipped beside a dataset: finding, verifying and mapping them.

A dataset folder may ship ``indexes/<variant>/<Name>.index.json`` in the LC-Rec / LETTER /
CollisionGenRec format, ``{"<raw item id>": ["<a_N>", "<b_N>", ...]}`` (the token's letter is
its level, ``N`` its code), each file listed in the folder's ``SHA256SUMS``.
``semantic_ids.source: published:<variant>`` reads one through
:func:`benchmark.models.semantic_ids.build_semantic_ids`; this module finds the file, checks its
digest and its tokens, and maps each item by its raw id onto the catalogue's item index.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data import ItemCatalog, verified_bytes
from benchmark.errors import BenchmarkError, DataError

INDEX_DIR = "indexes"
CODEBOOK_SIZE = 256  # codes per level in the format (CollisionGenRec, LC-Rec, LETTER)
# Built with collaborative signal from interactions of a split that is not published (LETTER's
# collaborative regulariser, collaborative fusion), which may hold our test targets and cold
# items: flagged in the diagnostics, exempt from the leakage test, refused under cold_item.
PUBLISHED_WITH_INTERACTIONS = frozenset({"letter_native", "letter_zcr", "rkmeans_zcr_cf"})

_TOKEN = re.compile(r"<([a-z])_(0|[1-9][0-9]*)>")


def published_variants(dataset_dir: Path | str | None) -> list[str]:
    """The published indexes a dataset folder ships (``indexes/<variant>/*.index.json``), sorted;
    [] when it ships none. A dataset's folder is ``dataset.catalog.source_dir``."""
    if dataset_dir is None:
        return []
    root = Path(dataset_dir) / INDEX_DIR
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if d.is_dir() and any(d.glob("*.index.json")))


def index_path(catalog: ItemCatalog, variant: str) -> Path:
    """The index file of ``variant`` beside the catalogue's dataset; a BenchmarkError naming the
    available variants when there is none."""
    folder = catalog.source_dir
    available = published_variants(folder)
    if not available:
        where = "it was not read from a folder" if folder is None else (
            f"no {INDEX_DIR}/<variant>/*.index.json in {folder}")
        raise BenchmarkError(f"semantic_ids.source: published:{variant}: the dataset ships no "
                             f"published semantic-ID indexes ({where}); use source: ours")
    if variant not in available:
        raise BenchmarkError(f"semantic_ids.source: published:{variant}: no such index in "
                             f"{folder / INDEX_DIR}; available: {', '.join(available)}")
    found = sorted((folder / INDEX_DIR / variant).glob("*.index.json"))
    if len(found) != 1:
        raise DataError(f"{folder / INDEX_DIR / variant}: expected one *.index.json, found "
                        f"{len(found)}")
    return found[0]


def read_published_index(catalog: ItemCatalog, variant: str) -> tuple[np.ndarray, dict[str, Any]]:
    """(codes, facts): ``codes[i]`` (int64, one column per level) is the published ID of catalogue
    item ``i``, found by its raw id ``catalog.item_ids[i]``; ``facts`` names the file, its sha256
    and its items outside the catalogue. The file's digest is checked against ``SHA256SUMS``
    first; a malformed file (not an object of equal-length token lists, a token not ``<x_N>``
    with its level's letter and N < 256) or one missing a catalogue item is a DataError."""
    path = index_path(catalog, variant)
    raw = verified_bytes(path, catalog.source_dir / "SHA256SUMS")
    index = _parse(path, raw)
    levels = None
    codes_of: dict[str, list[int]] = {}
    for item, tokens in index.items():
        if not isinstance(tokens, list) or not tokens:
            raise DataError(f"{path}: item {item!r}: expected a non-empty list of tokens, got "
                            f"{tokens!r:.40}")
        if levels is None:
            levels, first = len(tokens), item
        if len(tokens) != levels:
            raise DataError(f"{path}: item {item!r} has {len(tokens)} tokens, item {first!r} has "
                            f"{levels}; every ID must have the same number of levels")
        codes_of[item] = [_code(path, item, level, token) for level, token in enumerate(tokens)]
    missing = [item for item in catalog.item_ids if item not in codes_of]
    if missing:
        raise DataError(f"{path}: {len(missing):,} of the catalogue's {len(catalog):,} items have "
                        f"no semantic ID (first: {', '.join(map(repr, missing[:3]))}); a "
                        "published index must cover every item")
    codes = np.array([codes_of[item] for item in catalog.item_ids], dtype=np.int64)
    facts = {"index_file": f"{INDEX_DIR}/{variant}/{path.name}",
             "index_sha256": hashlib.sha256(raw).hexdigest(),
             "index_items_outside_catalog": len(codes_of) - len(catalog)}
    return codes.reshape(len(catalog), levels or 0), facts


def _parse(path: Path, raw: bytes) -> dict[str, Any]:
    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:  # `json` would keep the last of a repeated key silently
            if key in out:
                raise DataError(f"{path}: item {key!r} appears twice; each item is listed once")
            out[key] = value
        return out

    try:
        index = json.loads(raw.decode("utf-8").removeprefix("\ufeff"),
                           object_pairs_hook=unique_keys)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(index, dict):
        raise DataError(f"{path}: expected a JSON object (item id -> list of tokens)")
    return index


def _code(path: Path, item: str, level: int, token: Any) -> int:
    letter = chr(ord("a") + level)
    match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
    if match is None or match[1] != letter or int(match[2]) >= CODEBOOK_SIZE:
        raise DataError(f"{path}: item {item!r}, token [{level}] is {token!r:.40}, not "
                        f"<{letter}_N> with N in 0..{CODEBOOK_SIZE - 1}")
    return int(match[2])
