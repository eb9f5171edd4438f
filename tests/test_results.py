"""Result files are read back in the current shape, whatever schema version wrote them."""

import json

import pytest

from benchmark.errors import BenchmarkError
from benchmark.results import SCHEMA_VERSION, read_result


def _write(path, version, training):
    path.write_text(json.dumps({"schema_version": version, "training": training}))
    return path


def test_version_1_validation_values_become_curve_points(tmp_path):
    path = _write(tmp_path / "seed0.json", 1,
                  {"stop_reason": "early_stop", "validation_ndcg10": [0.1, 0.25]})
    training = read_result(path)["training"]
    assert training == {"stop_reason": "early_stop", "examples_seen": None,
                        "curve": [{"examples": None, "seconds": None, "valid_ndcg10": 0.1},
                                  {"examples": None, "seconds": None, "valid_ndcg10": 0.25}]}


def test_version_2_is_read_as_written(tmp_path):
    training = {"stop_reason": "epoch_cap", "examples_seen": 64,
                "curve": [{"examples": 64, "seconds": 1.5, "valid_ndcg10": 0.2}]}
    assert SCHEMA_VERSION == 2
    assert read_result(_write(tmp_path / "seed0.json", 2, training))["training"] == training


@pytest.mark.parametrize("version", [3, None])
def test_an_unknown_version_is_an_error_that_names_the_file(tmp_path, version):
    path = _write(tmp_path / "seed7.json", version, {})
    with pytest.raises(BenchmarkError, match=r"seed7\.json: result schema version .* unknown"):
        read_result(path)
