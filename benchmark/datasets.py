"""A dataset by config name (``configs/datasets/<name>.yaml``) or by path, and its fingerprint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from benchmark.cache import stable_hash
from benchmark.config import build_config, require_at_least
from benchmark.data import (
    Dataset,
    Preprocessing,
    load_amazon2023,
    load_atomic,
    load_lcrec,
    load_ml100k,
)
from benchmark.errors import BenchmarkError
from benchmark.registry import REPO_ROOT
from benchmark.settings import DATASET_CONFIG_DIR


@dataclass(frozen=True)
class EvalUsers:
    """A dataset YAML's ``eval_users``: ``all`` or ``{sample: N, seed: S}``.

    The users whose validation and test cases are evaluated, the same for every method and both
    protocols (paired tests need the same users). A sample is uniform
    (:func:`benchmark.splits.eval_user_sample`), so its figures estimate those over every user;
    the shipped datasets use every user. Changing it changes the split hash, so every run is
    recomputed.
    """

    sample: int | None = None  # None: every user
    seed: int = 0

    def __post_init__(self) -> None:
        require_at_least("eval_users.sample", self.sample, 1, optional=True)
        require_at_least("eval_users.seed", self.seed, 0)


def _eval_users(value, where: str) -> EvalUsers:
    if value is None or value == "all":
        return EvalUsers()
    if not isinstance(value, dict):
        raise BenchmarkError(f"{where}: eval_users must be `all` or {{sample: N, seed: S}}, "
                             f"got {value!r}")
    return build_config(EvalUsers, [(f"{where} eval_users", value)])


@lru_cache(maxsize=8)
def load_dataset(name_or_path: str, meta: str | None = None, max_users: int | None = None) -> Dataset:
    """A dataset by config name (``configs/datasets/<name>.yaml``) or by path.

    A path ending in ``.inter.json``/``.inter.json.gz`` is the LC-Rec format (item file beside
    it; the name is the file stem); ``.jsonl``/``.jsonl.gz`` is Amazon Reviews 2023 (meta file
    beside it or ``meta``); a ``.inter`` file or a folder holding one is a RecBole atomic
    dataset. Relative paths in a dataset YAML are relative to the repository.
    """
    cfg_path = DATASET_CONFIG_DIR / f"{name_or_path}.yaml"
    if cfg_path.exists():
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
        loader = cfg.pop("loader", None)
        prep = build_config(Preprocessing, [(str(cfg_path), cfg.pop("preprocessing", {}) or {})])
        path = cfg.pop("path", None)
        path = None if path is None else REPO_ROOT / path
        meta = cfg.pop("meta", meta)
        text_fields = cfg.pop("text_fields", None)
        description_chars = cfg.pop("description_chars", None)
        if description_chars is not None and (not isinstance(description_chars, int)
                                              or description_chars < 1):
            raise BenchmarkError(f"{cfg_path}: description_chars must be an integer >= 1, "
                                 f"got {description_chars!r}")
        if description_chars is not None and loader != "lcrec":
            raise BenchmarkError(f"{cfg_path}: description_chars applies to the lcrec loader only")
        eval_users = _eval_users(cfg.pop("eval_users", None), str(cfg_path))
        if cfg:
            raise BenchmarkError(f"{cfg_path}: unknown keys {sorted(cfg)}")
        if loader == "recbole_ml100k":
            dataset = load_ml100k(prep)
        elif loader == "atomic":
            dataset = load_atomic(path, name_or_path, prep)
        elif loader == "amazon2023":
            dataset = load_amazon2023(path, meta, name_or_path, prep)
        elif loader == "lcrec":
            dataset = load_lcrec(path, name_or_path, prep,
                                 text_fields=tuple(text_fields) if text_fields else None,
                                 max_chars=description_chars or 512)
        else:
            raise BenchmarkError(f"{cfg_path}: unknown loader {loader!r}")
        if eval_users.sample is not None:
            dataset = dataclasses.replace(dataset, eval_sample=eval_users.sample,
                                          eval_seed=eval_users.seed)
    else:
        path = Path(name_or_path)
        if not path.exists():
            known = ", ".join(p.stem for p in sorted(DATASET_CONFIG_DIR.glob("*.yaml")))
            raise BenchmarkError(
                f"dataset {name_or_path!r} is neither a known name ({known}) nor an existing path")
        prep = Preprocessing()
        if path.name.endswith((".inter.json", ".inter.json.gz")):
            stem = path.name.removesuffix(".gz").removesuffix(".inter.json")
            dataset = load_lcrec(path, stem, prep)
        elif path.name.endswith((".jsonl", ".jsonl.gz")):
            stem = path.name.removesuffix(".gz").removesuffix(".jsonl")
            dataset = load_amazon2023(path, meta, stem, prep)
        else:
            dataset = load_atomic(path, path.stem, prep)
    if max_users is not None and max_users < dataset.n_users:
        dataset = _first_users(dataset, max_users)
    return dataset


def _first_users(dataset: Dataset, n: int) -> Dataset:
    """Keep the first ``n`` users (smoke profile); the catalogue is kept whole."""
    inter = dataset.interactions[dataset.interactions["user"] < n].reset_index(drop=True)
    stats = dict(dataset.stats, n_users=n, n_interactions=int(len(inter)), subsampled_users=n)
    return dataclasses.replace(dataset, interactions=inter, user_ids=dataset.user_ids[:n],
                               stats=stats)


def dataset_fingerprint(dataset: Dataset) -> str:
    """Hash of the preprocessed interactions and the catalogue: part of every run's cache key."""
    inter = dataset.interactions
    return stable_hash([dataset.name, inter["user"].to_numpy(), inter["item"].to_numpy(),
                        dataset.catalog.fingerprint()])
