"""Archive the verdicts a dataset's results gave at an earlier commit, so REPORT can name what
changed when those results were superseded (a re-run on another population, another rule).

Written once, when a dataset's evaluation population changes; the report reads it from
``results/<dataset>/earlier-verdicts.json`` and says, in the dataset's Findings, which verdicts
against the reference moved (``benchmark/earlier_verdicts.py``). Per protocol it records:

- ``published``: the verdicts the commit's REPORT.md stated against the reference (its Findings
  sentences: method, Δ NDCG@10, better / no difference / worse), its `popularity` figure and its
  cold-target sentence, parsed from the text as published;
- ``one_rule``: the same comparisons recomputed from that commit's per-user files (ranks) by
  today's rule (``benchmark.comparisons.compare``: the seed-aware test, Holm within today's
  families), so a changed verdict can be told apart into "the rule changed" and "the
  population changed";
- each method's mean NDCG@10 over seeds and its seeds, on that population.

    python tools/archive_verdicts.py --commit b27c5ff --dataset amazon-scientific \\
        --population "2,000-user sample: 1,593 users forced in for a cold target, 407 drawn"
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.comparisons import compare, verdict  # noqa: E402
from benchmark.earlier_verdicts import FILE_NAME, WORDS  # noqa: E402
from benchmark.evaluation import metric_values  # noqa: E402
from benchmark.registry import ALIASES  # noqa: E402
from benchmark.settings import harness_settings  # noqa: E402

SENTENCE = re.compile(r"^- `(?P<method>[\w@.-]+)` is (?P<verdict>significantly better than|"
                      r"significantly worse than|not significantly different from) "
                      r"`(?P<ref>[\w-]+)` \(Δ (?P<delta>[+-]\d+\.\d+)")
POPULARITY = re.compile(r"^- Against `popularity` \(NDCG@10 (?P<mean>\d+\.\d+)")
COLD = re.compile(r"^- Cold targets \(n = (?P<n>\d+)\).*?`(?P<method>[\w@.-]+)` is "
                  r"(?P<verdict>significantly better than|significantly worse than|not "
                  r"significantly different from) `(?P<ref>[\w-]+)` \(Δ (?P<delta>[+-]\d+\.\d+)")
VERDICT = {"significantly better than": WORDS[1], "not significantly different from": WORDS[0],
           "significantly worse than": WORDS[-1]}


def published(report: str, dataset: str, protocol_title: str) -> dict:
    """The Findings sentences of one dataset and protocol, as published."""
    head = f"### {dataset}, {protocol_title}"
    if head not in report:
        raise SystemExit(f"the report has no Findings heading {head!r}")
    body = report.split(head, 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    out: dict = {"verdicts": {}, "popularity": None, "cold_targets": None}
    for line in body.splitlines():
        if m := SENTENCE.match(line):
            out["reference"] = m["ref"]
            out["verdicts"][ALIASES.get(m["method"], m["method"])] = {
                "delta": float(m["delta"]), "verdict": VERDICT[m["verdict"]]}
        elif m := POPULARITY.match(line):
            out["popularity"] = float(m["mean"])
        elif m := COLD.match(line):
            out["cold_targets"] = {"n": int(m["n"]), "method": ALIASES.get(m["method"],
                                                                           m["method"]),
                                   "against": m["ref"], "delta": float(m["delta"]),
                                   "verdict": VERDICT[m["verdict"]]}
    if not out["verdicts"]:
        raise SystemExit(f"no verdict sentence under {head!r}")
    return out


def ndcg10(per_user_csv: str) -> pd.Series:
    """NDCG@10 per user from a per-user file's 1-based ranks (an empty rank is a miss)."""
    table = pd.read_csv(io.StringIO(per_user_csv))
    rank = pd.to_numeric(table["rank"], errors="coerce").to_numpy(dtype=float)
    value = metric_values(np.nan_to_num(rank, nan=np.inf))["NDCG@10"]
    return pd.Series(value, index=table["user_id"].astype(str))


def one_rule(files: dict[str, list[str]], reference: str, families: dict) -> dict:
    """Today's rule on the per-user files ({method: [per-user csv text per seed]})."""
    per_seed, means = {}, {}
    users = None
    for method, texts in sorted(files.items()):
        seeds = [ndcg10(t) for t in texts]
        users = seeds[0].index if users is None else users
        if any(set(s.index) != set(users) for s in seeds):
            raise SystemExit(f"{method}: its seeds hold other users than the rest")
        per_seed[method] = np.stack([s.loc[users].to_numpy() for s in seeds])
        means[method] = {"ndcg10": float(per_seed[method].mean()), "seeds": len(texts)}
    tests = compare(per_seed, reference, families)
    return {"methods": means,
            "verdicts": {m: {"delta": t["mean_diff"], "verdict": WORDS[verdict(t)],
                             "p_holm": t["p_holm"], "family": t["family"]}
                         for m, t in tests.items()}}


def archive(read: Callable[[str], str], listing: list[str], dataset: str,
            population: str, source: str) -> dict:
    """The archive of ``dataset`` from a reader of the commit's files and their paths."""
    from benchmark.report_format import PROTOCOL_TITLES

    report = read("REPORT.md")
    settings = harness_settings("default")
    out = {"source": source, "population": population, "protocols": {}}
    for protocol, title in PROTOCOL_TITLES.items():
        pattern = re.compile(rf"results/{re.escape(dataset)}/{protocol}/([^/]+)/seed\d+"
                             r"\.per_user\.csv$")
        files: dict[str, list[str]] = {}
        for path in listing:
            if (m := pattern.match(path)) and "@" not in m[1]:
                files.setdefault(ALIASES.get(m[1], m[1]), []).append(read(path))
        if not files:
            continue
        said = published(report, dataset, title)
        out["protocols"][protocol] = {
            "published": said,
            "one_rule": one_rule(files, said.get("reference", settings.reference),
                                 settings.families)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commit", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--population", required=True, help="who the earlier figures were over")
    ap.add_argument("--results-dir", type=Path, default=ROOT / "results")
    args = ap.parse_args()

    def read(path: str) -> str:
        return subprocess.run(["git", "show", f"{args.commit}:{path}"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout

    listing = subprocess.run(["git", "ls-tree", "-r", "--name-only", args.commit,
                              f"results/{args.dataset}"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    commit = subprocess.run(["git", "rev-parse", "--short", args.commit], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout.strip()
    out = archive(read, listing, args.dataset, args.population, f"REPORT.md at commit {commit}")
    path = args.results_dir / args.dataset / FILE_NAME
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
