"""The Findings section: short sentences computed from the results by the one rule of
benchmark.comparisons (best method, who is better / not different / worse than the reference,
who clears `popularity`, what the cold targets show), then one table with every number behind
them (difference, interval, seeds, Holm p, family, detectable difference). README quotes the
sentences; the table stays in REPORT."""

from __future__ import annotations

import numpy as np

from benchmark.comparisons import WORDS, compare, verdict
from benchmark.earlier_verdicts import sentences as changes
from benchmark.evaluation import HEADLINE
from benchmark.report_comparison import Comparison
from benchmark.report_format import PROTOCOL_TITLES, _p
from benchmark.settings import HarnessSettings

COLD_WORDS = {1: "significantly above it", 0: "not significantly different",
              -1: "significantly below it"}
HEADER = ["| comparison | Δ NDCG@10 | 95% CI | seeds | Holm p | family (m) | verdict | "
          "detectable Δ (80% power) |", "|:--|--:|:--|:--|--:|:--|:--|--:|"]


def _row(name: str, against: str, test: dict, note: str = "") -> str:
    """One comparison's numbers: the table row behind a sentence."""
    lo, hi = test["diff_ci95"]
    mde = test["mde"]
    seeds = "x".join(map(str, test["seeds"]))
    items = f" ({test['clusters']} target items as clusters)" if test.get("clusters") else ""
    return (f"| `{name}` vs `{against}`{note}{items} | {test['mean_diff']:+.4f} | "
            f"[{lo:+.4f}, {hi:+.4f}] | {seeds} | {_p(test['p_holm'])} | {test['family']} "
            f"({test['m']}) | {WORDS[verdict(test)]} | "
            f"{f'{mde:.4f}' if np.isfinite(mde) else 'n/a'} |")


def _named(tests: dict[str, dict], names: list[str], with_diff: bool = True) -> str:
    if not names:
        return "none"
    return ", ".join(f"`{n}`" + (f" (Δ {tests[n]['mean_diff']:+.4f})" if with_diff else "")
                     for n in names)


def _by_verdict(tests: dict[str, dict], order: list[str]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {1: [], 0: [], -1: []}
    for name in order:
        if name in tests:
            out[verdict(tests[name])].append(name)
    return out


def _section(c: Comparison, methods: dict, settings: HarnessSettings,
             earlier: dict | None = None, protocol: str = "") -> tuple[list[str], list[str]]:
    """(sentences, table rows) of one dataset and protocol; with the dataset's archive of
    ``earlier`` verdicts, the sentences name what changed since (benchmark.earlier_verdicts)."""
    best = c.order[0]
    v = methods[best].per_user(HEADLINE)
    lo, hi = c.ci(v)
    out = [f"- Best {HEADLINE}: `{best}`, {v.mean():.4f} [{lo:.4f}, {hi:.4f}]"
           f"{' (the reference)' if best == c.reference else ''}."]
    tests = {n: t for n, t in c.tests(HEADLINE).items() if t["family"] == "main"}
    groups = _by_verdict(tests, c.order)
    ref = c.reference
    out += [f"- Better than `{ref}`: {_named(tests, groups[1])}.",
            f"- Not significantly different from `{ref}`: {_named(tests, groups[0])}.",
            f"- Worse than `{ref}`: {_named(tests, groups[-1])}."]
    rows = [_row(n, ref, tests[n]) for n in c.order if n in tests]
    floor = _against_popularity(c, settings)
    out += changes(earlier, protocol, tests, floor[0] if floor else None)
    if floor:
        pop_mean, pop_tests = floor
        g = _by_verdict(pop_tests, list(pop_tests))
        out.append(f"- Against `popularity` ({HEADLINE} {pop_mean:.4f}): above: "
                   f"{_named(pop_tests, g[1], False)}; not different: "
                   f"{_named(pop_tests, g[0], False)}; below: "
                   f"{_named(pop_tests, g[-1], False)}.")
        rows += [_row(n, "popularity", t) for n, t in pop_tests.items()]
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
        floor_name = c.reference_for(label)
        sentence = (f"- Cold targets (n = {n}): {len(hits)} of {len(c.order)} methods put one "
                    f"in the top 10; best `{top}`, {means[top]:.4f} against "
                    f"{means.get(floor_name, 0.0):.4f} for `{floor_name}`")
        if top in cold_tests:
            t = cold_tests[top]
            sentence += f", {COLD_WORDS[verdict(t)]} (Δ {t['mean_diff']:+.4f})"
            rows.append(_row(top, floor_name, t, ", cold targets"))
        above = [h for h in hits if h != top and verdict(cold_tests.get(h)) > 0]
        if above:
            sentence += f"; also above `{floor_name}`: " + ", ".join(f"`{h}`" for h in above)
            rows += [_row(h, floor_name, cold_tests[h], ", cold targets") for h in above]
        out.append(sentence + ".")
    return out, rows


def _findings(found: dict, settings: HarnessSettings, earlier: dict[str, dict] | None = None
              ) -> list[str]:
    """Sentences computed from the results by the one rule of benchmark.comparisons (what
    README quotes), and per dataset and protocol the table of the numbers behind them;
    ``earlier``: {dataset: archive of its superseded verdicts} (benchmark.earlier_verdicts)."""
    lines: list[str] = []
    for (dataset, protocol), methods in sorted(found.items(),
                                               key=lambda kv: (kv[0][0], kv[0][1] != "loo")):
        c = Comparison.of(methods, settings)
        if not c.reference:
            continue
        sentences, rows = _section(c, methods, settings, (earlier or {}).get(dataset),
                                   protocol)
        lines += [f"### {dataset}, {PROTOCOL_TITLES.get(protocol, protocol)}", "", *sentences,
                  ""]
        if rows:
            lines += [*HEADER, *rows, ""]
    if not lines:
        return []
    return ["## Findings", "",
            "Generated from the result files by one rule, the same that puts every ▲ / ▼ in "
            "the tables: a difference is claimed only where the seed-aware test (users and "
            "training seeds both random; `benchmark/seed_test.py`) against the reference gives "
            "a Holm-corrected p < 0.05 within the method's family (the profile's `families`). "
            "`popularity` is compared with every `main` method by the same test, Holm over "
            "those; cold targets with `random`, the target items as clusters. Methods of the "
            "`main` family are listed (the tables further down have every method); each "
            "table holds the numbers behind its sentences, and the detectable Δ is the "
            "smallest difference the test finds with 80% power.",
            "", *lines]


def _against_popularity(c: Comparison, settings: HarnessSettings
                        ) -> tuple[float, dict[str, dict]] | None:
    """The floor every paradigm should clear: each `main`-family method (and the reference)
    against `popularity` by the one rule, Holm across those tests; (popularity's mean, tests)."""
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
    return float(per_seed["popularity"].mean()), tests
