"""REPORT's first screen: per dataset, quality against training compute and the summary table.

One row per method of the dataset's ``loo`` table: its paradigm, NDCG@10 on ``loo`` and on the
``cold_item`` protocol (mean over seeds), each with the verdict against the reference by the
report's one rule, NDCG@10 on the cold targets alone with the verdict against ``random`` (the
cold rule), and training
minutes (fit seconds, mean over seeds and both protocols). The figure puts every seed of every
method at its NDCG@10 and training minutes on a log axis. Verdicts are the ones the tables
below mark (the same :class:`~benchmark.report_comparison.Comparison`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tabulate import tabulate

from benchmark.comparisons import WORDS, verdict
from benchmark.evaluation import HEADLINE
from benchmark.plots import plot_quality_vs_compute
from benchmark.registry import split_variant

PARADIGMS = {
    "popularity": "baseline", "random": "baseline", "item_knn": "baseline",
    "sasrec_id": "ID sequence model", "sasrec_id_bce": "ID sequence model",
    "sasrec_sid": "semantic IDs (scored)", "tiger": "semantic IDs (generated)",
    "sid_llm": "SID-LLM (LLM writes IDs)", "said": "LLM-aligned item embeddings",
    "said_minilm": "text-encoder item embeddings", "recformer": "text-only sequence encoder",
    "recformer_pretrained": "text-only sequence encoder",
    "recformer_transfer": "text-only sequence encoder", "ra_rec": "ID prefixes into a frozen LLM",
    "ra_rec_hard": "hard prompt into a frozen LLM",
    "recbole_sasrec": "RecBole peer", "recbole_gru4rec": "RecBole peer",
    "recbole_bert4rec": "RecBole peer",
}


def summary_section(comparisons: dict, plot_dir: Path, report_dir: Path) -> list[str]:
    lines: list[str] = []
    for dataset in sorted({d for d, _ in comparisons}):
        loo, cold = comparisons.get((dataset, "loo")), comparisons.get((dataset, "cold_item"))
        if loo is None:
            continue
        slice_ = next(((label, mask) for label, _, mask in cold.slices
                       if label == "cold_item=cold"), None) if cold is not None else None
        cold_tests = cold.tests(HEADLINE, slice_[1], slice_[0]) if slice_ else {}
        rows, points = [], {}
        for name in loo.order:
            runs = loo.methods[name]
            fit = [r["timing"].get("fit_seconds") or 0.0 for r in runs.results]
            if cold is not None and name in cold.methods:
                fit += [r["timing"].get("fit_seconds") or 0.0
                        for r in cold.methods[name].results]
            seeds = runs.seed_means(HEADLINE)
            points[name] = [(f / 60, v) for f, v in zip(fit, seeds, strict=False)]
            mark = ("reference" if name == loo.reference else
                    WORDS[verdict(loo.tests(HEADLINE).get(name))])
            protocol_cell = cold_cell = ""
            if cold is not None and name in cold.methods:
                value = float(np.mean(cold.methods[name].seed_means(HEADLINE)))
                protocol_cell = f"{value:.4f} (" + ("reference" if name == cold.reference else
                                                   WORDS[verdict(cold.tests(HEADLINE).get(name))]) + ")"
            if slice_ and name in cold.methods:
                value = float(cold.methods[name].per_user(HEADLINE, slice_[1]).mean())
                cold_cell = f"{value:.4f} (" + (
                    "reference" if name == cold.reference_for(slice_[0]) else
                    WORDS[verdict(cold_tests.get(name))]) + ")"
            rows.append([PARADIGMS.get(split_variant(name)[0], "—"), name,
                         f"{float(np.mean(seeds)):.4f} ({mark})", protocol_cell, cold_cell,
                         f"{np.mean(fit) / 60:.1f}", str(len(seeds))])
        plot = plot_quality_vs_compute(plot_dir / f"{dataset}_quality_vs_compute.png", points,
                                       f"{dataset} loo: {HEADLINE} vs training minutes")
        lines += [f"### {dataset}", ""]
        if plot:
            lines += [f"![{plot.stem}]({os.path.relpath(plot, report_dir)})", ""]
        lines += [tabulate(rows, ["paradigm", "method", f"{HEADLINE} loo (vs {loo.reference})",
                                  f"{HEADLINE} cold_item (vs {loo.reference})",
                                  "cold targets only (vs random)", "training min", "seeds"],
                           tablefmt="pipe", disable_numparse=True), ""]
    if not lines:
        return []
    return ["## Summary", "",
            "Which paradigm works where, at what cost: NDCG@10 on every test user (`loo`) and "
            "on the cold targets of the `cold_item` protocol, each with the report's one "
            "verdict (below: how it is made), and the training minutes a run took on the "
            "hardware its results record.", "", *lines]
