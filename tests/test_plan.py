"""The run plan: expected times from recorded results, quickest jobs first."""

from __future__ import annotations

import json

import pytest

from benchmark.grid import Job
from benchmark.plan import cheap_first, expected, plan_lines, recorded


def _write(root, dataset, protocol, method, seed, fit, inference=0.0, total=None, config=None):
    folder = root / dataset / protocol / method
    folder.mkdir(parents=True, exist_ok=True)
    hw = {"device": "cpu", "cpu_count": 2, "torch_threads": 1}
    timing = {"fit_seconds": fit, "inference_seconds": inference}
    if total is not None:
        timing["total_seconds"] = total
    result = {"timing": timing, "environment": {"hardware": hw}}
    if config is not None:
        result["config"] = config
    (folder / f"seed{seed}.json").write_text(json.dumps(result))


def test_expected_times_come_from_recorded_results(tmp_path):
    _write(tmp_path, "ml", "loo", "slow", 0, 100, 20)
    _write(tmp_path, "ml", "loo", "slow", 1, 140, 20)
    _write(tmp_path, "ml", "cold_item", "quick", 0, 3)
    (tmp_path / "ml" / "loo" / "slow" / "seed2.json").write_text("{broken")  # skipped
    records = recorded(tmp_path)
    assert expected(records, "ml", "loo", "slow") == 140.0
    assert expected(records, "ml", "loo", "quick") == 3.0  # from the other protocol
    assert expected(records, "ml", "loo", "new") is None
    jobs = [Job("ml", "loo", m, s) for m in ("new", "slow", "quick") for s in (0, 1)]
    order = cheap_first(jobs, records)
    assert [j.method for j in order] == ["quick", "quick", "slow", "slow", "new", "new"]
    lines, total, unknown = plan_lines(order, records)
    assert total == 2 * 3.0 + 2 * 140.0 and unknown == 2
    assert any("slow" in line and "~5 min (2 min each; recorded on cpu, 2 cores, 1 threads)"
               in line for line in lines)
    assert "no recorded run: unknown" in lines[3]
    assert lines[-1].startswith("plan: 6 runs, expected ~5 min plus 2 run(s)")


def test_recommend_says_what_it_fits_and_how_long_a_recorded_run_took(tmp_path):
    import argparse

    from benchmark.conversation import fit_notice

    args = argparse.Namespace(cache_dir=tmp_path, profile="smoke", protocol="loo",
                              method="sid_llm", command="recommend", seed=0)
    assert "no recorded run" in fit_notice(args, "ml-100k")
    _write(tmp_path / "results-smoke", "ml-100k", "loo", "sid_llm", 0, 150, 30)
    notice = fit_notice(args, "ml-100k")
    assert "fitting sid_llm on ml-100k (loo, seed 0, profile smoke)" in notice
    assert "a recorded run took about 3 min" in notice and str(tmp_path) in notice


def test_a_seed_is_planned_from_its_own_record_plus_the_measured_setup(tmp_path):
    from benchmark.plan import job_expected, setup_seconds

    _write(tmp_path, "ml", "loo", "m", 0, 100)
    _write(tmp_path, "ml", "loo", "m", 1, 50)
    records = recorded(tmp_path)
    jobs = [Job("ml", "loo", "m", 1), Job("ml", "loo", "m", 0), Job("ml", "loo", "m", 7)]
    calls = []
    setup = setup_seconds(jobs, calls.append)
    assert len(calls) == 1 and set(setup) == {("ml", "loo")}  # once per dataset x protocol
    setup = {("ml", "loo"): 2.0}
    assert job_expected(records, jobs[0], setup) == 52.0
    assert job_expected(records, jobs[1], setup) == 102.0
    assert job_expected(records, jobs[2], setup) == 77.0  # unrecorded seed: the group's mean
    assert cheap_first(jobs, records)[0].seed == 1
    # a result that records its whole wall-clock time already holds its set-up
    _write(tmp_path, "ml", "loo", "m", 0, 100, total=104)
    records = recorded(tmp_path)
    assert job_expected(records, jobs[1], setup) == 104.0
    assert job_expected(records, jobs[0], setup) == 52.0
    assert job_expected(records, jobs[2], setup) == (104 + 52) / 2  # set-up for half of them


def test_plan_flag_prints_the_plan_and_runs_nothing(tmp_path, capsys):
    from benchmark.cli import main

    out = tmp_path / "out"
    assert main(["--methods", "popularity", "--seeds", "0", "--profile", "smoke",
                 "--results-dir", str(out), "--cache-dir", str(tmp_path / "cache"),
                 "--plan", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("plan (quickest first):") and "plan: 2 runs" in printed
    assert not list(out.rglob("seed*.json"))


@pytest.mark.parametrize(("native", "overrides", "warned"), [
    (False, [], True), (True, [], False), (False, ["--set", "sid_llm.precision=float32"], False)])
def test_bfloat16_on_a_cpu_that_emulates_it_is_warned_before_the_plan(tmp_path, capsys,
                                                                      monkeypatch, native,
                                                                      overrides, warned):
    """sid_llm ranks under bfloat16 by default; on an AVX2-only CPU that ran ~20x slower than
    float32 with no word said. The setting stays (it is the run's config); the user is told."""
    from benchmark import cli

    monkeypatch.setattr(cli, "native_bfloat16", lambda: native)
    assert cli.main(["--methods", "sid_llm,popularity", "--seeds", "0", "--profile", "smoke",
                     "--results-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c"),
                     "--plan", "--no-progress", *overrides]) == 0
    err = capsys.readouterr().err
    assert ("warning: sid_llm runs its LLM passes under precision bfloat16" in err) == warned
    assert ("--set sid_llm.precision=float32 to run it at" in err) == warned
    assert "popularity" not in err


def test_native_bfloat16_reads_the_cpu_flags(monkeypatch):
    import torch

    from benchmark import cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for flags, native in [({"avx2": True}, False), ({"avx512_bf16": True}, True),
                          ({"amx_bf16": True, "avx512_bf16": False}, True)]:
        monkeypatch.setattr(torch._C._cpu, "_get_cpu_capability", lambda f=flags: f)
        assert cli.native_bfloat16() is native


def test_a_calibration_run_sets_its_jobs_and_scales_the_others(tmp_path):
    from benchmark.plan import CALIBRATION, job_expected, write_calibration

    reference, run = tmp_path / "results", tmp_path / "run"
    _write(reference, "ml", "loo", "a", 0, 100)
    _write(reference, "ml", "loo", "b", 0, 40)
    _write(reference, "ml", "loo", "c", 0, 200)
    _write(reference, "ml", "loo", "tiny", 0, 0.1)
    _write(run, "ml", "loo", "a", 0, 70, total=80)  # measured: 0.8 of the record
    _write(run, "ml", "loo", "b", 0, 20, total=24)  # 0.6
    _write(run, "ml", "loo", "tiny", 0, 0.1, total=1.5)  # mostly set-up: not in the ratio
    _write(run, "ml", "loo", "old", 0, 5)  # no total_seconds: not calibration material
    import os

    for name, when in (("a", 3), ("b", 1), ("tiny", 2)):  # the order the jobs ended in
        os.utime(run / "ml" / "loo" / name / "seed0.json", (when, when))
    data = write_calibration(run, reference / CALIBRATION, "idle")
    assert data["order"] == ["ml/loo/b/seed0", "ml/loo/tiny/seed0", "ml/loo/a/seed0"]
    assert set(data["jobs"]) == {"ml/loo/a/seed0", "ml/loo/b/seed0", "ml/loo/tiny/seed0"}
    records = recorded(reference)
    setup = {("ml", "loo"): 1.0}
    assert job_expected(records, Job("ml", "loo", "a", 0), setup) == 80.0
    assert job_expected(records, Job("ml", "loo", "tiny", 0), setup) == 1.5
    # c was not calibrated: its record times the median ratio (0.6 and 0.8: 0.7), plus set-up
    assert abs(job_expected(records, Job("ml", "loo", "c", 0), setup) - 141.0) < 1e-9
    grid = [Job("ml", "loo", m, 0) for m in ("c", "a", "tiny", "b")]
    # the calibrated jobs first, as the calibration ran them; then the rest by expected time
    assert [j.method for j in cheap_first(grid, records)] == ["b", "tiny", "a", "c"]
    assert records[("ml", "loo", "a")].source([0]).startswith("measured by the calibration run")
    assert records[("ml", "loo", "c")].source([0]).endswith("x 0.70 (calibration ratio)")


def test_a_run_on_a_published_index_is_planned_like_its_base_method(tmp_path):
    _write(tmp_path, "amazon", "loo", "tiger", 0, 600)
    records = recorded(tmp_path)
    assert expected(records, "amazon", "loo", "tiger@rqvae_native", 0) == 600.0
    lines, total, unknown = plan_lines([Job("amazon", "loo", "tiger@rqvae_native", 0)], records)
    assert total == 600.0 and unknown == 0 and "as tiger, recorded on" in lines[1]


def test_a_fit_served_from_the_checkpoint_cache_is_planned_at_its_training_time(tmp_path):
    _write(tmp_path, "ml", "loo", "m", 0, 0.1, 2.0)
    path = tmp_path / "ml" / "loo" / "m" / "seed0.json"
    result = json.loads(path.read_text())
    result["training"] = {"curve": [{"seconds": 200.0}, {"seconds": 440.0}]}
    path.write_text(json.dumps(result))
    assert abs(expected(recorded(tmp_path), "ml", "loo", "m", 0) - 442.0) < 1e-9


def test_a_method_or_seed_named_twice_is_planned_once(tmp_path, capsys):
    from benchmark.cli import main

    assert main(["--methods", "popularity,random,popularity", "--seeds", "0,1,0",
                 "--profile", "smoke", "--results-dir", str(tmp_path / "out"),
                 "--cache-dir", str(tmp_path / "cache"), "--plan", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    # 2 methods x 2 seeds x the smoke profile's datasets and protocols (2 runs per method-seed
    # above: one dataset, both protocols)
    assert "plan: 8 runs" in printed
    assert sum(line.split()[0] == "popularity" for line in printed.splitlines()[1:-1]) == 2


def test_records_made_with_other_settings_give_way_to_those_made_with_the_jobs(tmp_path):
    """A YAML change (TIGER's patience 5 -> 10) made runs take 60-77 min where the plan, reading
    the patience-5 records, said 11: a seed's own record counts only if made with the job's
    settings; else the seeds that were; else the record, with the differing settings named."""
    from benchmark.code_status import flat_settings

    old, new = {"model": {"patience": 5}, "lr": 0.01}, {"model": {"patience": 10}, "lr": 0.01}
    _write(tmp_path, "ml", "loo", "m", 0, 3000, config=new)
    _write(tmp_path, "ml", "loo", "m", 1, 5000, config=new)
    _write(tmp_path, "ml", "loo", "m", 2, 600, config=old)
    _write(tmp_path, "ml", "loo", "m", 3, 700, config={"lr": 0.01})  # predates `patience`
    records = recorded(tmp_path)
    now = flat_settings(new)
    # not its own patience-5 record: the mean of the seeds recorded with these settings
    assert expected(records, "ml", "loo", "m", 2, now) == (3000 + 5000 + 700) / 3
    assert expected(records, "ml", "loo", "m", 2) == 600.0  # settings unknown: as before
    assert expected(records, "ml", "loo", "m", 3, now) == 700.0  # no setting differs
    assert expected(records, "ml", "loo", "m", 9, now) == (3000 + 5000 + 700) / 3
    jobs = [Job("ml", "loo", "m", 2)]
    lines, total, _ = plan_lines(jobs, records, settings={("ml", "m"): now})
    assert total == 2900.0 and not any("other settings" in line for line in lines)
    # no record made with these settings: the record's time, and what differs
    other = flat_settings({"model": {"patience": 20}, "lr": 0.1})
    assert expected(records, "ml", "loo", "m", 2, other) == 600.0
    lines, _, _ = plan_lines(jobs, records, settings={("ml", "m"): other})
    assert lines[2] == ("    recorded with other settings, so the time may differ: "
                        "`lr` 0.01 -> 0.1, `model.patience` 10 / 5 -> 20")


def test_the_cli_plan_names_settings_no_record_was_made_with(tmp_path, capsys):
    from benchmark.cli import main

    config = {"max_len": 20, "hidden": 16, "n_layers": 1, "max_epochs": 2, "patience": 2}
    for protocol in ("loo", "cold_item"):
        _write(tmp_path / "results-smoke", "ml-100k", protocol, "sasrec_id", 0, 60,
               config=config)
    args = ["--methods", "sasrec_id", "--seeds", "0", "--profile", "smoke", "--plan",
            "--results-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    assert "other settings" not in capsys.readouterr().out  # the smoke YAML's own settings
    assert main([*args, "--set", "patience=3"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("recorded with other settings, so the time may differ: "
                         "`patience` 2 -> 3") == 2
