"""Malformed input is never read as data: every loader stops at the first bad value with a
one-line DataError naming the file, the line (LC-Rec JSON: the user or item key and position)
and the field. The rules are in benchmark/data.py's module docstring; each case here is a file
written by the test."""

import gzip
import json

import pytest
from conftest import write_amazon, write_atomic

from benchmark.data import Preprocessing, load_amazon2023, load_atomic, load_lcrec
from benchmark.errors import DataError

MISSING_WORDS = ["NA", "null", "None", "nan", "NaN", "N/A", "NULL", "<NA>", "#N/A", "none"]
ID_SHAPE = "an id is non-empty printable text without surrounding spaces"
PREP = Preprocessing(min_user_interactions=1)


def error_of(load, *args, **kwargs) -> str:
    """The DataError message of ``load(*args)``, checked to be one line."""
    with pytest.raises(DataError) as info:
        load(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    return message


# ----------------------------------------------------------------------------- RecBole atomic

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def atomic(tmp_path, lines: list[str], header: str = HEADER, name: str = "a"):
    path = tmp_path / f"{name}.inter"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


GOOD = ["1\t1\t5\t10", "1\t2\t5\t20", "2\t1\t5\t30"]


@pytest.mark.parametrize("column, line, field", [
    (0, "\t3\t5\t40", "user_id:token"), (1, "2\t\t5\t40", "item_id:token")])
def test_an_empty_atomic_id_is_an_error_naming_file_line_and_field(tmp_path, column, line, field):
    message = error_of(load_atomic, atomic(tmp_path, [*GOOD, line]), "a", PREP)
    assert message.startswith(f"{tmp_path / 'a.inter'}:5: field {field}: the id is empty")
    assert ID_SHAPE in message


@pytest.mark.parametrize("word", MISSING_WORDS)
@pytest.mark.parametrize("field", ["user_id", "item_id"])
def test_an_atomic_id_that_reads_as_missing_is_an_error(tmp_path, word, field):
    line = f"{word}\t3\t5\t40" if field == "user_id" else f"2\t{word}\t5\t40"
    message = error_of(load_atomic, atomic(tmp_path, [*GOOD, line, "2\t4\t5\t50"]), "a", PREP)
    assert message.startswith(f"{tmp_path / 'a.inter'}:5: field {field}:token: the id is "
                              f"{word!r}, which reads as a missing value")


@pytest.mark.parametrize("value, problem", [(" ", "is empty (' ')"),
                                            (" 1", "' 1' has leading or trailing whitespace"),
                                            ("1 ", "'1 ' has leading or trailing whitespace")])
def test_an_atomic_id_of_spaces_or_with_surrounding_spaces_is_an_error(tmp_path, value, problem):
    # "1 " and "1" would silently be two users
    message = error_of(load_atomic, atomic(tmp_path, [*GOOD, f"{value}\t2\t5\t40"]), "a", PREP)
    assert message.startswith(f"{tmp_path / 'a.inter'}:5: field user_id:token: the id {problem}")


def test_an_atomic_id_with_an_invisible_character_is_an_error(tmp_path):
    # e.g. two files concatenated: the second one's BOM is inside an id, not at the file start
    lines = [*GOOD, "\ufeff2\t2\t5\t40"]
    message = error_of(load_atomic, atomic(tmp_path, lines), "a", PREP)
    assert message.startswith(f"{tmp_path / 'a.inter'}:5: field user_id:token: the id "
                              r"'\ufeff2' holds the control or invisible character '\ufeff'")


def test_the_first_bad_atomic_row_is_the_one_named(tmp_path):
    lines = [*GOOD, "2\t3\t5\t40", "NA\t1\t5\t50", "\t1\t5\t60", "NA\t2\t5\t70"]
    message = error_of(load_atomic, atomic(tmp_path, lines), "a", PREP)
    assert message.startswith(f"{tmp_path / 'a.inter'}:6: field user_id:token: the id is 'NA'")


def test_the_line_named_counts_the_empty_lines_that_are_skipped(tmp_path):
    lines = ["1\t1\t5\t10", "", "1\t2\t5\t20", "", "", "1\t\t5\t30", "", "1\t4\t5\t40"]
    message = error_of(load_atomic, atomic(tmp_path, lines), "a", PREP)
    assert message.startswith(f"{tmp_path / 'a.inter'}:7: field item_id:token: the id is empty")


@pytest.mark.parametrize("value", ["", "NA", "null"])
def test_a_bad_item_id_in_the_atomic_item_file_is_an_error(tmp_path, value):
    path = write_atomic(tmp_path, "it", [(1, 1, 5, 10), (1, 2, 5, 20), (1, 3, 5, 30)],
                        items=[(1, "One", 1990, "Drama"), (2, "Two", 1991, "Drama")])
    item = path.with_suffix(".item")
    item.write_text(item.read_text() + f"{value}\tThree\t1992\tDrama\n")
    message = error_of(load_atomic, path, "it", Preprocessing())
    assert message.startswith(f"{item}:4: field item_id:token: the id ")


@pytest.mark.parametrize("value", ["inf", "-inf", "NaN", "Infinity"])
def test_an_atomic_timestamp_must_be_finite(tmp_path, value):
    message = error_of(load_atomic, atomic(tmp_path, [*GOOD, f"2\t2\t5\t{value}"]), "a", PREP)
    assert message.startswith(f"{tmp_path / 'a.inter'}:5: field timestamp:float expected a "
                              f"number, got {value!r}")


def test_a_bom_at_the_start_of_atomic_files_is_removed(tmp_path):
    rows = [(1, 1, 5, 10), (1, 2, 5, 20), (1, 3, 5, 30)]
    items = [(1, "One", 1990, "Drama"), (2, "Two", 1991, "Drama"), (3, "Three", 1992, "Drama")]
    plain = load_atomic(write_atomic(tmp_path / "plain", "b", rows, items), "b", Preprocessing())
    path = write_atomic(tmp_path / "bom", "b", rows, items)
    for file in (path, path.with_suffix(".item")):
        file.write_bytes(b"\xef\xbb\xbf" + file.read_bytes())
    ds = load_atomic(path, "b", Preprocessing())
    assert ds.user_ids == plain.user_ids == ["1"]
    assert ds.catalog.item_ids == plain.catalog.item_ids == ["1", "2", "3"]
    assert ds.catalog.attributes == plain.catalog.attributes
    assert ds.interactions.equals(plain.interactions)


# ----------------------------------------------------------------------------- Amazon 2023 JSONL


def review(user='"U1"', item='"B1"', ts="1000", rating="5.0") -> str:
    """One review line, each value given as raw JSON text (so that NaN can be written)."""
    return f'{{"user_id": {user}, "parent_asin": {item}, "rating": {rating}, "timestamp": {ts}}}'


def reviews(tmp_path, lines: list[str], name: str = "R") -> object:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


OK_REVIEWS = [review(), review(item='"B2"', ts="2000"), review(user='"U2"', ts="3000")]
NON_SCALARS = [("[]", "a list []"), ('["U1", "U2"]', "a list ['U1', 'U2']"),
               ('{"id": "U1"}', "an object {'id': 'U1'}"), ("null", "null"), ("true", "true"),
               ("1.5", "the number 1.5"), ("NaN", "the number nan")]


@pytest.mark.parametrize("value, shown", NON_SCALARS)
@pytest.mark.parametrize("field", ["user_id", "parent_asin"])
def test_an_amazon_id_must_be_a_string_or_an_integer(tmp_path, field, value, shown):
    line = review(user=value) if field == "user_id" else review(item=value)
    path = reviews(tmp_path, [*OK_REVIEWS, line])
    message = error_of(load_amazon2023, path, None, "R", PREP)
    assert message == (f"{path}:4: field {field}: expected an id (a string or an integer), "
                       f"got {shown}")


@pytest.mark.parametrize("value", ['""', '"  "', '"U\\t1"', '"U\\n1"',
                                   *(json.dumps(w) for w in MISSING_WORDS)])
@pytest.mark.parametrize("field", ["user_id", "parent_asin"])
def test_an_amazon_id_that_is_empty_or_reads_as_missing_is_an_error(tmp_path, field, value):
    line = review(user=value) if field == "user_id" else review(item=value)
    path = reviews(tmp_path, [*OK_REVIEWS, line])
    message = error_of(load_amazon2023, path, None, "R", PREP)
    assert message.startswith(f"{path}:4: field {field}: the id ")
    assert ID_SHAPE in message


def test_amazon_integer_ids_become_their_decimal_string(tmp_path):
    path = reviews(tmp_path, [review(user="7", item="42"), review(user="7", item='"B2"', ts="2")])
    ds = load_amazon2023(path, None, "R", PREP)
    assert ds.user_ids == ["7"] and ds.catalog.item_ids == ["42", "B2"]


@pytest.mark.parametrize("value, shown", [
    ("NaN", "the number nan"), ('"nan"', "'nan'"), ("Infinity", "the number inf"),
    ("-Infinity", "the number -inf"), ('"inf"', "'inf'"), ("1e999", "the number inf"),
    ("null", "null"), ("true", "true"), ('"soon"', "'soon'"), ("[1000]", "a list [1000]")])
def test_an_amazon_timestamp_must_be_a_finite_number(tmp_path, value, shown):
    path = reviews(tmp_path, [*OK_REVIEWS, review(ts=value)])
    message = error_of(load_amazon2023, path, None, "R", PREP)
    assert message == f"{path}:4: field timestamp: expected a finite number, got {shown}"


@pytest.mark.parametrize("value", ["NaN", '"nan"', "Infinity", "null", "false"])
def test_an_amazon_rating_if_present_must_be_a_finite_number(tmp_path, value):
    path = reviews(tmp_path, [*OK_REVIEWS, review(user='"U3"', rating=value)])
    message = error_of(load_amazon2023, path, None, "R", PREP)
    assert message.startswith(f"{path}:4: field rating: expected a finite number, got ")


def test_an_amazon_review_without_a_rating_is_kept(tmp_path):
    path = reviews(tmp_path, [*OK_REVIEWS, '{"user_id": "U2", "parent_asin": "B2", '
                                           '"timestamp": 4000}'])
    assert len(load_amazon2023(path, None, "R", PREP).interactions) == 4


@pytest.mark.parametrize("gz", [False, True])
def test_a_bom_at_the_start_of_amazon_jsonl_files_is_removed(tmp_path, gz):
    plain = load_amazon2023(write_amazon(tmp_path / "plain", gz=gz), None, "V", PREP)
    path = write_amazon(tmp_path / "bom", gz=gz)
    opener = gzip.open if gz else open
    for file in (path, path.with_name("meta_" + path.name)):
        with opener(file, "rb") as fh:
            data = fh.read()
        with opener(file, "wb") as fh:
            fh.write(b"\xef\xbb\xbf" + data)
    ds = load_amazon2023(path, None, "V", PREP)
    assert ds.user_ids == plain.user_ids and ds.catalog.item_ids == plain.catalog.item_ids
    assert ds.catalog.attributes == plain.catalog.attributes
    assert ds.interactions.equals(plain.interactions)


@pytest.mark.parametrize("record, message", [
    ({"parent_asin": ["B1"]}, "field parent_asin: expected an id (a string or an integer), "
                              "got a list ['B1']"),
    ({"parent_asin": None}, "field parent_asin: expected an id (a string or an integer), "
                            "got null"),
    ({"parent_asin": "NA"}, "field parent_asin: the id is 'NA', which reads as a missing value"),
    ({"parent_asin": "B1", "categories": "Lab"}, "field categories: expected a list of texts, "
                                                 "got 'Lab'"),
    ({"parent_asin": "B1", "categories": ["Lab", ["A", "B"]]},
     "field categories: expected a list of texts, got a list ['Lab', ['A', 'B']]"),
    ({"parent_asin": "B1", "title": {"en": "Probe"}},
     "field title: expected text or a list of texts, got an object {'en': 'Probe'}"),
    ({"parent_asin": "B1", "features": [["a", "b"]]},
     "field features: expected text or a list of texts, got a list [['a', 'b']]"),
])
def test_a_malformed_amazon_meta_record_is_an_error(tmp_path, record, message):
    path = reviews(tmp_path, OK_REVIEWS)
    meta = tmp_path / "meta_R.jsonl"
    meta.write_text(json.dumps({"parent_asin": "B2", "title": "Two"}) + "\n"
                    + json.dumps(record) + "\n")
    error = error_of(load_amazon2023, path, None, "R", PREP)
    assert error.startswith(f"{meta}:2: {message}")


# ----------------------------------------------------------------------------- LC-Rec JSON


def lcrec(tmp_path, inter_text: str, items: dict | None = None, gz: bool = False,
          bom: bool = False):
    """``Toy.inter.json`` holding ``inter_text`` as written, and an item file beside it."""
    items = items if items is not None else {
        str(i): {"title": f"Item {i}.", "brand": "B", "categories": "Root,Lab",
                 "description": ""} for i in range(4)}
    opener = gzip.open if gz else open
    suffix = ".gz" if gz else ""
    prefix = b"\xef\xbb\xbf" if bom else b""
    for name, text in (("Toy.inter.json", inter_text), ("Toy.item.json", json.dumps(items))):
        with opener(tmp_path / f"{name}{suffix}", "wb") as fh:
            fh.write(prefix + text.encode("utf-8"))
    return tmp_path / f"Toy.inter.json{suffix}"


@pytest.mark.parametrize("value, shown", [
    ('["1", "2"]', "a list ['1', '2']"), ('{"id": "1"}', "an object {'id': '1'}"),
    ("null", "null"), ("true", "true"), ("false", "false"), ("1.0", "the number 1.0"),
    ("NaN", "the number nan")])
def test_an_lcrec_sequence_element_must_be_a_string_or_an_integer(tmp_path, value, shown):
    path = lcrec(tmp_path, f'{{"u0": ["0", "1", "2"], "u1": ["1", {value}, "3"]}}')
    message = error_of(load_lcrec, path, "toy", PREP)
    assert message == (f"{path}: user 'u1', item [1] (0-based): expected an item id (a string "
                       f"or an integer), got {shown}")


@pytest.mark.parametrize("value", ['""', '" "', '"1 "', *(json.dumps(w) for w in MISSING_WORDS)])
def test_an_lcrec_item_id_that_is_empty_or_reads_as_missing_is_an_error(tmp_path, value):
    path = lcrec(tmp_path, f'{{"u0": ["0", "1", "2"], "u1": ["1", "3", {value}]}}')
    message = error_of(load_lcrec, path, "toy", PREP)
    assert message.startswith(f"{path}: user 'u1', item [2] (0-based): the item id ")
    assert ID_SHAPE in message


@pytest.mark.parametrize("key", ["", " ", "NA", "null", "None", "nan"])
def test_an_lcrec_user_key_that_is_empty_or_reads_as_missing_is_an_error(tmp_path, key):
    path = lcrec(tmp_path, json.dumps({"u0": [0, 1, 2], key: [1, 2, 3]}))
    message = error_of(load_lcrec, path, "toy", PREP)
    assert message.startswith(f"{path}: user key {key!r}: the user id ")


def test_an_lcrec_user_whose_value_is_not_a_list_is_an_error(tmp_path):
    path = lcrec(tmp_path, '{"u0": [0, 1, 2], "u1": "0 1 2"}')
    assert error_of(load_lcrec, path, "toy", PREP) == (
        f"{path}: user 'u1': expected a list of item ids, got '0 1 2'")


@pytest.mark.parametrize("items, message", [
    ({"0": {"title": "Zero"}, "NA": {"title": "Missing"}},
     "item key 'NA': the item id is 'NA', which reads as a missing value"),
    ({"0": {"title": ["Zero", "0"]}}, "item '0', field title: expected text, got a list"),
    ({"0": {"brand": {"name": "Acme"}}}, "item '0', field brand: expected text, got an object"),
    ({"0": {"categories": ["Root", "Lab"]}}, "item '0', field categories: expected text, got a "
                                             "list"),
    ({"0": ["Zero"]}, "item '0': expected an object of text fields, got a list"),
])
def test_a_malformed_lcrec_item_file_is_an_error(tmp_path, items, message):
    path = lcrec(tmp_path, '{"u0": [0, 1, 2]}', items=items)
    error = error_of(load_lcrec, path, "toy", PREP)
    assert error.startswith(f"{tmp_path / 'Toy.item.json'}: {message}")


@pytest.mark.parametrize("gz", [False, True])
def test_a_bom_at_the_start_of_lcrec_json_files_is_removed(tmp_path, gz):
    text = '{"u0": [0, 1, 2, 3], "u1": ["2", 0, 1]}'
    for folder in ("plain", "bom"):
        (tmp_path / folder).mkdir()
    plain = load_lcrec(lcrec(tmp_path / "plain", text, gz=gz), "toy", PREP)
    ds = load_lcrec(lcrec(tmp_path / "bom", text, gz=gz, bom=True), "toy", PREP)
    ids = ds.catalog.item_ids
    assert [[ids[i] for i in s] for s in ds.sequences()] == [["0", "1", "2", "3"], ["2", "0", "1"]]
    assert ds.catalog.attributes == plain.catalog.attributes
    assert ds.interactions.equals(plain.interactions)


def test_lcrec_sha256sums_with_a_bom_is_read_and_a_malformed_line_is_named(tmp_path):
    path = lcrec(tmp_path, '{"u0": [0, 1, 2]}')
    sums = tmp_path / "SHA256SUMS"
    sums.write_bytes(b"\xef\xbb\xbf" + b"0" * 64 + b"  Toy.inter.json\n")
    assert "Toy.inter.json: sha256 of the decompressed file is not 0000" in error_of(
        load_lcrec, path, "toy", PREP)
    sums.write_text("0" * 64 + "  Toy.item.json\nToy.inter.json\n")
    assert error_of(load_lcrec, path, "toy", PREP) == (
        f"{sums}:2: expected `<sha256>  <file name>`, got 1 fields")


# ----------------------------------------------------------------------------- repeated keys


def test_a_user_listed_twice_in_lcrec_json_is_an_error_not_a_lost_sequence(tmp_path):
    # json would keep the second list and drop the first without a word
    path = lcrec(tmp_path, '{"u0": [0, 1, 2], "u1": [1, 2, 3], "u0": [3, 2, 1]}')
    assert error_of(load_lcrec, path, "toy", PREP) == (
        f"{path}: key 'u0' appears twice in one object; each user and item is listed once")


def test_a_field_repeated_in_an_amazon_review_is_an_error(tmp_path):
    line = '{"user_id": "U1", "parent_asin": "B1", "timestamp": 5, "user_id": "U9"}'
    path = reviews(tmp_path, [*OK_REVIEWS, line])
    assert error_of(load_amazon2023, path, None, "R", PREP) == (
        f"{path}:4: field 'user_id' appears twice in one object")
