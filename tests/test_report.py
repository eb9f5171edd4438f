"""Report pieces that read method diagnostics."""

from benchmark.report import MethodRuns, _steerability


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
