"""The report, built from hand-written per-user files, says what a hand computation says.

Ten test users (u00..u09); NDCG@10 of a 1-based rank r is 1/log2(r + 1): rank 1 -> 1, rank 3 ->
1/2, rank 7 -> 1/3, rank 20 or a miss -> 0. The default profile's settings apply (reference
sasrec_id, fallback popularity, 1,000 bootstrap resamples).
"""

import json

import numpy as np
import pytest
from conftest import written_metrics

from benchmark.errors import BenchmarkError
from benchmark.report import write_report

USERS = [f"u{i:02d}" for i in range(10)]
HISTORY = ["short"] * 5 + ["long"] * 5


def write_method(root, method, ranks, seed=0, users=USERS, fit_seconds=1.0, split="abc",
                 curve=(), list_length=None):
    """One seed of one method: a per-user CSV as the runner writes it, and a minimal JSON with
    the metrics of those ranks (a ``list_length``: a method that returns top-K lists)."""
    folder = root / "toy" / "loo" / method
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id,target_item_id,rank,history_bucket,popularity_bucket,cold_item"]
    lines += [f"{u},i{n},{'' if r is None else r},{h},,"
              for n, (u, r, h) in enumerate(zip(users, ranks, HISTORY))]
    csv = folder / f"seed{seed}.per_user.csv"
    csv.write_text("\n".join(lines) + "\n")
    result = {
        "schema_version": 2, "method": method, "seed": seed, "protocol": "loo",
        "profile": "default", "split_hash": split, "cold_set_hash": None, "cold_set_size": 0,
        "n_valid_cases": 10, "n_test_cases": 10, "list_length": list_length,
        "output": "scores" if list_length is None else "ranking",
        "metrics": written_metrics(csv, list_length),
        "dataset": {"name": "toy",
                    "stats": {"n_users": 10, "n_items": 50, "n_interactions": 200}},
        "harness": {"mask_history": True, "top_k": 20},
        "environment": {"git_commit": "0123456789abcdef",
                        "hardware": {"device": "cpu", "torch_threads": 2}},
        "timing": {"fit_seconds": fit_seconds, "inference_seconds": 0.5},
        "peak_rss_mb": 100.0, "parameters": {"trainable": 1000},
        "training": {"stop_reason": "early_stop", "examples_seen": 0, "curve": list(curve)},
        "diagnostics": {},
    }
    (folder / f"seed{seed}.json").write_text(json.dumps(result))


def without_summary(text):
    """The report without its first-screen Summary section (tested on its own below)."""
    if "\n## Summary\n" not in text:
        return text
    before, rest = text.split("\n## Summary\n", 1)
    return before + ("\n## " + rest.split("\n## ", 1)[1] if "\n## " in rest else "")


def tables(text):
    """Every pipe table of the report in order (the Summary left out), as lists of rows of
    stripped cells."""
    text = without_summary(text)
    out, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            if current is None:
                current = []
                out.append(current)
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not set("".join(cells)) <= set("-:"):  # skip the separator row
                current.append(cells)
        else:
            current = None
    return out


def report(results, tmp_path):
    return write_report(results, tmp_path / "REPORT.md").read_text()


@pytest.fixture
def main_run(tmp_path):
    """sasrec_id ranks every target 3rd (NDCG@10 = 1/2); weak 7th (1/3); strong has two seeds,
    1st and 7th (per-user mean 2/3); mixed, a top-20 list, alternates hits and misses (0.55
    overall)."""
    results = tmp_path / "results"
    write_method(results, "sasrec_id", [3] * 10)
    write_method(results, "weak", [7] * 10)
    write_method(results, "strong", [1] * 10, seed=0, fit_seconds=2.0)
    write_method(results, "strong", [7] * 10, seed=1, fit_seconds=4.0)
    write_method(results, "mixed", [1, None, 1, 20, 1, 20, 1, 20, 1, 3], list_length=20)
    return report(results, tmp_path)


def test_header_names_the_reference(main_run):
    assert ("10 users, 50 items, 200 interactions; evaluation users: all; n = 10 test cases, "
            "10 validation cases; split `abc`. Reference for significance: **sasrec_id**."
            ) in main_run
    assert "1,000 resamples in the tables" in main_run


def test_leaderboard_is_ordered_by_ndcg10_with_seeds_averaged(main_run):
    header, *rows = tables(main_run)[0]
    col = {name: header.index(name) for name in
           ("NDCG@10 [95% CI]", "NDCG@10 over seeds: mean ± std (n: per seed)", "fit s", "HR@10 [95% CI]")}
    assert [r[0] for r in rows] == ["strong", "mixed", "**sasrec_id**", "weak"]
    by = {r[0]: r for r in rows}
    # strong: per-user (1 + 1/3) / 2 = 2/3 for every user, a constant +1/6 over the reference
    # its two seeds disagree (1 and 1/3), so the seed-aware rule sees no difference (p = 0.70
    # on 1 degree of freedom), though every user's seed average is 1/6 above the reference
    assert by["strong"][col["NDCG@10 [95% CI]"]] == "0.6667 [0.6667, 0.6667]"
    # seed means 1 and 1/3: sample std (n - 1) = 0.4714; a single seed shows no spread at all
    assert (by["strong"][col["NDCG@10 over seeds: mean ± std (n: per seed)"]]
            == "0.6667 ± 0.4714 (2: 1.0000, 0.3333)")
    assert by["weak"][col["NDCG@10 over seeds: mean ± std (n: per seed)"]] == "single seed"
    assert by["strong"][col["fit s"]] == "3.0"  # timings are averaged over seeds too
    # ranks 1 and 7 both hit the top 10, as does the reference's 3: no difference, no mark
    assert by["strong"][col["HR@10 [95% CI]"]] == "1.0000 [1.0000, 1.0000]"
    assert by["weak"][col["NDCG@10 [95% CI]"]] == "0.3333 [0.3333, 0.3333] ▼"
    assert by["**sasrec_id**"][col["NDCG@10 [95% CI]"]] == "0.5000 [0.5000, 0.5000]"
    # mixed: differences of +-1/2 around the reference: a mean of 0.55, not significant
    mixed = by["mixed"][col["NDCG@10 [95% CI]"]]
    assert mixed.startswith("0.5500 [") and mixed.endswith("]")


def test_slices_and_paired_tests(main_run):
    slices, paired = tables(main_run)[1:3]
    assert slices[0] == ["method", "short (n=5)", "medium (n=0)", "long (n=5)"]
    by = {r[0]: r[1:] for r in slices[1:]}
    assert by["strong"] == ["0.6667 [0.6667, 0.6667]", "n/a", "0.6667 [0.6667, 0.6667]"]
    assert by["weak"][0] == "0.3333 [0.3333, 0.3333] ▼"
    # mixed, short users: 1, 0, 1, 0, 1 -> 0.6; long users: 0, 1, 0, 1, 1/2 -> 0.5
    assert by["mixed"][0].startswith("0.6000 [") and by["mixed"][0].endswith("]")
    assert by["mixed"][2].startswith("0.5000 [") and by["mixed"][2].endswith("]")
    assert ("### Paired tests against sasrec_id (NDCG@10, Holm within each family and slice; "
            "cold slices against `random`)" in main_run)
    assert paired[0] == ["slice", "method", "against", "family (m)", "seeds", "Δ [95% CI]",
                         "MDE (80%, α/m)", "seed-aware p (Holm): the rule", "t-test p (Holm)",
                         "Wilcoxon p (Holm)"]
    rows = {(r[0], r[1]): r[2:] for r in paired[1:]}
    assert [r[1] for r in paired[1:] if r[0] == "all"] == ["strong", "mixed", "weak"]
    # none of the toy methods is in the profile's families: they form `unlisted`, m = 3
    # weak: a constant difference on one seed each: no variance, the rule's p is 0
    assert rows["all", "weak"][:4] == ["sasrec_id", "unlisted (3)", "1x1",
                                       "-0.1667 [-0.1667, -0.1667]"]
    assert rows["all", "weak"][5:7] == ["**0**", "0"]
    # strong: the user-level tests see a constant +1/6 (p = 0); its two seeds' means, 1 and
    # 1/3, give the rule a seed part of var(1, 1/3) / 2 = 1/9 on 1 degree of freedom: t = 1/2,
    # p = 0.705, x 3 by Holm -> 1; the interval is +1/6 -+ 12.7062 x 1/3
    assert rows["all", "strong"][2:4] == ["2x1", "+0.1667 [-4.0687, +4.4021]"]
    assert rows["all", "strong"][5:7] == ["**1**", "0"]
    assert rows["all", "mixed"][3].startswith("+0.0500 [")
    assert float(rows["all", "mixed"][5].strip("*")) > 0.5
    # differences cancel: nothing to test, p = 1
    assert rows["history_bucket=long", "mixed"][3].startswith("+0.0000 [")
    assert rows["history_bucket=long", "mixed"][5:7] == ["**1**", "1"]


def test_holm_m_counts_the_listed_members_of_the_family(tmp_path):
    """sasrec_sid is the only `main` method with results; its family lists 11 methods, so its
    p is multiplied by 11, and popularity's (in `baselines`, 3 listed) by 3. With one seed on
    each side the rule has no seed part: it is the paired t-test over users."""
    from scipy import stats

    results = tmp_path / "results"
    ref = [3, 3, 3, 3, 3, 3, 3, 3, 3, 3]
    sid = [1, 3, 1, 7, 1, 3, 1, 3, 1, 3]
    pop = [7, 3, 7, 7, 3, 7, 7, 3, 7, 7]
    for name, ranks in (("sasrec_id", ref), ("sasrec_sid", sid), ("popularity", pop)):
        write_method(results, name, ranks)
    text = report(results, tmp_path)
    paired = tables(text.split("### Paired tests against", 1)[1])[0]
    rows = {r[1]: r for r in paired[1:] if r[0] == "all"}

    def ndcg(r):
        return [1 / __import__("math").log2(x + 1) for x in r]

    p_sid = stats.ttest_rel(ndcg(sid), ndcg(ref)).pvalue
    p_pop = stats.ttest_rel(ndcg(pop), ndcg(ref)).pvalue
    assert rows["sasrec_sid"][3] == "main (11)" and rows["popularity"][3] == "baselines (3)"
    assert float(rows["sasrec_sid"][7].strip("*")) == pytest.approx(min(1, 11 * p_sid), rel=1e-2)
    assert float(rows["popularity"][7].strip("*")) == pytest.approx(min(1, 3 * p_pop), rel=1e-2)
    assert rows["sasrec_sid"][8] == rows["sasrec_sid"][7].strip("*")  # = the t-test's
    # MDE at alpha / 11 with n = 10: (t_{1-0.05/22, 9} + t_{0.8, 9}) * sd / sqrt(10)
    d = np.array(ndcg(sid)) - np.array(ndcg(ref))
    mde = (stats.t.ppf(1 - 0.05 / 22, 9) + stats.t.ppf(0.8, 9)) * d.std(ddof=1) / np.sqrt(10)
    assert float(rows["sasrec_sid"][6]) == pytest.approx(mde, abs=1e-4)


def test_popularity_is_the_reference_when_sasrec_id_has_no_results(tmp_path):
    results = tmp_path / "results"
    write_method(results, "popularity", [3] * 10)
    write_method(results, "strong", [1] * 10)
    text = report(results, tmp_path)
    assert ("Reference for significance: **popularity** (sasrec_id has no results here).") in text
    rows = tables(text)[0][1:]
    assert [r[0] for r in rows] == ["strong", "**popularity**"]
    assert "1.0000 [1.0000, 1.0000] ▲" in rows[0]
    assert "### Paired tests against popularity" in text


def test_methods_on_different_users_are_an_error_or_skipped_with_lenient(tmp_path, capsys):
    """Per-user values are paired by position: a file on other users is never compared."""
    results = tmp_path / "results"
    write_method(results, "sasrec_id", [3] * 10)
    write_method(results, "weak", [7] * 10)
    write_method(results, "strong", [1] * 10, users=[f"u{i:02d}" for i in range(1, 11)])
    with pytest.raises(BenchmarkError, match=r"strong/seed0\.json: 1 of its 10 users are not "
                                             r"among the 10 users of sasrec_id/seed0\.json"):
        report(results, tmp_path)
    assert not (tmp_path / "REPORT.md").exists()

    text = write_report(results, tmp_path / "REPORT.md", lenient=True).read_text()
    assert "warning: skipped " in capsys.readouterr().err
    skipped, leaderboard, slices, paired = tables(text)[:4]
    assert skipped[0] == ["file", "why"] and len(skipped) == 2
    assert skipped[1][0] == "`toy/loo/strong/seed0.json`" and "1 of its 10 users" in skipped[1][1]
    # the methods on the reference's users are still compared, with their marks
    assert "Reference for significance: **sasrec_id**." in text
    assert [r[0] for r in leaderboard[1:]] == ["**sasrec_id**", "weak"]
    assert leaderboard[2][leaderboard[0].index("NDCG@10 [95% CI]")] == "0.3333 [0.3333, 0.3333] ▼"
    assert [(r[1], r[5].split()[0]) for r in paired[1:] if r[0] == "all"] == [("weak", "-0.1667")]
    assert all("strong" not in row[0] for row in slices + paired)


def test_a_method_on_another_split_of_the_same_users_is_an_error(tmp_path):
    """Same users and targets but another split hash (training data or histories changed, as
    when the cold-start protocol gained its cold-validation set): never compared."""
    results = tmp_path / "results"
    write_method(results, "sasrec_id", [3] * 10)
    write_method(results, "stale", [1] * 10, split="old")
    with pytest.raises(BenchmarkError, match=r"stale/seed0\.json: its split `old` is not the "
                                             r"split `abc` of sasrec_id/seed0\.json"):
        report(results, tmp_path)
    text = write_report(results, tmp_path / "REPORT.md", lenient=True).read_text()
    assert "`toy/loo/stale/seed0.json`" in text
    assert "| stale" not in text.split("## Skipped files", 1)[1].split("\n## ", 2)[-1]


def test_compute_table_sums_fit_and_inference_per_method(tmp_path):
    results = tmp_path / "results"
    write_method(results, "sasrec_id", [3] * 10, fit_seconds=59.5)
    write_method(results, "strong", [1] * 10, seed=0, fit_seconds=120.0)
    write_method(results, "strong", [7] * 10, seed=1, fit_seconds=240.0)
    write_method(results, "recbole_sasrec", [2] * 10, fit_seconds=599.5)
    section = report(results, tmp_path).split("## Compute", 1)[1].split("\n## ", 1)[0]
    rows = {r[0]: r[1:] for r in tables(section)[0]}
    assert rows["strong"] == ["3.0"]  # seeds averaged: (120 + 240) / 2 + 0.5 s inference
    assert rows["sasrec_id"] == ["1.0"]
    assert rows["recbole_sasrec (peer)"] == ["10.0"]
    assert rows["**total without peers**"] == ["**4.0**"]  # the peer is left out
    # Every seed once: 60 + 120.5 + 240.5 s = 7.0 minutes (what the seeds cost together).
    assert rows["every seed's runs, without peers"] == ["7.0"]


def test_curve_table_says_where_each_method_stood(tmp_path):
    results = tmp_path / "results"
    write_method(results, "sasrec_id", [3] * 10, curve=[
        {"examples": 100, "seconds": 1.0, "valid_ndcg10": 0.1},
        {"examples": 200, "seconds": 2.0, "valid_ndcg10": 0.3},
        {"examples": 300, "seconds": 3.0, "valid_ndcg10": 0.2}])
    write_method(results, "slow", [7] * 10, curve=[
        {"examples": 1000, "seconds": 10.0, "valid_ndcg10": 0.05},
        {"examples": 2000, "seconds": 20.0, "valid_ndcg10": 0.08}])
    write_method(results, "flat", [7] * 10)  # no curve: not in the table
    text = report(results, tmp_path)
    section = text.split("## Quality vs training compute", 1)[1].split("\n## ", 1)[0]
    header, *rows = tables(section)[0]
    by = {r[0]: dict(zip(header, r)) for r in rows}
    assert set(by) == {"sasrec_id", "slow"}
    assert by["sasrec_id"]["best valid NDCG@10"] == "0.3000"
    assert by["sasrec_id"]["examples at best"] == "200" and by["sasrec_id"]["still rising"] == "no"
    assert by["slow"]["still rising"] == "yes" and by["slow"]["examples at last"] == "2,000"
    assert (results / "plots" / "toy_loo_curves.png").is_file()


def _findings_rows(findings: str) -> dict[str, list[str]]:
    """The Findings table rows by their comparison cell."""
    return {r[0]: r for r in tables(findings)[0][1:]}


def test_findings_state_verdicts_by_the_fixed_rule(tmp_path):
    results = tmp_path / "results"
    write_method(results, "sasrec_id", [3] * 10)
    write_method(results, "sasrec_sid", [1] * 10)  # +1/2 for every user: significant
    write_method(results, "recformer", [3, 3, 3, 3, 3, 3, 3, 3, 1, 7])  # +1/2 and -1/6: not
    text = report(results, tmp_path)
    findings = text.split("## Findings", 1)[1].split("\n## ", 1)[0]
    assert "- Best NDCG@10: `sasrec_sid`, 1.0000 [1.0000, 1.0000]." in findings
    assert "- Better than `sasrec_id`: `sasrec_sid` (Δ +0.5000)." in findings
    assert ("- Not significantly different from `sasrec_id`: `recformer` (Δ +0.0333)."
            in findings)
    assert "- Worse than `sasrec_id`: none." in findings
    rows = _findings_rows(findings)
    assert rows["`sasrec_sid` vs `sasrec_id`"][1:] == [
        "+0.5000", "[+0.5000, +0.5000]", "1x1", "0", "main (11)", "better", "n/a"]
    recformer = rows["`recformer` vs `sasrec_id`"]
    assert recformer[1] == "+0.0333" and recformer[5:7] == ["main (11)", "no difference"]
    assert float(recformer[7]) > 0.0333  # the test could not detect a difference this small


def test_the_rule_counts_the_seed_spread(tmp_path):
    """Both sides with two seeds. `sasrec_sid` is +1/2 over the reference in both seeds;
    `recformer` is +1/2 in one seed and 0 in the other: every user's seed average is +1/4 (the
    user-level t-test's p is 0), but with seeds this far apart the rule sees no difference."""
    results = tmp_path / "results"
    for seed in (0, 1):
        write_method(results, "sasrec_id", [3] * 10, seed=seed)
        write_method(results, "sasrec_sid", [1] * 10, seed=seed)
        write_method(results, "recformer", [1] * 10 if seed == 0 else [3] * 10, seed=seed)
    text = report(results, tmp_path)
    paired = tables(text.split("### Paired tests against", 1)[1])[0]
    rows = {r[1]: r for r in paired[1:] if r[0] == "all"}
    assert rows["sasrec_sid"][4:8] == ["2x2", "+0.5000 [+0.5000, +0.5000]", "n/a", "**0**"]
    # recformer's seed means 1 and 1/2: seed part var / 2 = 1/16, se 1/4, t = 1 on 1 df:
    # p = 0.5, x 11 by Holm -> 1; the user-level t-test alone would call it better (p = 0)
    assert rows["recformer"][7:9] == ["**1**", "0"]
    findings = text.split("## Findings", 1)[1].split("\n## ", 1)[0]
    assert "- Better than `sasrec_id`: `sasrec_sid` (Δ +0.5000)." in findings
    assert ("- Not significantly different from `sasrec_id`: `recformer` (Δ +0.2500)."
            in findings)
    assert _findings_rows(findings)["`recformer` vs `sasrec_id`"][1:6] == [
        "+0.2500", "[-2.9266, +3.4266]", "2x2", "1", "main (11)"]


def test_findings_test_every_main_method_against_popularity(tmp_path):
    """The floor line: NDCG@10 at rank r is 1 / log2(r + 1): popularity at rank 5 scores
    0.3869; rank 1 and rank 3 everywhere are constant gains (t-test p = 0, above); a method
    equal to popularity but for one user up and one down is not different."""
    results = tmp_path / "results"
    write_method(results, "sasrec_id", [3] * 10)
    write_method(results, "popularity", [5] * 10)
    write_method(results, "recformer", [1] * 10)
    write_method(results, "sid_llm", [5] * 8 + [1, 7])
    write_method(results, "item_knn", [1] * 10)  # not in the main family: not listed
    findings = report(results, tmp_path).split("## Findings", 1)[1].split("\n## ", 1)[0]
    line = next(x for x in findings.splitlines() if x.startswith("- Against `popularity`"))
    assert line == ("- Against `popularity` (NDCG@10 0.3869): above: `recformer`, `sasrec_id`; "
                    "not different: `sid_llm`; below: none.")
    rows = _findings_rows(findings)
    assert rows["`recformer` vs `popularity`"][1:7] == [
        "+0.6131", "[+0.6131, +0.6131]", "1x1", "0", "all (3)", "better"]
    assert rows["`sid_llm` vs `popularity`"][1] == "+0.0560"
    assert rows["`sid_llm` vs `popularity`"][6] == "no difference"
    assert not any("item_knn" in key for key in rows)


def test_the_summary_states_the_verdicts_the_leaderboard_marks(main_run):
    summary = main_run.split("\n## Summary\n", 1)[1].split("\n## ", 1)[0]
    header, *rows = [[c.strip() for c in line.strip().strip("|").split("|")]
                     for line in summary.splitlines()
                     if line.startswith("|") and not set(line) <= set("|-: ")]
    by = {r[1]: r for r in rows}
    loo = header.index("NDCG@10 loo (vs sasrec_id)")
    # the leaderboard marks weak ▼ and strong nothing (its seeds disagree): the same words here
    assert by["weak"][loo] == "0.3333 (worse)"
    assert by["strong"][loo] == "0.6667 (no difference)"
    assert by["sasrec_id"][loo] == "0.5000 (reference)"
    assert "![" in summary  # the quality-vs-compute figure leads


def _archive_tool():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "tools" / "archive_verdicts.py"
    spec = importlib.util.spec_from_file_location("archive_verdicts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EARLIER_REPORT = """## Findings

### toy, leave-one-out (`loo`)

- Best NDCG@10: `recformer_zeroshot`, 1.0000 [1.0000, 1.0000].
- `sasrec_sid` is not significantly different from `sasrec_id` (Δ +0.0100; users x seeds).
- `recformer_zeroshot` is significantly better than `sasrec_id` (Δ +0.2000; users x seeds).
- `said` is significantly worse than `sasrec_id` (Δ -0.1000; users x seeds).
- Against `popularity` (NDCG@10 0.3000; paired t-test): `said` below.

### toy, cold-start items (`cold_item`)

- Best NDCG@10: `sasrec_id`, 0.5000 [0.5000, 0.5000].
"""


def test_findings_name_each_changed_verdict_from_the_archive_of_earlier_ones(tmp_path):
    """The archive tool parses the earlier REPORT's sentences (an old method name becomes the
    new one) and recomputes them from the earlier per-user files by today's rule; the report
    then names every verdict that moved, old and new, the ones that stand, the ones not re-run."""
    tool = _archive_tool()
    csv = "user_id,target_item_id,rank\n" + "".join(f"{u},i,{{}}\n" for u in USERS)
    old = {"sasrec_id": [3] * 10, "sasrec_sid": [3] * 9 + [1], "recformer_zeroshot": [1] * 10,
           "said": [7] * 10, "popularity": [5] * 10}
    files = {f"results/toy/loo/{m}/seed0.per_user.csv": csv.format(*r) for m, r in old.items()}
    files["REPORT.md"] = EARLIER_REPORT
    archive = tool.archive(files.__getitem__, sorted(files), "toy", "a sample", "REPORT.md at x")
    loo = archive["protocols"]["loo"]
    assert list(archive["protocols"]) == ["loo"]  # no cold_item files: nothing archived
    assert loo["published"]["verdicts"] == {
        "sasrec_sid": {"delta": 0.01, "verdict": "no difference"},
        "recformer_pretrained": {"delta": 0.2, "verdict": "better"},
        "said": {"delta": -0.1, "verdict": "worse"}}
    assert loo["published"]["popularity"] == 0.3
    redone = loo["one_rule"]["verdicts"]
    assert redone["recformer_pretrained"]["verdict"] == "better"  # +1/2 for every user
    assert redone["sasrec_sid"]["verdict"] == "no difference"  # one user of ten moved
    assert redone["said"]["delta"] == pytest.approx(1 / 3 - 1 / 2)

    results = tmp_path / "results"
    write_method(results, "sasrec_id", [3] * 10)
    write_method(results, "sasrec_sid", [1] * 10)
    write_method(results, "recformer_pretrained", [3] * 8 + [1, 7])
    write_method(results, "popularity", [5] * 10)
    (results / "toy" / "earlier-verdicts.json").write_text(json.dumps(archive))
    findings = report(results, tmp_path).split("## Findings", 1)[1].split("\n## ", 1)[0]
    assert ("- Since the earlier evaluation (a sample; REPORT.md at x), verdicts against "
            "`sasrec_id` changed for: `sasrec_sid` no difference (Δ +0.0100) → better "
            "(Δ +0.5000); `recformer_pretrained` better (Δ +0.2000) → no difference "
            "(Δ +0.0333). Unchanged: none. Not yet re-run on today's users: `said`.") in findings
    assert "- Then and now: `popularity` scored 0.3000 then and 0.3869 now." in findings
    (results / "toy" / "earlier-verdicts.json").unlink()
    assert "Since the earlier" not in report(results, tmp_path)


def test_the_committed_archive_of_earlier_verdicts_agrees_with_its_own_files():
    """Amazon's archive (tools/archive_verdicts.py at the commit it names): the Δ each
    published sentence states equals the one recomputed from that commit's per-user files."""
    from pathlib import Path

    path = (Path(__file__).resolve().parent.parent / "results" / "amazon-scientific"
            / "earlier-verdicts.json")
    archive = json.loads(path.read_text())
    for entry in archive["protocols"].values():
        redone = entry["one_rule"]["verdicts"]
        for name, said in entry["published"]["verdicts"].items():
            assert said["delta"] == pytest.approx(redone[name]["delta"], abs=5e-5), name
        assert entry["published"]["popularity"] == pytest.approx(
            entry["one_rule"]["methods"]["popularity"]["ndcg10"], abs=5e-5)
