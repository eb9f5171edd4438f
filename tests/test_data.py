"""Loaders on small files written here, preprocessing, and the stable order of equal timestamps."""

import gzip

import numpy as np
import pytest
from conftest import write_amazon, write_atomic

from benchmark.data import Preprocessing, load_amazon2023, load_atomic, load_ml100k
from benchmark.errors import DataError


def test_equal_timestamps_keep_source_file_order(tmp_path):
    # user 1: items 30, 10, 20 share a timestamp and must stay in file order; 40 comes first
    rows = [(1, 30, 5, 100), (1, 10, 5, 100), (2, 1, 5, 7), (1, 20, 5, 100), (1, 40, 5, 50),
            (2, 2, 5, 7), (2, 3, 5, 7)]
    ds = load_atomic(write_atomic(tmp_path, "t", rows), "t", Preprocessing())
    seqs = ds.sequences()
    ids = ds.catalog.item_ids
    assert [ids[i] for i in seqs[0]] == ["40", "30", "10", "20"]
    assert [ids[i] for i in seqs[1]] == ["1", "2", "3"]


def test_tied_targets_flag_users_whose_last_two_share_a_timestamp(tmp_path):
    # user 1: last two at 100 and 100 -> tied; user 2: 7, 8, 9 -> not; user 3: 5, 6, 6 -> tied
    rows = [(1, 30, 5, 100), (1, 10, 5, 100), (1, 40, 5, 50), (2, 1, 5, 7), (2, 2, 5, 8),
            (2, 3, 5, 9), (3, 1, 5, 5), (3, 2, 5, 6), (3, 3, 5, 6)]
    ds = load_atomic(write_atomic(tmp_path, "t", rows), "t", Preprocessing())
    assert ds.tied_targets().tolist() == [True, False, True]
    assert int(load_ml100k(Preprocessing()).tied_targets().sum()) == 415  # of 943


def test_ml100k_default_counts():
    ds = load_ml100k(Preprocessing())
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (943, 1682, 100_000)
    toy = ds.catalog.item_ids.index("1")
    assert ds.catalog.attributes[toy] == {"title": "Toy Story", "year": "1995",
                                          "genres": "Animation, Children's, Comedy"}
    assert ds.catalog.labels[toy] == ("Animation", "Children's", "Comedy")


def test_duplicates_threshold_and_iterative_k_core(tmp_path):
    rows = [(u, i, 5 if i != 4 else 1, 10 * i + u) for u in (1, 2, 3) for i in (1, 2, 3, 4)]
    rows += [(1, 1, 5, 11)]  # exact duplicate of (1, 1, 5, 11)
    rows += [(4, 9, 5, 1), (4, 1, 5, 2), (4, 2, 5, 3)]  # item 9 seen once
    path = write_atomic(tmp_path, "k", rows)
    ds = load_atomic(path, "k", Preprocessing(rating_threshold=3, k_core=2))
    assert ds.stats["after_duplicates"] == len(rows) - 1
    assert "4" not in ds.catalog.item_ids  # rated 1 everywhere: below the threshold
    assert "9" not in ds.catalog.item_ids  # one interaction: fails the 2-core
    assert ds.user_ids == ["1", "2", "3"]  # user 4 keeps 2 items after k-core, fewer than 3


def test_filtering_everything_away_is_a_clear_error(tmp_path):
    path = write_atomic(tmp_path, "e", [(1, 1, 5, 1), (1, 2, 5, 2), (1, 3, 5, 3)])
    with pytest.raises(DataError, match="empty after filtering"):
        load_atomic(path, "e", Preprocessing(k_core=5))


@pytest.mark.parametrize("gz", [False, True])
def test_amazon_2023_loader(tmp_path, gz):
    path = write_amazon(tmp_path, gz=gz)
    ds = load_amazon2023(path, None, "Video_Games", Preprocessing(min_user_interactions=1))
    assert ds.n_users == 8
    i = ds.catalog.item_ids.index("B001")
    attrs = ds.catalog.attributes[i]
    assert attrs["title"] == "Game 1" and attrs["store"] == "Studio 1"
    assert attrs["categories"] == "Video Games, Console"
    assert attrs["features"] == "feature 1a feature 1b"
    assert ds.catalog.labels[i] == ("Video Games", "Console")
    assert list(attrs)[0] == "title"


def test_malformed_amazon_line_names_path_and_line(tmp_path):
    path = tmp_path / "Bad.jsonl"
    path.write_text('{"user_id": "a", "parent_asin": "x", "timestamp": 1}\n{not json\n')
    with pytest.raises(DataError, match=r"Bad.jsonl:2: expected one JSON object per line"):
        load_amazon2023(path, None, "Bad", Preprocessing())
    path.write_text('{"user_id": "a", "timestamp": 1}\n')
    with pytest.raises(DataError, match=r"Bad.jsonl:1: review record lacks parent_asin"):
        load_amazon2023(path, None, "Bad", Preprocessing())
    gz = tmp_path / "Bad2.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write("[1, 2]\n")
    with pytest.raises(DataError, match=r"Bad2.jsonl.gz:1: expected a JSON object"):
        load_amazon2023(gz, None, "Bad2", Preprocessing())


def test_malformed_atomic_files(tmp_path):
    bad = tmp_path / "b.inter"
    bad.write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t2\n")
    with pytest.raises(DataError, match=r"b.inter:3: expected 3 tab-separated fields"):
        load_atomic(bad, "b", Preprocessing())
    bad.write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\tyesterday\n")
    with pytest.raises(DataError, match=r"b.inter:2: field timestamp:float expected a number"):
        load_atomic(bad, "b", Preprocessing())
    bad.write_text("user item time\n1 2 3\n")
    with pytest.raises(DataError, match=r"b.inter:1: expected a RecBole header"):
        load_atomic(bad, "b", Preprocessing())
    with pytest.raises(DataError, match="file not found"):
        load_atomic(tmp_path / "missing.inter", "m", Preprocessing())


def test_item_text_fields_from_atomic_item_file(tiny_atomic):
    ds = load_atomic(tiny_atomic, "tiny", Preprocessing())
    attrs = ds.catalog.attributes[0]
    assert list(attrs) == ["title", "year", "genres"]
    assert ds.catalog.text(0).startswith("title: Movie 1; year: 1991; genres: ")
    assert np.all([len(lbl) >= 1 for lbl in ds.catalog.labels])


# ----------------------------------------------------------------------------- bad input


def _inter(tmp_path, header: str, lines: list[str], name: str = "bad"):
    folder = tmp_path / name
    folder.mkdir()
    path = folder / f"{name}.inter"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


@pytest.mark.parametrize("value, what", [("soon", "'soon'"), ("", "''"), ("nan", "'nan'")])
def test_timestamps_must_be_numbers_and_present(tmp_path, value, what):
    # a token-typed timestamp column is read as numbers too; an empty one is not skipped
    path = _inter(tmp_path, "user_id:token\titem_id:token\ttimestamp:token",
                  ["1\t1\t10", f"1\t2\t{value}", "1\t3\t30"])
    with pytest.raises(DataError, match=rf"bad.inter:3: field timestamp:token expected a number, got {what}"):
        load_atomic(path, "bad", Preprocessing())


def test_a_file_without_timestamps_needs_a_declared_order(tmp_path):
    path = _inter(tmp_path, "user_id:token\titem_id:token", ["1\t3", "1\t1", "1\t2"])
    with pytest.raises(DataError, match=r"bad.inter:1: no `timestamp` column.*order: file"):
        load_atomic(path, "bad", Preprocessing())
    ds = load_atomic(path, "bad", Preprocessing(order="file"))
    assert [ds.catalog.item_ids[i] for i in ds.sequences()[0]] == ["3", "1", "2"]


def test_conflicting_duplicates_are_an_error_or_a_recorded_policy(tmp_path):
    rows = [(1, 1, 5, 10), (1, 2, 4, 20), (1, 2, 1, 20), (1, 3, 5, 30)]
    path = write_atomic(tmp_path, "dup", rows)
    with pytest.raises(DataError, match=r"1 interaction\(s\) repeat a \(user, item, timestamp\)"
                                        r".*user 1, item 2.*conflicting_duplicates: keep_first"):
        load_atomic(path, "dup", Preprocessing())
    ds = load_atomic(path, "dup", Preprocessing(conflicting_duplicates="keep_first"))
    assert len(ds.interactions) == 3 and ds.stats["conflicting_duplicates_dropped"] == 1


def test_a_byte_that_is_not_utf8_names_file_and_line(tmp_path):
    path = write_atomic(tmp_path, "enc", [(1, 1, 5, 10), (1, 2, 5, 20), (1, 3, 5, 30)],
                        items=[(1, "Movie", 1990, "Drama"), (2, "Film", 1991, "Drama"),
                               (3, "Three", 1992, "Drama")])
    item = path.with_suffix(".item")
    item.write_bytes(item.read_bytes().replace(b"Film", b"Caf\xe9"))
    with pytest.raises(DataError, match=r"enc.item:3: not UTF-8 \(byte 0xe9 at column 6\)"):
        load_atomic(path, "enc", Preprocessing())


@pytest.mark.parametrize("damage", ["truncated", "not_gzip"])
def test_damaged_gzip_is_a_clear_error(tmp_path, damage):
    path = write_amazon(tmp_path / "amz", gz=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"plain text\n" * 5)
    with pytest.raises(DataError, match=r"Video_Games.jsonl.gz: unreadable after line \d+ .*"
                                        r"damaged or not gzip"):
        load_amazon2023(path, None, "amz", Preprocessing())


# ----------------------------------------------------------------------------- LC-Rec format


def _write_lcrec(folder, gz: bool = False):
    import json as _json

    folder.mkdir(parents=True, exist_ok=True)
    inter = {"0": [0, 1, 2, 3], "1": [2, 0, 1], "2": [3, 2]}  # user 2 is too short: dropped
    items = {"0": {"title": "Caf&eacute; Thermometer.", "brand": "Acme",
                   "categories": "Root,Lab,Thermometers", "description": "A &lt;b&gt; probe"},
             "1": {"title": "Root />.", "brand": "", "categories": "Root,Lab", "description": ""},
             "2": {"title": "Glue, 25 mL,Boss />.", "brand": "Boss",
                   "categories": "Root,Tapes", "description": ""},
             "3": {"title": "Tape.", "brand": "Boss", "categories": "", "description": ""}}
    opener = gzip.open if gz else open
    suffix = ".gz" if gz else ""
    for name, data in (("Toy.inter.json", inter), ("Toy.item.json", items)):
        with opener(folder / f"{name}{suffix}", "wt", encoding="utf-8") as fh:
            _json.dump(data, fh)
    return folder / f"Toy.inter.json{suffix}"


@pytest.mark.parametrize("gz", [False, True])
def test_lcrec_format_keeps_list_order_and_cleans_text_by_rule(tmp_path, gz):
    from benchmark.data import load_lcrec

    ds = load_lcrec(_write_lcrec(tmp_path / "toy", gz), "toy", Preprocessing(),
                    text_fields=("title", "brand", "categories"))
    ids = ds.catalog.item_ids
    assert [[ids[i] for i in s] for s in ds.sequences()] == [["0", "1", "2", "3"], ["2", "0", "1"]]
    assert ds.stats["timestamps"] is False
    assert ds.tied_targets() is None  # no timestamps: the tied_target slice is n/a
    a = {iid: ds.catalog.attributes[i] for i, iid in enumerate(ids)}
    assert a["0"] == {"title": "Café Thermometer", "brand": "Acme",
                      "categories": "Lab, Thermometers", "description": "A <b> probe"}
    assert a["1"]["title"] == ""  # the placeholder is the root category: missing
    assert a["2"]["title"] == "Glue, 25 mL,Boss"  # scraped residue removed, the title kept
    assert a["3"]["title"] == "Tape"
    assert ds.catalog.labels[ids.index("0")] == ("Lab", "Thermometers")
    # the one-line text holds the configured fields only
    assert ds.catalog.text(ids.index("0")) == (
        "title: Café Thermometer; brand: Acme; categories: Lab, Thermometers")


def test_lcrec_sha256_sums_are_checked(tmp_path):
    from benchmark.data import load_lcrec

    inter = _write_lcrec(tmp_path / "toy")
    (inter.parent / "SHA256SUMS").write_text("0" * 64 + "  Toy.item.json\n")
    with pytest.raises(DataError, match=r"Toy.item.json: sha256 of the decompressed file is not 0+"):
        load_lcrec(inter, "toy", Preprocessing())


def test_shipped_amazon_scientific_matches_its_provenance():
    from benchmark.datasets import load_dataset

    ds = load_dataset("amazon-scientific")  # the loader verifies SHA256SUMS
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (8317, 4344, 58_492)
    titles = [a["title"] for a in ds.catalog.attributes]
    assert sum(t == "" for t in titles) == 24 and not any(t.endswith((".", "/>")) for t in titles)
    assert "description" not in ds.catalog.text(0) and ds.catalog.attributes[0]["description"]
