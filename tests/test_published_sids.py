"""Semantic IDs read from a published index (``semantic_ids.source: published:<variant>``):
mapped by raw item id, verified against SHA256SUMS, used as they are (collisions tie), refused
with a one-line error when the source, the variant or the file is wrong."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from benchmark.cache import Cache
from benchmark.config import build_config
from benchmark.data import ItemCatalog, Preprocessing, load_lcrec
from benchmark.errors import BenchmarkError, DataError
from benchmark.models.published_ids import PUBLISHED_WITH_INTERACTIONS, published_variants
from benchmark.models.semantic_ids import (
    SemanticIDConfig,
    build_semantic_ids,
    semantic_id_config,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "data" / "amazon-scientific"

# Raw ids whose natural order (2, 7, 10, 33, 41, 58) is not the order of the files below, and
# item 99, which has text but no interaction: it is not in the catalogue, only in the index.
ITEMS = ["33", "2", "58", "10", "7", "41"]
INDEX = {"99": [0, 0, 0, 0], "41": [1, 2, 3, 4], "2": [1, 2, 3, 5], "33": [1, 2, 9, 9],
         "10": [3, 0, 0, 0], "7": [1, 2, 3, 4], "58": [255, 1, 1, 1]}  # 41 and 7 share an ID


def tokens(codes: list[int]) -> list[str]:
    return [f"<{'abcd'[level]}_{code}>" for level, code in enumerate(codes)]


def write_index(folder: Path, variant: str, index: dict, *, listed: bool = True) -> Path:
    """``indexes/<variant>/Toy.index.json``, its sha256 appended to the folder's SHA256SUMS."""
    path = folder / "indexes" / variant / "Toy.index.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(index))
    if listed:
        with open(folder / "SHA256SUMS", "a") as fh:
            fh.write(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  "
                     f"indexes/{variant}/Toy.index.json\n")
    return path


def write_toy(folder: Path, n_users: int = 30) -> Path:
    """An LC-Rec dataset (users walk the items in a cycle) with two published indexes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    inter = {str(u): [ITEMS[(int(rng.integers(6)) + t) % 6] for t in range(6)]
             for u in range(n_users)}
    items = {i: {"title": f"Beaker {i}", "brand": "Acme", "categories": "Lab,Glass",
                 "description": ""} for i in [*ITEMS, "99"]}
    (folder / "Toy.inter.json").write_text(json.dumps(inter))
    (folder / "Toy.item.json").write_text(json.dumps(items))
    for variant in ("rqvae_native", "letter_native"):
        write_index(folder, variant, {i: tokens(c) for i, c in INDEX.items()})
    return folder / "Toy.inter.json"


@pytest.fixture
def toy(tmp_path) -> Path:
    return write_toy(tmp_path / "toy")


def catalog_of(inter: Path) -> ItemCatalog:
    return load_lcrec(inter, "toy", Preprocessing()).catalog


class NoCache(Cache):
    """Fails when asked for an artefact: published IDs are read on every use, never cached."""

    def __init__(self) -> None:
        super().__init__("unused")

    def get_or_build(self, *args, **kwargs):
        raise AssertionError("published semantic IDs went through the cache")


def published(catalog: ItemCatalog, variant: str = "rqvae_native", **kwargs):
    config = semantic_id_config({"source": f"published:{variant}"}, run_seed=0)
    return build_semantic_ids(catalog, config, cache=NoCache(), show_progress=False, **kwargs)


def test_codes_are_the_files_mapped_by_raw_id_without_a_disambiguation_column(toy):
    catalog = catalog_of(toy)
    assert catalog.item_ids == ["2", "7", "10", "33", "41", "58"]  # natural order of raw ids
    assert catalog.source_dir == toy.parent
    ids = published(catalog)
    assert ids.codes.tolist() == [INDEX[i] for i in catalog.item_ids]
    assert ids.codes.dtype == np.int64 and ids.level_sizes == [256] * 4
    assert not ids.disambiguated
    d = ids.diagnostics
    assert d["source"] == "published:rqvae_native" and d["uses_interactions"] is False
    assert d["index_file"] == "indexes/rqvae_native/Toy.index.json"
    assert d["index_sha256"] == hashlib.sha256(
        (toy.parent / d["index_file"]).read_bytes()).hexdigest()
    assert d["index_items_outside_catalog"] == 1  # item 99
    # six items, five distinct IDs: 7 and 41 share (1, 2, 3, 4)
    assert (d["n_items"], d["distinct_ids"], d["items_with_unique_id"]) == (6, 5, 4)
    assert d["items_with_unique_id_share"] == round(4 / 6, 4)
    assert d["collision_rate"] == round(2 / 6, 4) and d["max_collision_group"] == 2
    # (1) (3) (255); (1,2) (3,0) (255,1); (1,2,3) (1,2,9) (3,0,0) (255,1,1); + (1,2,3,5)
    assert d["distinct_prefixes"] == [3, 3, 4, 5]


def test_items_sharing_a_published_id_form_a_tie_group(toy):
    catalog = catalog_of(toy)
    groups = published(catalog).tie_groups()
    by_item = dict(zip(catalog.item_ids, groups.tolist()))
    assert by_item["7"] == by_item["41"]
    assert len(set(groups.tolist())) == 5


def test_the_run_seed_and_the_quantiser_settings_do_not_change_published_codes(toy):
    catalog = catalog_of(toy)
    base = published(catalog).codes
    for run_seed, overrides in ((3, {}), (0, {"seed": 7, "levels": 2, "codebook_size": 8})):
        config = semantic_id_config({"source": "published:rqvae_native", **overrides}, run_seed)
        ids = build_semantic_ids(catalog, config, cache=NoCache())
        np.testing.assert_array_equal(ids.codes, base)


def test_the_default_source_is_ours_and_leaves_the_cache_key_as_it_was(monkeypatch):
    config = SemanticIDConfig()
    assert config.source == "ours" and config.published_variant is None
    keys = []

    class KeyCache:
        def get_or_build(self, kind, key, build):
            keys.append(key)
            return None

    catalog = ItemCatalog(["a"], [{"title": "a"}], [()])
    build_semantic_ids(catalog, config, cache=KeyCache())
    # the key's config holds the settings that existed before `source`, so earlier keys match
    assert keys[0]["config"] == {
        "method": "rqvae", "levels": 3, "codebook_size": 32, "latent_dim": 32,
        "hidden_dims": [256, 128], "epochs": 200, "batch_size": 256, "lr": 1e-3,
        "commitment_weight": 0.25, "dead_code_threshold": 2.0, "kmeans_iters": 20,
        "rotation_trick": True, "text_model": config.text_model, "seed": 0}


@pytest.mark.parametrize("source", ["published:", "published", "theirs", "published:../x",
                                    "published:a/b", "Ours"])
def test_a_malformed_source_is_a_config_error(source):
    with pytest.raises(BenchmarkError, match=re.escape(
            f"config key 'source'={source!r}: must be 'ours' or 'published:<variant>'")):
        build_config(SemanticIDConfig, [("--set", {"source": source})])


def test_the_source_is_set_inside_the_semantic_ids_block_from_the_command_line():
    from benchmark.config import parse_overrides
    from benchmark.runner import resolve_config

    overrides = parse_overrides(["sasrec_sid.semantic_ids.source=published:rqvae_native"])
    _, config = resolve_config("sasrec_sid", "smoke", overrides)
    # the dotted key sets one key over the smoke profile's block, which stays
    assert config.semantic_ids["source"] == "published:rqvae_native"
    assert config.semantic_ids["codebook_size"] == 8
    with pytest.raises(BenchmarkError, match=r"^--set: config key 'semantic_ids'=.*'source'"):
        resolve_config("sasrec_sid", "smoke", parse_overrides(
            ["sasrec_sid.semantic_ids.source=nope"]))


def test_an_unknown_variant_names_the_available_ones(toy):
    with pytest.raises(BenchmarkError, match=r"published:rkmeans_zcr: no such index in .*indexes; "
                                             r"available: letter_native, rqvae_native$"):
        published(catalog_of(toy), "rkmeans_zcr")
    assert published_variants(toy.parent) == ["letter_native", "rqvae_native"]


def test_a_dataset_without_indexes_is_refused(tiny_atomic):
    from benchmark.data import load_atomic

    catalog = load_atomic(tiny_atomic, "tiny", Preprocessing()).catalog  # ml-100k's format
    assert published_variants(catalog.source_dir) == []
    with pytest.raises(BenchmarkError, match=r"the dataset ships no published semantic-ID "
                                             r"indexes \(no indexes/<variant>/\*.index.json in "):
        published(catalog)
    in_memory = ItemCatalog(["a"], [{"title": "a"}], [()])
    with pytest.raises(BenchmarkError, match=r"\(it was not read from a folder\)"):
        published(in_memory)


def test_a_changed_or_unlisted_index_is_refused(toy):
    catalog = catalog_of(toy)
    path = toy.parent / "indexes" / "rqvae_native" / "Toy.index.json"
    path.write_text(path.read_text().replace("<a_255>", "<a_254>"))
    with pytest.raises(DataError, match=r"Toy.index.json: sha256 is not [0-9a-f]{64} \(listed in "
                                        r".*SHA256SUMS\); the shipped copy was changed"):
        published(catalog)
    write_index(toy.parent, "rkmeans_native", {i: tokens(c) for i, c in INDEX.items()},
                listed=False)
    with pytest.raises(DataError, match=r"not listed in .*SHA256SUMS, so it cannot be verified"):
        published(catalog, "rkmeans_native")


@pytest.mark.parametrize(("change", "problem"), [
    (lambda ix: ix.pop("33"), r"1 of the catalogue's 6 items have no semantic ID \(first: '33'\)"),
    (lambda ix: ix.update({"10": tokens([3, 0, 0])}),
     r"item '10' has 3 tokens, item '99' has 4; every ID must have the same number of levels"),
    (lambda ix: ix.update({"10": ["<a_3>", "<c_0>", "<c_0>", "<d_0>"]}),
     r"item '10', token \[1\] is '<c_0>', not <b_N> with N in 0..255"),
    (lambda ix: ix.update({"10": tokens([256, 0, 0, 0])}),
     r"item '10', token \[0\] is '<a_256>', not <a_N> with N in 0..255"),
    (lambda ix: ix.update({"10": [3, 0, 0, 0]}), r"item '10', token \[0\] is 3, not <a_N>"),
    (lambda ix: ix.update({"10": "<a_3>"}), r"item '10': expected a non-empty list of tokens"),
])
def test_an_index_that_misses_an_item_or_has_bad_tokens_is_refused(toy, change, problem):
    index = {i: tokens(c) for i, c in INDEX.items()}
    change(index)
    write_index(toy.parent, "quasid_native", index)
    with pytest.raises(DataError, match=r"quasid_native/Toy.index.json: " + problem) as info:
        published(catalog_of(toy), "quasid_native")
    assert "\n" not in str(info.value)


def test_an_index_built_from_interactions_is_flagged_and_refused_under_cold_item(toy):
    catalog = catalog_of(toy)
    ids = published(catalog, "letter_native", protocol="loo")
    assert ids.diagnostics["uses_interactions"] is True
    with pytest.raises(BenchmarkError, match=r"published:letter_native was built from "
                                             r"interactions of an unknown split.*cold_item"):
        published(catalog, "letter_native", protocol="cold_item")
    published(catalog, "rqvae_native", protocol="cold_item")  # text only: allowed


def test_sasrec_sid_trains_on_a_published_index_through_the_cli(toy, tmp_path, capsys):
    from benchmark.cli import main

    code = main(["--methods", "sasrec_sid", "--dataset", str(toy), "--profile", "smoke",
                 "--protocol", "loo", "--cache-dir", str(tmp_path / "cache"),
                 "--results-dir", str(tmp_path / "results"), "--no-progress", "--no-report",
                 "--set", "sasrec_sid.semantic_ids.source=published:rqvae_native"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "results/Toy/loo/sasrec_sid/seed0.json").read_text())
    assert result["config"]["semantic_ids"]["source"] == "published:rqvae_native"
    diagnostics = result["diagnostics"]
    assert diagnostics["semantic_ids"]["source"] == "published:rqvae_native"
    assert diagnostics["level_sizes"] == [256] * 4
    # prefix composition over 4 published columns: the full-ID level has one row per distinct
    # ID, so 7 and 41 share every row
    assert diagnostics["rows_per_level"] == [3, 3, 4, 5]


def test_an_index_built_from_interactions_stops_a_cold_item_run_in_one_line(toy, tmp_path,
                                                                            capsys):
    from conftest import one_line

    code, err = one_line(["--methods", "sasrec_sid", "--dataset", str(toy), "--profile", "smoke",
                          "--protocol", "cold_item", "--cache-dir", str(tmp_path / "cache"),
                          "--results-dir", str(tmp_path / "results"), "--no-progress",
                          "--no-report", "--set",
                          "sasrec_sid.semantic_ids.source=published:letter_native"], capsys)
    assert code == 2 and "published:letter_native was built from interactions" in err


def test_composition_without_a_disambiguation_column_shares_every_row_of_a_collision():
    from adapters.sasrec_sid import composition_index

    codes = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 5]])
    for composition in ("prefix", "level"):
        index = composition_index(codes, composition, disambiguated=False)
        assert index[0].tolist() == index[1].tolist() and index[1, 3] != index[2, 3]
    # our own codes keep the per-item row of the disambiguation level
    assert composition_index(codes, "level")[:, 3].tolist() == [0, 1, 2]


# --------------------------------------------------------------------------- the shipped files

# PROVENANCE.md: distinct 4-token IDs and distinct first-3-token prefixes.
PROVENANCE_COUNTS = {"rqvae_native": (3790, 3350), "rkmeans_native": (3469, 3135),
                     "letter_native": (4317, 4262), "mql4grec": (4344, 64)}


def test_the_shipped_indexes_match_their_sums_and_provenance():
    from benchmark.datasets import load_dataset
    from benchmark.models.published_ids import read_published_index
    from benchmark.models.semantic_ids import collision_diagnostics

    catalog = load_dataset("amazon-scientific").catalog
    variants = published_variants(catalog.source_dir)
    assert variants == ["letter_native", "letter_zcr", "mql4grec", "quasid_native", "quasid_zcr",
                        "rkmeans_native", "rkmeans_zcr", "rkmeans_zcr_cf", "rqvae_native",
                        "rqvae_zcr"]
    assert PUBLISHED_WITH_INTERACTIONS < set(variants)
    sums = dict(reversed(line.split()) for line in (SHIPPED / "SHA256SUMS").read_text().split(
        "\n") if "indexes/" in line)
    assert len(sums) == 10
    provenance = (SHIPPED / "PROVENANCE.md").read_text()
    assert "505d5be3166f7c38ae67957daf8a3b7ec7092577" in provenance
    for variant in variants:
        codes, facts = read_published_index(catalog, variant)  # checks the sha256 itself
        assert facts["index_sha256"] == sums[facts["index_file"]]
        assert hashlib.sha256((SHIPPED / facts["index_file"]).read_bytes()).hexdigest() == sums[
            facts["index_file"]]
        d = collision_diagnostics(codes, 256)
        assert codes.shape == (4344, 4) and facts["index_items_outside_catalog"] == 0
        if variant in PROVENANCE_COUNTS:
            assert (d["distinct_ids"], d["distinct_prefixes"][2]) == PROVENANCE_COUNTS[variant]
        row = f"| `{variant}` | {d['distinct_ids']:,} | {d['items_with_unique_id']:,} | " + " | ".join(
            f"{n:,}" for n in d["distinct_prefixes"][:3]) + f" | {d['max_collision_group']} |"
        assert row in provenance, row
