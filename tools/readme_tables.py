"""Write README's results tables and verdicts from REPORT.md, so the two cannot disagree.

README's "Results" section holds one table per dataset between the markers
``<!-- results-table:<dataset> -->`` and ``<!-- /results-table -->``. Each row is a method of
the default profile's `main` or `baselines` family (the RecBole peers have their own REPORT
rows), in the order of REPORT's `loo` leaderboard: the number of seeds, NDCG@10 with its CI and
significance mark on `loo` and on `cold_item`, and the `cold_item` slices (cold, cold_valid,
warm). Every cell is copied from REPORT.md; nothing is recomputed. Between
``<!-- findings -->`` and ``<!-- /findings -->`` README holds REPORT's "Findings" (the verdicts,
by the report's one rule), copied verbatim, so README states no verdict of its own.

    python tools/readme_tables.py           # rewrite README.md's tables
    python tools/readme_tables.py --check   # exit 1 if README.md is not what REPORT.md gives
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- results-table:(?P<dataset>[\w.-]+) -->\n)(?P<body>.*?)"
                   r"(<!-- /results-table -->)", re.S)
FINDINGS = re.compile(r"(<!-- findings -->\n)(.*?)(<!-- /findings -->)", re.S)


def findings(report: str) -> str:
    """REPORT's Findings, its intro paragraph left out, headings one level down."""
    try:
        body = report.split("\n## Findings\n", 1)[1].split("\n## ", 1)[0]
    except IndexError:
        raise SystemExit("REPORT.md has no Findings section: regenerate it first") from None
    lines = body.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("### "))
    return "\n".join(f"#{line}" if line.startswith("### ") else line
                     for line in lines[start:]) + "\n"


def table_after(text: str, heading: str) -> list[dict[str, str]]:
    """The first markdown table after the line ``heading``, as rows of header -> cell."""
    lines = text.splitlines()
    try:
        start = lines.index(heading)
    except ValueError:
        raise SystemExit(f"REPORT.md has no section {heading!r}: regenerate it first") from None
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            break
    header, body = rows[0], rows[2:]
    return [dict(zip(header, r)) for r in body]


def column(row: dict[str, str], prefix: str) -> str:
    """The cell whose header starts with ``prefix`` (headers carry n or CI notes)."""
    for key, value in row.items():
        if key.startswith(prefix):
            return value
    raise SystemExit(f"REPORT.md table has no column starting {prefix!r}")


def seeds(cell: str) -> str:
    if cell == "single seed":
        return "1"
    match = re.search(r"\((\d+):", cell)
    if not match:
        raise SystemExit(f"cannot read the number of seeds from {cell!r}")
    return match.group(1)


def dataset_table(report: str, dataset: str, reference: str, members: list[str]) -> str:
    loo = table_after(report, f"## {dataset} — leave-one-out (`loo`)")
    cold_heading = f"## {dataset} — cold-start items (`cold_item`)"
    cold, slices = {}, {}
    if cold_heading in report.splitlines():  # absent while no run of it is current
        cold = {r["method"].strip("*"): r for r in table_after(report, cold_heading)}
        slices_at = report.index(cold_heading)
        slices = {r["method"].strip("*"): r for r in table_after(
            report[slices_at:], "### Slices (NDCG@10, 95% CI; n = test cases in the slice)")}
    out = ["| method | seeds | `loo` | `cold_item` all | cold | cold_valid | warm |",
           "|---|---|---|---|---|---|---|"]
    for row in loo:
        name = row["method"].strip("*")
        if name not in members:
            continue
        label = f"{name} (reference)" if name == reference else name
        c, s = cold.get(name), slices.get(name)
        cells = [column(row, "NDCG@10 ["), column(c, "NDCG@10 [") if c else "n/a"]
        cells += [short(column(s, key)) if s else "n/a" for key in ("cold (", "cold_valid (",
                                                                     "warm (")]
        out.append(f"| {label} | {seeds(column(row, 'NDCG@10 over seeds'))} | "
                   + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def short(cell: str) -> str:
    """``0.0445 [0.0324, 0.0576] ▲`` -> ``0.0445 ▲`` (README keeps the slices' CIs out)."""
    return re.sub(r" \[[^\]]*\]", "", cell)


def render(readme: str, report: str, profile: dict) -> str:
    families = profile.get("families", {})
    members = [*families.get("main", []), *families.get("baselines", []), profile["reference"]]

    def fill(match: re.Match) -> str:
        body = dataset_table(report, match["dataset"], profile["reference"], members)
        return match.group(1) + body + match.group(4)

    text, count = BLOCK.subn(fill, readme)
    if not count:
        raise SystemExit("README.md has no <!-- results-table:<dataset> --> block")
    text, count = FINDINGS.subn(lambda m: m.group(1) + findings(report) + m.group(3), text)
    if not count:
        raise SystemExit("README.md has no <!-- findings --> block")
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--report", type=Path, default=ROOT / "REPORT.md")
    args = ap.parse_args()
    profile = yaml.safe_load((ROOT / "configs" / "profiles" / "default.yaml").read_text())
    readme = args.readme.read_text()
    new = render(readme, args.report.read_text(), profile)
    if args.check:
        if new != readme:
            print("README.md's results tables or findings differ from REPORT.md: run "
                  "python tools/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
