"""The Findings section: sentences computed from the results by the one rule of
benchmark.comparisons (best method, claims against the reference and against `popularity`, cold
targets), what README may quote."""

from __future__ import annotations

import numpy as np

from benchmark.comparisons import compare, verdict
from benchmark.evaluation import HEADLINE
from benchmark.report_comparison import Comparison
from benchmark.report_format import PROTOCOL_TITLES, _p
from benchmark.settings import HarnessSettings


def _verdict(test: dict) -> str:
    """The one rule (benchmark.comparisons), in words."""
    return {1: "significantly better than", -1: "significantly worse than",
            0: "not significantly different from"}[verdict(test)]


def _claim(name: str, test: dict, reference: str) -> str:
    lo, hi = test["diff_ci95"]
    mde = test["mde"]
    tail = "" if verdict(test) or not np.isfinite(mde) else (
        f"; the test could detect {mde:.4f} at 80% power")
    seeds = "x".join(map(str, test["seeds"]))
    items = f", {test['clusters']} target items as clusters" if test.get("clusters") else ""
    return (f"`{name}` is {_verdict(test)} `{reference}` (Δ {test['mean_diff']:+.4f}, 95% CI "
            f"[{lo:+.4f}, {hi:+.4f}], seed-aware test on {seeds} seeds{items}: Holm p = "
            f"{_p(test['p_holm'])}, family {test['family']} of {test['m']}{tail})")


def _findings(found: dict, settings: HarnessSettings) -> list[str]:
    """Sentences computed from the results by the one rule of benchmark.comparisons: what
    README may quote."""
    lines: list[str] = []
    for (dataset, protocol), methods in sorted(found.items(),
                                               key=lambda kv: (kv[0][0], kv[0][1] != "loo")):
        c = Comparison.of(methods, settings)
        if not c.reference:
            continue
        best = c.order[0]
        v = methods[best].per_user(HEADLINE)
        lo, hi = c.ci(v)
        out = [f"- Best {HEADLINE}: `{best}`, {v.mean():.4f} [{lo:.4f}, {hi:.4f}]"
               f"{' (the reference)' if best == c.reference else ''}."]
        tests = c.tests(HEADLINE)
        for name in c.order:
            if name in tests and tests[name]["family"] == "main":
                out.append(f"- {_claim(name, tests[name], c.reference)}.")
        floor = _against_popularity(c, settings)
        if floor:
            out.append(floor)
        for label, _, mask in c.slices:
            if label != "cold_item=cold":
                continue
            means = c.slice_means_of(mask)
            hits = [n for n in c.order if means.get(n, 0.0) > 0]
            n = int(mask.sum())
            if not hits:
                out.append(f"- Cold targets (n = {n}): no method puts one in the top 10.")
                continue
            top = max(hits, key=lambda m: means[m])
            cold_tests = c.tests(HEADLINE, mask, label)
            floor = c.reference_for(label)
            sentence = (f"- Cold targets (n = {n}): {len(hits)} of {len(c.order)} methods put "
                        f"one in the top 10 ({', '.join(f'`{h}`' for h in hits)}); best "
                        f"`{top}`, {HEADLINE} {means[top]:.4f} against {means.get(floor, 0.0):.4f}"
                        f" for `{floor}`")
            if top in cold_tests:
                sentence += f": {_claim(top, cold_tests[top], floor)}"
            above = [h for h in hits if h != top and verdict(cold_tests.get(h)) > 0]
            if above:
                sentence += (f"; also above `{floor}` by the same test: "
                             + ", ".join(f"`{h}`" for h in above))
            out.append(sentence + ".")
        lines += [f"### {dataset}, {PROTOCOL_TITLES.get(protocol, protocol)}", "", *out, ""]
    if not lines:
        return []
    return ["## Findings", "",
            "Generated from the result files by one rule, the same that puts every ▲ / ▼ in "
            "the tables: a difference is claimed only where the seed-aware test (users and "
            "training seeds both random; `benchmark/seed_test.py`) against the reference gives "
            "a Holm-corrected p < 0.05 within the method's family (the profile's `families`). "
            "Cold targets are compared with `random`, with the target items as clusters. "
            "Methods of the `main` family are listed; the tables below have every method.",
            "", *lines]


def _against_popularity(c: Comparison, settings: HarnessSettings) -> str | None:
    """The floor every paradigm should clear: each `main`-family method (and the reference)
    against `popularity` by the one rule, Holm across those tests."""
    pop = c.methods.get("popularity")
    if pop is None:
        return None
    main = set((settings.families or {}).get("main", []))
    per_seed = {"popularity": pop.per_seed(HEADLINE)}
    for name in c.order:
        if name in main or name == c.reference:
            per_seed[name] = c.methods[name].per_seed(HEADLINE)
    tests = compare(per_seed, "popularity", None)
    if not tests:
        return None
    parts = []
    for name, t in tests.items():
        d, (lo, hi) = t["mean_diff"], t["diff_ci95"]
        word = {1: "above", -1: "below", 0: "not different"}[verdict(t)]
        parts.append(f"`{name}` {word} (Δ {d:+.4f} [{lo:+.4f}, {hi:+.4f}], p = {_p(t['p_holm'])})")
    return (f"- Against `popularity` ({HEADLINE} {per_seed['popularity'].mean():.4f}; the same "
            f"seed-aware test, Holm over these {len(tests)}): " + "; ".join(parts) + ".")
