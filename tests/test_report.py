"""Report pieces that read method diagnostics."""

import json

from benchmark.report_sections import _steerability
from benchmark.results import MethodRuns


def test_steerability_table_is_rendered_from_diagnostics():
    diag = {"steerability": {"users": 50, "top": 10, "template": "Some {genre}, please.",
                             "genres": {"Drama": {"unsteered": 0.5, "steered": 0.75, "lift": 0.25}},
                             "mean_unsteered": 0.5, "mean_steered": 0.75},
            "roundtrip_after_stage1": {"items": 200, "title_to_sid": 0.1, "sid_to_title": 0.2}}
    runs = MethodRuns("talker", results=[{"diagnostics": diag}])
    text = "\n".join(_steerability({("d", "loo"): {"talker": runs}}))
    assert "## Steerability" in text and "| Drama   | 0.5000      | 0.7500    | +0.250 |" in text
    assert "| stage1  | 200     | 0.100" in text
    assert _steerability({("d", "loo"): {"x": MethodRuns("x", results=[{"diagnostics": {}}])}}) == []


def test_steerability_gives_every_seeds_lift_and_round_trip():
    def run(seed: int, steered: float, trip: float) -> dict:
        return {"seed": seed, "diagnostics": {
            "steerability": {"users": 50, "top": 10, "template": "{genre}",
                             "genres": {"Drama": {"unsteered": 0.5, "steered": steered,
                                                  "lift": steered - 0.5}},
                             "mean_unsteered": 0.5, "mean_steered": steered},
            "roundtrip_after_stage1": {"items": 200, "title_to_sid": trip, "sid_to_title": 0.0}}}

    runs = MethodRuns("talker", results=[run(0, 0.75, 0.01), run(1, 0.45, 0.0)])
    text = "\n".join(_steerability({("d", "loo"): {"talker": runs}}))
    assert "unsteered lists (seed 0)." in text
    assert "Mean lift per seed: seed 0 +0.250, seed 1 -0.050." in text
    assert "Title -> SID after stage 1 per seed: seed 0 0.010, seed 1 0.000." in text
    one = "\n".join(_steerability({("d", "loo"): {"t": MethodRuns("t", results=[run(0, 0.75, 0.01)])}}))
    assert "per seed" not in one


def test_cold_depth_table_gives_ranks_of_cold_targets_only():
    import pandas as pd

    from benchmark.report_tables import _cold_depth

    def runs(name, ranks, list_length=None):
        table = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "target_item_id": ["i", "j", "k", "l"],
                              "rank": ranks,
                              "cold_item": [True, True, True, False]})
        return MethodRuns(name, results=[{"list_length": list_length}], tables=[table])

    methods = {"ref": runs("ref", [900, 1000, 1100, 1]),
               "text": runs("text", [10, 150, 300, 1]),   # better on every cold target
               "gen": runs("gen", [3, None, None, 1], list_length=20)}
    table0 = methods["ref"].tables[0]
    text = "\n".join(_cold_depth(methods, ["text", "ref", "gen"], table0, "ref"))
    assert "(n=3;" in text
    # text: HR@20 = 1/3, HR@100 = 1/3, median 150, mean rank change (153.3 - 1000) = -847
    assert "| text     | 0.333   | 0.333    | 150           | -847" in text
    # gen: a top-20 list; two of three cold targets missed -> median beyond the list, no HR@100
    assert "| gen      | 0.333   | n/a      | > 20          |" in text
    table0_warm = table0.assign(cold_item=[None] * 4)
    assert _cold_depth(methods, ["ref"], table0_warm, "ref") == []


def test_report_reads_results_without_the_runner_or_torch():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import benchmark.report, sys; "
            "assert 'torch' not in sys.modules and 'benchmark.runner' not in sys.modules; "
            "assert not [m for m in sys.modules if m.startswith(('benchmark.models', 'adapters', "
            "'baselines'))]")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_cold_protocol_slices_are_cold_cold_valid_and_warm():
    import pandas as pd

    from benchmark.report_comparison import _slice_masks

    table = pd.DataFrame({"history_bucket": ["short"] * 5, "popularity_bucket": ["head"] * 5,
                          "cold_item": [True, False, False, False, True],
                          "cold_valid": [False, True, False, False, False]})
    masks = {label: (header, mask.tolist()) for label, header, mask in _slice_masks(table)}
    assert masks["cold_item=cold"] == ("cold (n=2)", [True, False, False, False, True])
    assert masks["cold_item=cold_valid"] == ("cold_valid (n=1)", [False, True, False, False, False])
    assert masks["cold_item=warm"] == ("warm (n=2)", [False, False, True, True, False])
    # a version-1 file without the cold_valid column: warm is everything not in C
    old = {label: mask.tolist() for label, _, mask in _slice_masks(table.drop(columns="cold_valid"))}
    assert "cold_item=cold_valid" not in old
    assert old["cold_item=warm"] == [False, True, True, True, False]


def test_slice_columns_come_from_whichever_file_fills_them():
    import pandas as pd

    from benchmark.report_comparison import slice_columns

    old = pd.DataFrame({"user_id": ["a", "b"], "history_bucket": ["short", "long"],
                        "popularity_bucket": ["head", "tail"], "cold_item": [None, None]})
    new = old.assign(tied_target=[True, False])
    merged = slice_columns({"old": MethodRuns("old", tables=[old]),
                            "new": MethodRuns("new", tables=[new])})
    assert merged["tied_target"].tolist() == [True, False]
    assert merged["history_bucket"].tolist() == ["short", "long"]
    assert "tied_target" not in slice_columns({"old": MethodRuns("old", tables=[old])})


def test_a_p_value_never_prints_on_the_wrong_side_of_alpha():
    from benchmark.report_format import _p

    assert _p(0.04995) == "0.04995"  # 3 digits would print "0.05" beside "significant"
    assert _p(0.05004) == "0.05" and _p(0.0599) == "0.0599" and _p(1e-17) == "1e-17"


def test_tokenizer_table_takes_sweep_runs_out_of_the_leaderboards():
    import pandas as pd

    from benchmark.report_tokenizers import split_sweep, tokenizer_section

    def runs(name, ranks, share, interactions=False, cold=None):
        table = pd.DataFrame({"user_id": list("abcd"), "target_item_id": list("ijkl"),
                              "rank": ranks})
        if cold is not None:
            table["cold_item"] = cold
        sid = {"items_with_unique_id_share": share, "distinct_prefixes": [3, 7],
               "uses_interactions": interactions}
        return MethodRuns(name, results=[{"list_length": None,
                                          "diagnostics": {"semantic_ids": sid}}],
                          tables=[table])

    cold = [True, True, False, False]
    found = {
        ("amz", "loo"): {"sasrec_id": runs("sasrec_id", [1, 2, 3, 4], None),
                         "tiger": runs("tiger", [1, 1, 50, 50], 0.6),
                         "tiger@rqvae_native": runs("tiger@rqvae_native", [3, 3, 3, 3], 0.8),
                         "tiger@letter_native": runs("tiger@letter_native", [1, 1, 1, 1], 0.99,
                                                     interactions=True)},
        ("amz", "cold_item"): {"tiger": runs("tiger", [1, 50, 1, 1], 0.6, cold=cold),
                               "tiger@rqvae_native": runs("tiger@rqvae_native", [50, 50, 1, 1],
                                                          0.8, cold=cold)},
    }
    sweep = split_sweep(found)
    assert set(found[("amz", "loo")]) == {"sasrec_id", "tiger"}  # no leaderboard row
    assert set(sweep[("amz", "loo")]) == {"tiger@rqvae_native", "tiger@letter_native"}
    text = "\n".join(tokenizer_section(found, sweep))
    # ours: loo NDCG@10 = (1 + 1 + 0 + 0) / 4 = 0.5; cold slice (users a, b) = (1 + 0) / 2
    rows = {cells[0]: cells[1:] for line in text.splitlines() if line.startswith("| ")
            for cells in [[c.strip() for c in line.strip("|").split("|")]]}
    # ours: loo NDCG@10 = (1 + 1 + 0 + 0) / 4 = 0.5; cold slice (users a, b) = (1 + 0) / 2
    assert rows["ours"][:2] == ["100% (60.0% before the disambiguation level)", "3 / 7"]
    assert rows["ours"][2:4] == ["0.5000", "0.5000"]
    # rqvae_native: rank 3 everywhere -> 1 / log2(4) = 0.5 on loo; cold users ranked 50 -> 0
    assert rows["rqvae_native"][:4] == ["80.0%", "3 / 7", "0.5000", "0.0000"]
    # the index built with interactions gets no cold figure
    assert rows["letter_native (built with interactions of unknown split)"][2:4] == ["1.0000", "—"]


def test_tokenizer_table_says_what_collisions_do_in_numbers():
    import pandas as pd

    from benchmark.report_tokenizers import tokenizer_section

    def runs(name, ranks, share, prefixes):
        table = pd.DataFrame({"user_id": list("abcd"), "target_item_id": list("ijkl"),
                              "rank": ranks})
        sid = {"items_with_unique_id_share": share, "distinct_prefixes": prefixes}
        return MethodRuns(name, results=[{"list_length": None,
                                          "diagnostics": {"semantic_ids": sid}}],
                          tables=[table])

    loo = {"tiger": runs("tiger", [1, 1, 50, 50], 0.5, [3, 7]),
           "tiger@rk_native": runs("tiger@rk_native", [3, 3, 3, 3], 0.7, [4, 8, 9]),
           "tiger@rk_zcr": runs("tiger@rk_zcr", [1, 1, 1, 1], 1.0, [4, 8, 12]),
           "tiger@rq_native": runs("tiger@rq_native", [50, 50, 50, 50], 0.6, [4, 8, 9]),
           "tiger@rq_zcr": runs("tiger@rq_zcr", [1, 1, 50, 50], 1.0, [2, 5, 12])}
    found = {("amz", "loo"): {"tiger": loo.pop("tiger")}}
    text = "\n".join(tokenizer_section(found, {("amz", "loo"): loo}))
    # equal prefixes up to the last level: a controlled pair; rank 3 -> 0.5, rank 1 -> 1.0
    assert ("`rk_native` → `rk_zcr` (items with a unique ID 70.0% → 100.0%; the same prefixes "
            "on every level but the last") in text and "tiger loo 0.5000 → 1.0000" in text
    assert "`rq_native` → `rq_zcr` (items with a unique ID 60.0% → 100.0%; separately built" in text
    # shares (ours counts as 1.0) 1.0, 0.7, 1.0, 0.6, 1.0 against 0.5, 0.5, 1.0, 0.0, 0.5:
    # mid-ranks 4, 2, 4, 1, 4 and 3, 3, 5, 1, 3 -> covariance 6 over sqrt(8 x 8)
    assert "tiger loo ρ = +0.75 (n = 5)" in text
    assert "seed-to-seed sd" not in text  # one seed of ours: no spread to show


def test_explanations_section_shows_the_model_beside_the_baseline_with_examples():
    from benchmark.report_explanations import explanations_section

    rates = {"n": 2, "hallucinated_title_rate": 0.0, "attribute_support": None,
             "history_reference_rate": 1.0, "claims_per_explanation": 0.0, "mean_words": 9.5,
             "facts_with_history": 0.625}
    diag = {"explanations": {"users": 2, "model": rates, "count_based": {**rates, "n": 2},
                             "examples": [{"user": 7, "facts": "Pick: X.",
                                           "explanation": "I picked X.", "baseline": "counted"}]}}
    found = {("ml", "loo"): {"sid_llm": MethodRuns("sid_llm", results=[
        {"seed": 0, "diagnostics": diag}, {"seed": 1, "diagnostics": {}}])}}
    text = "\n".join(explanations_section(found))
    assert "## Explanations" in text and "count-based baseline" in text
    assert "n/a (no claims)" in text and 'sid_llm: "I picked X."' in text
    assert "facts name a history item (ceiling)" in text and "| 0.625 " in text
    assert explanations_section({("ml", "loo"): {"sasrec_id": MethodRuns("sasrec_id", results=[
        {"seed": 0, "diagnostics": {}}])}}) == []


def test_precision_benchmarks_are_rendered_side_by_side(tmp_path):
    """Each ``sid-llm-precision-*.json`` under results/throughput becomes one row with both
    precisions' cost and the paired NDCG difference; a file missing a field is left out."""
    import json

    from benchmark.report_sections import _precision

    assert _precision(tmp_path) == []
    (tmp_path / "throughput").mkdir()
    rec = {"dataset": "toy", "validation_cases": 12, "threads": 2, "load_average_start": [0.3],
           "float32": {"seconds_per_user": 0.12, "tokens_per_second": 700.0},
           "bfloat16": {"seconds_per_user": 0.045, "tokens_per_second": 2100.0},
           "bfloat16_minus_float32_ndcg10": {"mean": 0.0003, "ci95": [-0.0001, 0.0007]}}
    (tmp_path / "throughput" / "sid-llm-precision-toy.json").write_text(json.dumps(rec))
    (tmp_path / "throughput" / "sid-llm-precision-broken.json").write_text("{}")
    lines = "\n".join(_precision(tmp_path)).splitlines()
    row = next(line for line in lines if "`sid-llm-precision-toy.json`" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:9] == ["toy", "12", "2", "0.3", "0.1200", "0.0450", "700", "2100",
                         "+0.00030 [-0.00010, +0.00070]"]
    assert not any("broken" in line for line in lines)


def test_a_method_whose_seeds_ran_different_configs_is_named_under_its_table():
    from benchmark.code_status import config_lines

    def run(seed: int, config: dict) -> dict:
        return {"seed": seed, "config": config}

    same = MethodRuns("a", results=[run(0, {"lr": 0.1, "ids": {"k": 8}}),
                                    run(1, {"lr": 0.1, "ids": {"k": 8}})])
    assert config_lines({"a": same}) == []
    changed = MethodRuns("b", results=[run(0, {"patience": 10, "ids": {"k": 8}}),
                                       run(1, {"patience": 5, "ids": {"k": 16}}),
                                       run(2, {"patience": 5, "ids": {"k": 8}, "new": None})])
    older = MethodRuns("c", results=[run(0, {"precision": "float32"}), run(1, {})])
    (line,) = config_lines({"a": same, "b": changed, "c": older}, yaml_of=lambda r: None)
    assert "a:" not in line and "`new`" not in line  # null and absent both read not recorded
    assert "b: `ids.k` 8 (seeds 0, 2), 16 (seed 1); `patience` 10 (seed 0), 5 (seeds 1, 2)" in line
    assert 'c: `precision` "float32" (seed 0), not recorded (seed 1)' in line


def test_runs_made_before_the_yaml_changed_are_named_with_the_yaml_value():
    from benchmark.code_status import config_lines, yaml_settings

    def run(seed: int, **config) -> dict:
        return {"seed": seed, "method": "tiger", "profile": "default",
                "dataset": {"name": "ml-100k"}, "config": config}

    ml = yaml_settings(run(0))  # the checkout's own YAML, its ml-100k block included
    assert ml is not None and ml["epoch_examples"] == "20000"
    assert "epoch_examples" not in yaml_settings({**run(0), "dataset": {"name": "other"}})
    assert yaml_settings({**run(0), "method": "tiger@rqvae_native"})["semantic_ids.source"] == \
        '"published:rqvae_native"'
    assert yaml_settings({**run(0), "method": "no_such_method"}) is None
    current = {k: json.loads(v) for k, v in ml.items() if "." not in k}
    old = {**current, "patience": current["patience"] + 1}
    runs = MethodRuns("tiger", results=[run(0, **current), run(1, **old), run(2, **old)])
    pooled, drift = config_lines({"tiger": runs})
    assert "`patience`" in pooled
    assert drift.endswith(f"tiger: `patience` {current['patience'] + 1} (seeds 1, 2), "
                          f"YAML {current['patience']}.")
    assert config_lines({"tiger": MethodRuns("tiger", results=[run(0, **current)])}) == []
