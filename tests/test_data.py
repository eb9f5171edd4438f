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
