"""Result files are read back in the current shape, whatever schema version wrote them."""

import json
import os
import stat
import sys

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


def test_version_2_curves_are_read_as_written(tmp_path):
    training = {"stop_reason": "epoch_cap", "examples_seen": 64,
                "curve": [{"examples": 64, "seconds": 1.5, "valid_ndcg10": 0.2}]}
    assert read_result(_write(tmp_path / "seed0.json", 2, training))["training"] == training


def test_before_version_3_the_code_is_unknown_and_machine_paths_and_run_free_settings_go(
        tmp_path):
    site = next(p for p in sys.path if p.endswith("site-packages"))
    path = tmp_path / "seed0.json"
    path.write_text(json.dumps({
        "schema_version": 2, "dataset": {"name": "ml-100k", "stats": {
            "source": f"{site}/recbole/dataset_example/ml-100k/ml-100k.inter"}},
        "adapter": "baselines.popularity:Popularity",
        "harness": {"mask_history": True, "families": {"main": ["a"]}, "seeds": [0]},
        "training": {}}))
    result = read_result(path)
    assert SCHEMA_VERSION == 3 and result["schema_version"] == 3
    assert result["dataset"]["stats"]["source"] == (
        "package:recbole/dataset_example/ml-100k/ml-100k.inter")
    assert result["code"]["fingerprint"] is None
    assert result["harness"] == {"mask_history": True}
    assert list(result)[:4] == ["schema_version", "dataset", "adapter", "code"]


@pytest.mark.parametrize("version", [4, None])
def test_an_unknown_version_is_an_error_that_names_the_file(tmp_path, version):
    path = _write(tmp_path / "seed7.json", version, {})
    with pytest.raises(BenchmarkError, match=r"seed7\.json: result schema version .* unknown"):
        read_result(path)


def test_json_intervals_equal_the_reports_one_bootstrap_order(tiny_atomic, tmp_path):
    """The per-user file is in user-id order (1, 10, 11, ... for ids 1..40, not the split's
    1, 2, 3, ...), and the JSON's CI resamples that order, so REPORT.md's CI, computed from the
    file, is the same interval."""
    import json

    from benchmark import runner
    from benchmark.evaluation import metric_values
    from benchmark.results import ranks_from_table, read_run
    from benchmark.settings import harness_settings
    from benchmark.statistics import bootstrap_ci

    path = runner.run(runner.RunRequest(method="random", dataset=str(tiny_atomic),
                                        protocol="loo", profile="smoke",
                                        results_dir=tmp_path / "r", cache_dir=tmp_path / "c",
                                        show_progress=False))
    result = json.loads(path.read_text())
    raw = (path.with_suffix(".per_user.csv")).read_text().splitlines()
    users = [line.split(",")[0] for line in raw[1:]]
    assert users == sorted(users) and users[:3] == ["1", "10", "11"]
    _, table = read_run(path, path.with_suffix(".per_user.csv"))
    settings = harness_settings("smoke")
    values = metric_values(ranks_from_table(table))
    for metric in ("NDCG@10", "HR@20"):
        ci = bootstrap_ci(values[metric], seed=settings.bootstrap_seed,
                          n_resamples=settings.bootstrap_resamples)
        assert list(ci) == result["metrics"]["all"]["all"][metric]["ci95"]


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX file modes")
def test_written_files_get_an_ordinary_files_mode_not_the_temporary_files(tmp_path):
    # The staging file comes from mkstemp (0600); a result others on the machine cannot read,
    # or that a shared results/ folder hides from its group, is not what a user expects.
    from benchmark.cache import atomic_write_files

    target = tmp_path / "seed0.json"
    atomic_write_files({target: b"{}"})
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
