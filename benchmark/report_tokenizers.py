"""REPORT's tokenizer table: one row per semantic-ID source, each SID method's NDCG@10 beside it.

Rows are our own IDs (the main tables' ``tiger`` / ``sasrec_sid`` runs, every seed) and each
published index run through the sweep (``<method>@<index>`` result folders, seed 0 as a rule).
Columns: how unique the source's IDs are (share of items whose full ID no other item has, and
distinct prefixes per level, from the first run's diagnostics), then per method NDCG@10 on
``loo`` and on the ``cold`` slice of ``cold_item`` (cold test targets). A published index built
with interactions of an unknown split (``uses_interactions``) gets no cold figure: those
interactions may include the cold items' own. Under each table, what it says about collisions
against accuracy, as numbers (``_collision_lines``): native vs zero-collision pairs, a rank
correlation per column, and our IDs' seed sd for scale. No verdict comes from this table; it has
no significance test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import spearmanr
from tabulate import tabulate

from benchmark.registry import split_variant
from benchmark.report_comparison import _cold_masks, slice_columns
from benchmark.results import MethodRuns

SID_METHODS = ("tiger", "sasrec_sid")


def split_sweep(found: dict) -> dict:
    """Take the sweep's ``<method>@<index>`` runs out of ``found`` (in place): they belong in
    the tokenizer table only, never in a leaderboard or a comparison family."""
    sweep: dict = {}
    for where in list(found):
        variants = {n: r for n, r in found[where].items() if split_variant(n)[1] is not None}
        for name in variants:
            del found[where][name]
        if variants:
            sweep[where] = variants
        if not found[where]:
            del found[where]
    return sweep


def _ndcg(runs: MethodRuns, mask: np.ndarray | None) -> tuple[float, int, float | None]:
    """(mean over seeds, seeds, seed sd or None with one seed)."""
    per_seed = runs.per_seed("NDCG@10", mask)  # seeds x cases
    means = per_seed.reshape(per_seed.shape[0], -1).mean(axis=1)
    sd = float(means.std(ddof=1)) if means.size > 1 else None
    return float(per_seed.mean()), per_seed.shape[0], sd


def _cold_mask(methods: dict[str, MethodRuns]) -> np.ndarray | None:
    if not methods:  # no cold_item run on this dataset yet
        return None
    table = slice_columns(methods)
    return next((m for label, _, m in _cold_masks(table) if label == "cold_item=cold"), None)


def _uniqueness(diag: dict[str, Any], source: str) -> tuple[str, str]:
    """(unique-ID share, distinct prefixes per level); our IDs' figures are those before the
    disambiguation level, which then makes every ID unique."""
    sid = diag.get("semantic_ids") or {}
    share = sid.get("items_with_unique_id_share")
    prefixes = sid.get("distinct_prefixes")
    text = "" if share is None else f"{share:.1%}"
    if source == "ours" and share is not None:
        text = f"100% ({text} before the disambiguation level)"
    return text, "" if not prefixes else " / ".join(f"{p:,}" for p in prefixes)


def _columns(rows: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m, part) for m in SID_METHODS for part in ("loo", "cold")
            if any((m, part) in row for row in rows.values())]


def _values(a: dict[str, Any], b: dict[str, Any]) -> str:
    pairs = [f"{m} {part} {a[(m, part)][0]:.4f} → {b[(m, part)][0]:.4f}"
             for m, part in _columns({"a": a, "b": b}) if (m, part) in a and (m, part) in b]
    return ", ".join(pairs) if pairs else "no column run on both"


def _collision_lines(rows: dict[str, dict[str, Any]]) -> list[str]:
    """What the table says about collisions against accuracy, in numbers: each native /
    zero-collision pair of one tokenizer (a controlled comparison only where the two share every
    level but the last, judged by equal distinct prefixes per level), the rank correlation of
    the unique-ID share with NDCG@10 across sources per column, and our IDs' seed sd for scale."""
    out: list[str] = []
    bases = sorted({s.rsplit("_", 1)[0] for s in rows if s.endswith(("_native", "_zcr"))})
    for base in bases:
        a, b = rows.get(f"{base}_native"), rows.get(f"{base}_zcr")
        if not a or not b or "share" not in a or "share" not in b:
            continue
        shares = f"items with a unique ID {a['share']:.1%} → {b['share']:.1%}"
        if a["prefixes"][:-1] and a["prefixes"][:-1] == b["prefixes"][:-1]:
            how = ("the same prefixes on every level but the last, where zero-collision "
                   "reassignment moves the colliding items: a controlled comparison")
        else:
            how = ("separately built indexes (their prefixes per level differ), so the pair "
                   "does not isolate collisions")
        out.append(f"- `{base}_native` → `{base}_zcr` ({shares}; {how}): {_values(a, b)}.")
    corr = []
    for m, part in _columns(rows):
        points = [(row["share"], row[(m, part)][0]) for row in rows.values()
                  if (m, part) in row and "share" in row]
        if len(points) >= 4 and len({x for x, _ in points}) > 1:
            rho = spearmanr(*zip(*points, strict=True)).statistic
            corr.append(f"{m} {part} ρ = {rho:+.2f} (n = {len(points)})")
    if corr:
        out.append("- Spearman's ρ between the unique-ID share and NDCG@10 across the sources "
                   "with a figure: " + "; ".join(corr) + ".")
    ours = rows.get("ours", {})
    spread = [f"{m} {part} {ours[(m, part)][2]:.4f} ({ours[(m, part)][1]} seeds)"
              for m, part in _columns(rows) if (m, part) in ours and ours[(m, part)][2]]
    if spread:
        out.append("- For scale, our IDs' seed-to-seed sd of NDCG@10: " + ", ".join(spread)
                   + " (the published sources have one seed each).")
    return [*out, ""] if out else []


def tokenizer_section(found: dict, sweep: dict) -> list[str]:
    lines: list[str] = []
    datasets = sorted({d for d, _ in sweep})
    for dataset in datasets:
        rows: dict[str, dict[str, Any]] = {}
        for protocol in ("loo", "cold_item"):
            main = found.get((dataset, protocol), {})
            variants = sweep.get((dataset, protocol), {})
            cold = _cold_mask({**main, **variants}) if protocol == "cold_item" else None
            entries = [("ours", m, main[m]) for m in SID_METHODS if m in main]
            entries += [(split_variant(n)[1], split_variant(n)[0], r)
                        for n, r in variants.items() if split_variant(n)[0] in SID_METHODS]
            for source, method, runs in entries:
                row = rows.setdefault(source, {})
                diag = runs.results[0].get("diagnostics") or {}
                row.setdefault("unique", _uniqueness(diag, source))
                sid = diag.get("semantic_ids") or {}
                if "share" not in row and sid.get("items_with_unique_id_share") is not None:
                    # ours: the disambiguation level makes every full ID unique
                    row["share"] = (1.0 if source == "ours"
                                    else float(sid["items_with_unique_id_share"]))
                    row["prefixes"] = list(sid.get("distinct_prefixes") or [])
                row["interactions"] = row.get("interactions") or bool(sid.get("uses_interactions"))
                if protocol == "loo":
                    row[(method, "loo")] = _ndcg(runs, None)
                elif cold is not None:
                    row[(method, "cold")] = _ndcg(runs, cold)
        if not any(k != "ours" for k in rows):
            continue
        header = ["ID source", "items with a unique ID", "distinct prefixes per level"]
        for method in SID_METHODS:
            header += [f"{method} loo", f"{method} cold"]
        table = []
        for source in sorted(rows, key=lambda s: (s != "ours", s)):
            row = rows[source]
            label = source + (" (built with interactions of unknown split)"
                              if row.get("interactions") else "")
            cells = [label, *row.get("unique", ("", ""))]
            for method in SID_METHODS:
                for part in ("loo", "cold"):
                    value = row.get((method, part))
                    if part == "cold" and row.get("interactions"):
                        cells.append("—")
                    else:
                        cells.append("" if value is None else
                                     f"{value[0]:.4f}" + (f" ({value[1]} seeds)"
                                                          if value[1] > 1 else ""))
            table.append(cells)
        lines += [f"### {dataset}", "",
                  tabulate(table, header, tablefmt="pipe", disable_numparse=True), "",
                  *_collision_lines(rows)]
    if not lines:
        return []
    return ["## Semantic-ID tokenizers", "",
            "NDCG@10 of each semantic-ID method with each ID source: our RQ-VAE IDs (every seed "
            "of the main tables) and the published indexes (`<method>@<index>` runs, one seed "
            "each unless stated). `loo`: all test users; `cold`: the `cold_item` protocol's "
            "cold-target slice. Items that share a full ID are tied, pessimistically, in every "
            "method's ranking. \"Items with a unique ID\": share of the catalogue whose full ID "
            "no other item has. Indexes built with interactions of an unknown split may have seen "
            "the cold items' interactions: they get no cold figure. Descriptive only: no "
            "significance test is run on this table.", "", *lines]
