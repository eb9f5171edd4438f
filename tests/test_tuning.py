"""`tune`: grid points fitted and scored on validation only, the record, and the report's
"Settings chosen on validation" section."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark import runner, tuning
from benchmark.cli import main
from benchmark.errors import BenchmarkError
from benchmark.report import write_report


def test_grid_parses_yaml_values_and_forms_the_product():
    grid = tuning.Grid.parse(["dropout=0.2, 0.5", "unseen_rows=drop,mean"])
    assert grid.axes == {"dropout": [0.2, 0.5], "unseen_rows": ["drop", "mean"]}
    assert grid.points() == [{"dropout": 0.2, "unseen_rows": "drop"},
                             {"dropout": 0.2, "unseen_rows": "mean"},
                             {"dropout": 0.5, "unseen_rows": "drop"},
                             {"dropout": 0.5, "unseen_rows": "mean"}]


@pytest.mark.parametrize("specs, match", [([], "at least one"), (["dropout"], "KEY=V1"),
                                          (["=1,2"], "KEY=V1"), (["a=1", "a=2"], "twice")])
def test_grid_rejects_bad_specs(specs, match):
    with pytest.raises(BenchmarkError, match=match):
        tuning.Grid.parse(specs)


def test_tune_scores_validation_only_and_records_the_best(tiny_atomic, tmp_path, monkeypatch):
    seen = []
    real = tuning.evaluate

    def spy(adapter, cases, *args, **kwargs):
        seen.append(cases)
        return real(adapter, cases, *args, **kwargs)

    monkeypatch.setattr(tuning, "evaluate", spy)
    monkeypatch.setattr(runner, "evaluate", spy)  # the validate() callback during fit
    splits = []
    real_prepare = tuning.prepare

    def prepare(req, settings):
        out = real_prepare(req, settings)
        splits.append(out[1])
        return out

    monkeypatch.setattr(tuning, "prepare", prepare)
    path = tuning.tune("item_knn", str(tiny_atomic), "cold_item",
                       tuning.Grid.parse(["shrink=1.0,100.0"]), profile="smoke",
                       results_dir=tmp_path / "r", cache_dir=tmp_path / "c", show_progress=False,
                       echo=lambda _: None)
    assert path == tmp_path / "r" / "tiny" / "tuning" / "item_knn.cold_item.json"
    record = json.loads(path.read_text())
    assert [r["settings"] for r in record["rows"]] == [{"shrink": 1.0}, {"shrink": 100.0}]
    best = max(record["rows"], key=lambda r: r["valid_ndcg10"])
    assert record["chosen"] == best["settings"]
    # every evaluation was of validation cases; the test cases were never scored
    assert seen and all(any(cases is s.valid for s in splits) for cases in seen)
    assert not any(cases is s.test for cases in seen for s in splits)
    # the cold_valid cases are counted and scored apart
    row = record["rows"][0]
    split = splits[0]
    assert row["n_valid"] == len(split.valid)
    assert row["n_cold_valid"] == int(np.isin(split.valid.targets, split.cold_valid_items).sum())
    assert row["n_cold_valid"] > 0


def test_tune_checks_every_point_before_fitting(tiny_atomic, tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "fit_adapter", lambda *a, **k: pytest.fail("fitted"))
    with pytest.raises(BenchmarkError, match="shrink"):
        tuning.tune("item_knn", str(tiny_atomic), "loo", tuning.Grid.parse(["shrink=5.0,-1.0"]),
                    profile="smoke", results_dir=tmp_path / "r", cache_dir=tmp_path / "c",
                    show_progress=False, echo=lambda _: None)


def test_report_says_what_validation_chose_and_whether_the_run_uses_it(tiny_atomic, tmp_path,
                                                                       capsys):
    results, cache = tmp_path / "r", tmp_path / "c"
    base = ["--profile", "smoke", "--dataset", str(tiny_atomic), "--results-dir", str(results),
            "--cache-dir", str(cache), "--no-progress"]
    assert main(["tune", "item_knn", "--grid", "shrink=1.0,100.0", *base]) == 0
    chosen = json.loads((results / "tiny" / "tuning" / "item_knn.loo.json").read_text())["chosen"]
    other = 101.0 - chosen["shrink"]
    assert main(["run", "--methods", "item_knn", "--protocol", "loo", "--no-report",
                 "--set", f"shrink={other}", *base]) == 0
    text = write_report(results).read_text()
    assert "## Settings chosen on validation" in text
    assert f"**shrink={chosen['shrink']}**" in text
    assert "**no** (the run's config differs from the choice)" in text
    assert main(["run", "--methods", "item_knn", "--protocol", "loo", "--no-report",
                 "--set", f"shrink={chosen['shrink']}", *base]) == 0
    assert "Reported run uses the choice: yes." in write_report(results).read_text()


def test_tune_cli_errors_are_one_line(tiny_atomic, capsys):
    assert main(["tune", "no_such_method", "--grid", "a=1", "--dataset", str(tiny_atomic)]) == 2
    assert "unknown method 'no_such_method'" in capsys.readouterr().err
    assert main(["tune", "item_knn", "--dataset", str(tiny_atomic)]) == 2
    assert "at least one --grid" in capsys.readouterr().err
    assert main(["tune", "item_knn", "--grid", "shrink=0", "--dataset", str(tiny_atomic),
                 "--set", "harness.top_k=5"]) == 2
    assert "only --set harness.threads=N may change" in capsys.readouterr().err


def test_tune_takes_a_thread_count(tiny_atomic, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append(n))
    seen: list[int] = []
    path = tuning.tune("item_knn", str(tiny_atomic), "loo", tuning.Grid.parse(["shrink=0"]),
                       profile="smoke", results_dir=tmp_path / "r", cache_dir=tmp_path / "c",
                       show_progress=False, echo=lambda *a: None, threads=1)
    assert path.exists() and seen and set(seen) == {1}


def test_tune_records_each_points_validation_curve(tiny_atomic, tmp_path):
    """A probe is read at equal training compute, so each row keeps the curve its fit drew."""
    path = tuning.tune("sasrec_id", str(tiny_atomic), "loo", tuning.Grid.parse(["lr=0.001"]),
                       profile="smoke", results_dir=tmp_path / "r", cache_dir=tmp_path / "c",
                       show_progress=False, echo=lambda *a: None)
    [row] = json.loads(path.read_text())["rows"]
    examples = [point["examples"] for point in row["curve"]]
    assert examples and examples == sorted(examples) and examples[-1] <= row["examples_seen"]
    assert all(0.0 <= point["valid_ndcg10"] <= 1.0 for point in row["curve"])
