"""Write README's results tables, takeaways and verdicts from REPORT.md, so they cannot disagree.

README's "Results" section holds one table per dataset between the markers
``<!-- results-table:<dataset> -->`` and ``<!-- /results-table -->``: REPORT's Summary table of
that dataset (paradigm, NDCG@10 on `loo` and `cold_item` with the one rule's verdict against the
reference, cold targets against `random`, training minutes), line for line. Between
``<!-- takeaways -->`` and ``<!-- /takeaways -->``: five sentences built from those tables alone
(who beats the reference where, who beats `random` on cold targets, the cost range). Between
``<!-- findings -->`` and ``<!-- /findings -->``: REPORT's "Findings" sentences, verbatim (the
tables of numbers behind them stay in REPORT). Nothing is recomputed, so README states no verdict
of its own.

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
TAKEAWAYS = re.compile(r"(<!-- takeaways -->\n)(.*?)(<!-- /takeaways -->)", re.S)


def findings(report: str) -> str:
    """REPORT's Findings sentences: its intro paragraph and number tables left out, headings
    one level down."""
    try:
        body = report.split("\n## Findings\n", 1)[1].split("\n## ", 1)[0]
    except IndexError:
        raise SystemExit("REPORT.md has no Findings section: regenerate it first") from None
    lines = body.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("### "))
    kept = [line for line in lines[start:] if not line.startswith("|")]
    text = "\n".join(f"#{line}" if line.startswith("### ") else line for line in kept)
    return re.sub(r"\n{3,}", "\n\n", text) + "\n"


def column(row: dict[str, str], prefix: str) -> str:
    """The cell whose header starts with ``prefix`` (headers carry n or CI notes)."""
    for key, value in row.items():
        if key.startswith(prefix):
            return value
    raise SystemExit(f"REPORT.md table has no column starting {prefix!r}")


def summary_table(report: str, dataset: str) -> str:
    """REPORT's Summary table of ``dataset``, line for line."""
    try:
        section = report.split("\n## Summary\n", 1)[1].split("\n## ", 1)[0]
        part = section.split(f"\n### {dataset}\n", 1)[1].split("\n### ", 1)[0]
    except IndexError:
        raise SystemExit(f"REPORT.md has no Summary table for {dataset}: regenerate it") from None
    lines = [line for line in part.splitlines() if line.startswith("|")]
    return "\n".join(lines) + "\n"


def summary_rows(report: str, dataset: str) -> list[dict[str, str]]:
    lines = summary_table(report, dataset).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, [c.strip() for c in line.strip("|").split("|")], strict=True))
            for line in lines[2:]]


def _split(cell: str) -> tuple[float | None, str]:
    """``0.0731 (better)`` -> (0.0731, "better"); an empty cell -> (None, "")."""
    match = re.fullmatch(r"([\d.]+) \(([^)]*)\)", cell)
    return (float(match[1]), match[2]) if match else (None, "")


def _names(rows: list[dict[str, str]], key: str, word: str) -> str:
    names = [f"`{r['method']}`" for r in rows if _split(column(r, key))[1] == word]
    return ", ".join(names) if names else "none"


def takeaways(report: str, datasets: list[str]) -> str:
    """Five sentences from REPORT's Summary tables: per dataset, who beats the reference on
    `loo` and on `cold_item`, and who is above `random` on cold targets; then the cost."""
    out, costs = [], []
    for dataset in datasets:
        rows = summary_rows(report, dataset)
        loo_key = next(k for k in rows[0] if k.startswith("NDCG@10 loo"))
        reference = loo_key.split("vs ", 1)[1].rstrip(")")
        best = max(rows, key=lambda r: _split(r[loo_key])[0] or 0.0)
        out.append(f"- {dataset}, `loo`: best `{best['method']}` (NDCG@10 "
                   f"{_split(best[loo_key])[0]:.4f}); better than `{reference}` by the one "
                   f"rule: {_names(rows, 'NDCG@10 loo', 'better')}; not significantly "
                   f"different: {_names(rows, 'NDCG@10 loo', 'no difference')}.")
        out.append(f"- {dataset}, `cold_item`: better than `{reference}`: "
                   f"{_names(rows, 'NDCG@10 cold_item', 'better')}; on the cold targets "
                   f"alone, better than `random`: {_names(rows, 'cold targets', 'better')}.")
        costs += [(float(r["training min"]), r["method"], dataset) for r in rows
                  if _split(r[loo_key])[1] in ("better", "no difference", "reference")]
    if costs:
        low, high = min(costs), max(costs)
        out.append(f"- Cost, among the methods not worse than the reference on `loo`: from "
                   f"{low[0]:.1f} training minutes per run (`{low[1]}`, {low[2]}) to "
                   f"{high[0]:.1f} (`{high[1]}`, {high[2]}).")
    return "\n".join(out) + "\n"


def render(readme: str, report: str, profile: dict) -> str:
    datasets: list[str] = []

    def fill(match: re.Match) -> str:
        datasets.append(match["dataset"])
        return match.group(1) + summary_table(report, match["dataset"]) + match.group(4)

    text, count = BLOCK.subn(fill, readme)
    if not count:
        raise SystemExit("README.md has no <!-- results-table:<dataset> --> block")
    text, count = FINDINGS.subn(lambda m: m.group(1) + findings(report) + m.group(3), text)
    if not count:
        raise SystemExit("README.md has no <!-- findings --> block")
    text, count = TAKEAWAYS.subn(lambda m: m.group(1) + takeaways(report, datasets)
                                 + m.group(3), text)
    if not count:
        raise SystemExit("README.md has no <!-- takeaways --> block")
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
