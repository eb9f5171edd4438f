"""The report believes no result file on its word (benchmark/result_checks.py).

The toy results of test_report_golden: ten users u00..u09 of a 50-item catalogue, each result
JSON carrying the metrics the runner would write for its ranks. NDCG@10 of rank r is
1/log2(r + 1): rank 1 -> 1, rank 3 -> 1/2, rank 7 -> 1/3, rank 11 or more, or a miss, -> 0.
"""

import json

import pytest
from test_report_golden import report, tables, write_method

from benchmark.errors import BenchmarkError
from benchmark.report import write_report


def folder(results, method):
    return results / "toy" / "loo" / method


def set_ranks(results, method, ranks, seed=0):
    """Overwrite the ranks of a per-user file, the JSON beside it untouched."""
    csv = folder(results, method) / f"seed{seed}.per_user.csv"
    header, *rows = csv.read_text().splitlines()
    rows = [",".join([*r.split(",")[:2], "" if k is None else str(k), *r.split(",")[3:]])
            for r, k in zip(rows, ranks)]
    csv.write_text("\n".join([header, *rows]) + "\n")


def edit_json(results, method, edit, seed=0):
    path = folder(results, method) / f"seed{seed}.json"
    result = json.loads(path.read_text())
    edit(result)
    path.write_text(json.dumps(result))


def skipped_rows(text):
    """{file: why} of the report's "Skipped files" table."""
    section = text.split("## Skipped files", 1)[1].split("\n## ", 1)[0]
    return {row[0].strip("`"): row[1] for row in tables(section)[0][1:]}


def leaderboard_methods(text):
    """The methods of the toy table's leaderboard, best first."""
    return [r[0].strip("*") for r in tables(text.split("\n## toy — ", 1)[1])[0][1:]]


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    """The report without its bar charts (as in test_reliability): seconds per report, and
    not what these tests look at."""
    from benchmark import report_tables

    monkeypatch.setattr(report_tables, "_plots", lambda *args: [])


@pytest.fixture
def results(tmp_path):
    """sasrec_id ranks every target 3rd, weak 7th, random 30th."""
    root = tmp_path / "results"
    write_method(root, "sasrec_id", [3] * 10)
    write_method(root, "weak", [7] * 10)
    write_method(root, "random", [30] * 10)
    return root


# --------------------------------------------------------------------------- one file


def test_ranks_rewritten_without_the_json_are_refused(results, tmp_path):
    """Every rank of random set to 1, its JSON untouched: the report recomputed NDCG@10 = 1
    from the file (`random 1.0000 ▲`); the JSON says 0."""
    set_ranks(results, "random", [1] * 10)
    with pytest.raises(BenchmarkError, match=(
            r"toy/loo/random/seed0\.per_user\.csv: NDCG@10 recomputed from the ranks is "
            r"1\.0000, the JSON says 0\.0000 \(`report --lenient` skips such files\)$")):
        report(results, tmp_path)
    assert not (tmp_path / "REPORT.md").exists()


def test_a_slice_that_disagrees_is_named(results, tmp_path):
    """Every bucket of every slice is held to the file, not only the overall means."""
    edit_json(results, "random",
              lambda r: r["metrics"]["history_bucket"]["long"]["NDCG@10"].update(mean=0.25))
    with pytest.raises(BenchmarkError, match=r"random/seed0\.per_user\.csv: NDCG@10 "
                                             r"\(history_bucket=long\) recomputed from the ranks "
                                             r"is 0\.0000, the JSON says 0\.2500"):
        report(results, tmp_path)


def test_a_scoring_method_cannot_miss(results, tmp_path):
    """A method that scores every item ranks every target: an empty rank is not a miss but a
    damaged file, even with metrics that agree (the sweep's `0.0000 ▼`)."""
    write_method(results, "random", [None] * 10)  # output "scores", list_length null
    with pytest.raises(BenchmarkError, match=(
            r"random/seed0\.per_user\.csv: user 'u00' has an empty rank \(a miss\), but `random` "
            r"returns scores \(output 'scores', no list length\): it ranks every target")):
        report(results, tmp_path)


def test_a_list_method_may_miss_but_not_beyond_its_list(results, tmp_path):
    write_method(results, "random", [None] * 9 + [20], list_length=20)
    assert "| random " in report(results, tmp_path)
    write_method(results, "random", [None] * 9 + [21], list_length=20)
    with pytest.raises(BenchmarkError, match=r"random/seed0\.per_user\.csv: user 'u09' has rank "
                                             r"21, beyond its list of 20 \(list_length\)"):
        report(results, tmp_path)


def test_a_rank_beyond_the_catalogue_is_refused(results, tmp_path):
    """50 items: rank 50 is the last place, rank 51 cannot be (metrics agree either way)."""
    write_method(results, "random", [50] * 10)
    assert "| random " in report(results, tmp_path)
    write_method(results, "random", [50] * 3 + [51] + [50] * 6)
    with pytest.raises(BenchmarkError, match=(
            r"random/seed0\.per_user\.csv: user 'u03' has rank 51, beyond the catalogue of 50 "
            r"items \(dataset\.stats\.n_items\)")):
        report(results, tmp_path)


def test_a_json_without_metrics_or_with_other_counts_is_refused(results, tmp_path):
    edit_json(results, "random", lambda r: r["metrics"]["all"]["all"].update(n=9))
    with pytest.raises(BenchmarkError, match=r"random/seed0\.per_user\.csv: the per-user file has "
                                             r"10 users in all, the JSON says n = 9"):
        report(results, tmp_path)
    edit_json(results, "random", lambda r: r.pop("metrics"))
    with pytest.raises(BenchmarkError, match=r"random/seed0\.per_user\.csv: its JSON has no "
                                             r"`metrics` to check the ranks against"):
        report(results, tmp_path)


def test_lenient_skips_a_file_that_fails_a_check_and_names_it(results, tmp_path, capsys):
    set_ranks(results, "random", [1] * 10)
    text = write_report(results, tmp_path / "REPORT.md", lenient=True).read_text()
    assert "warning: skipped " in capsys.readouterr().err
    why = skipped_rows(text)["toy/loo/random/seed0.json"]
    assert why == "seed0.per_user.csv: NDCG@10 recomputed from the ranks is 1.0000, the JSON says 0.0000"
    assert leaderboard_methods(text) == ["sasrec_id", "weak"]


@pytest.mark.parametrize("protocol", ["loo", "cold_item"])
def test_the_runners_own_files_pass_every_check(tiny_atomic, tmp_path, protocol):
    from benchmark import runner
    from benchmark.results import load_results

    runner.run(runner.RunRequest(method="popularity", dataset=str(tiny_atomic), protocol=protocol,
                                 profile="smoke", results_dir=tmp_path / "r",
                                 cache_dir=tmp_path / "c", show_progress=False))
    loaded = load_results(tmp_path / "r")
    assert loaded.skipped == [] and list(loaded.runs) == [("tiny", protocol)]


# --------------------------------------------------------------------------- one table


def test_runs_without_history_masking_are_not_compared_with_masked_runs(results, tmp_path,
                                                                       capsys):
    """A run made with `--set harness.mask_history=false` was ranked in the masked runs' table
    with no note. Now it is refused, or with --lenient skipped and listed."""
    edit_json(results, "random", lambda r: r["harness"].update(mask_history=False))
    with pytest.raises(BenchmarkError, match=(
            r"toy/loo/random/seed0\.json: harness\.mask_history is `false`, but 2 of the 3 runs "
            r"of toy/loo have `true` \(runs compared in one table must share it\) "
            r"\(`report --lenient` skips such files\)$")):
        report(results, tmp_path)
    text = write_report(results, tmp_path / "REPORT.md", lenient=True).read_text()
    assert f"warning: skipped {folder(results, 'random') / 'seed0.json'}: " in capsys.readouterr().err
    assert "harness.mask_history is `false`" in skipped_rows(text)["toy/loo/random/seed0.json"]
    assert leaderboard_methods(text) == ["sasrec_id", "weak"]


@pytest.mark.parametrize("edit, setting", [
    (lambda r: r["harness"].update(ties="optimistic"), r"harness\.ties is `\"optimistic\"`"),
    (lambda r: r["harness"].pop("ties"), r"harness\.ties is not recorded"),
    (lambda r: r.update(protocol="cold_item"), r"protocol is `\"cold_item\"`"),
    (lambda r: r["harness"].update(cutoffs=[5, 10]), r"cutoffs is `\[5, 10\]`, but 2 of the 3"),
])
def test_every_setting_that_changes_a_metrics_meaning_must_agree(results, tmp_path, edit,
                                                                 setting):
    for method in ("sasrec_id", "weak", "random"):
        edit_json(results, method, lambda r: r["harness"].update(ties="pessimistic",
                                                                cutoffs=[5, 10, 20]))
    edit_json(results, "weak", edit)
    with pytest.raises(BenchmarkError, match=r"toy/loo/weak/seed0\.json: " + setting):
        report(results, tmp_path)


def test_a_seed_on_another_semantic_id_source_is_not_a_seed_of_the_method(results, tmp_path,
                                                                         capsys):
    """`--set tiger.semantic_ids.source=published:letter_native --seeds 1` writes tiger/seed1:
    it became a seed of the default row with no note. Now it is refused, naming the method it
    belongs to; with --lenient skipped, and the row keeps its other seed."""
    write_method(results, "weak", [7] * 10, seed=1)
    edit_json(results, "weak", lambda r: r.update(
        config={"semantic_ids": {"source": "published:letter_native"}}), seed=1)
    with pytest.raises(BenchmarkError, match=(
            r"toy/loo/weak/seed1\.json: semantic IDs from `published:letter_native`, but weak's "
            r"other seeds say `ours` \(one method, one ID source; a run on a published index is "
            r"the method `weak@letter_native`\) \(`report --lenient` skips such files\)$")):
        report(results, tmp_path)
    text = write_report(results, tmp_path / "REPORT.md", lenient=True).read_text()
    assert "published:letter_native" in skipped_rows(text)["toy/loo/weak/seed1.json"]
    assert "toy/loo/weak/seed0.json" not in skipped_rows(text)
    assert leaderboard_methods(text) == ["sasrec_id", "weak", "random"]
    # a variant's folder must hold runs on its own index
    for stale in folder(results, "weak").glob("seed1.*"):
        stale.unlink()
    write_method(results, "weak@rqvae_native", [7] * 10)
    with pytest.raises(BenchmarkError, match=(
            r"toy/loo/weak@rqvae_native/seed0\.json: semantic IDs from `ours`, but "
            r"weak@rqvae_native's name says `published:rqvae_native` \(one method, one ID "
            r"source\)")):
        report(results, tmp_path)


def test_another_evaluation_population_goes_to_a_marked_table_without_verdicts(results,
                                                                              tmp_path):
    """A run on a superseded sample is neither compared in the table nor refused: it is shown
    apart, marked, and untested (a re-run to every user proceeds method by method)."""
    edit_json(results, "weak", lambda r: r.update(eval_users={"sample": 10, "seed": 1}))
    text = report(results, tmp_path)
    assert leaderboard_methods(text) == ["sasrec_id", "random"]
    rest = text.split("## Superseded evaluation samples", 1)[1]
    assert "toy, `loo`, sample of 10 (seed 1)" in rest and "| weak | 1 |" in rest


def test_unrecorded_cutoffs_and_eval_users_do_not_split_a_table(results, tmp_path):
    """Cutoffs are compared only where recorded; a file without `eval_users` (result schema
    1) evaluated every user, as `"all"` says."""
    edit_json(results, "weak", lambda r: r["harness"].update(cutoffs=[5, 10, 20]))
    edit_json(results, "sasrec_id", lambda r: r.update(eval_users="all"))
    assert "| weak " in report(results, tmp_path)


def test_a_list_methods_length_only_makes_hr100_na(results, tmp_path):
    write_method(results, "random", [None] * 5 + [3] * 5, list_length=20)
    header, *rows = tables(report(results, tmp_path))[0]
    by = {r[0].strip("*"): dict(zip(header, r)) for r in rows}
    hr100 = next(h for h in header if h.startswith("HR@100"))
    assert by["random"][hr100] == "n/a" and by["weak"][hr100] != "n/a"


def test_the_majority_decides_the_odd_one_out_even_against_the_reference(results, tmp_path):
    edit_json(results, "sasrec_id", lambda r: r["harness"].update(mask_history=False))
    with pytest.raises(BenchmarkError, match=r"sasrec_id/seed0\.json: harness\.mask_history is "
                                             r"`false`, but 2 of the 3"):
        report(results, tmp_path)


def test_on_a_tie_the_reference_decides(results, tmp_path):
    (folder(results, "random") / "seed0.json").unlink()
    edit_json(results, "sasrec_id", lambda r: r["harness"].update(mask_history=False))
    with pytest.raises(BenchmarkError, match=r"weak/seed0\.json: harness\.mask_history is `true`, "
                                             r"but 1 of the 2 runs of toy/loo have `false`"):
        report(results, tmp_path)
    from benchmark.result_checks import majority

    assert majority(["a", "b", "b", "a"], [False, False, True, False]) == "b"
    assert majority(["a", "b"], [False, False]) == "a"  # no reference among them: the first


def test_test_cases_are_the_majoritys_not_the_references(results, tmp_path):
    """The reference evaluated on other users is the odd one out when most runs agree."""
    others = [f"u{i:02d}" for i in range(1, 11)]
    write_method(results, "sasrec_id", [3] * 10, users=others)
    with pytest.raises(BenchmarkError, match=r"sasrec_id/seed0\.json: 1 of its 10 users are not "
                                             r"among the 10 users of random/seed0\.json"):
        report(results, tmp_path)


def test_an_id_that_reads_as_missing_is_read_as_an_id(tmp_path):
    """A per-user file of users "NA" and "null" (made before the loaders refused such ids) is
    read with those ids, not NaN, and the report does not fail with an internal error."""
    from benchmark.results import _read_per_user

    path = tmp_path / "seed0.per_user.csv"
    path.write_text("user_id,target_item_id,rank,cold_item\nNA,null,3,\nu2,i2,,\n")
    table = _read_per_user(path)
    assert table["user_id"].tolist() == ["NA", "u2"]
    assert table["target_item_id"].tolist() == ["null", "i2"]
    assert table["rank"].isna().tolist() == [False, True]
    assert table["cold_item"].isna().all()


def test_a_sample_the_dataset_no_longer_uses_gets_no_verdict_even_alone(results, tmp_path,
                                                                         monkeypatch):
    """The dataset's YAML names every user; runs on a sample are superseded even while no
    all-user run exists yet, so no table, mark or finding is built on them."""
    from benchmark import settings

    configs = tmp_path / "datasets"
    configs.mkdir()
    (configs / "toy.yaml").write_text("loader: atomic\neval_users: all\n")
    monkeypatch.setattr(settings, "DATASET_CONFIG_DIR", configs)
    for method in ("sasrec_id", "weak", "random"):
        edit_json(results, method, lambda r: r.update(eval_users={"sample": 10, "seed": 1}))
    text = report(results, tmp_path)
    assert "## toy — " not in text and "## Findings" not in text
    assert "toy, `loo`, sample of 10 (seed 1)" in text.split("## Superseded evaluation", 1)[1]
