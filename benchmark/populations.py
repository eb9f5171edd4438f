"""Evaluation populations: which users a table's figures are over, and superseded samples.

A result records its evaluation users (``eval_users``: ``"all"``, or a sample's size and seed).
Figures over different users are not comparable, so a (dataset, protocol) whose result files
hold several populations is split: the current population (the one the dataset's YAML names
today; for a dataset given by path, every user where any result has it, else the one most
results share) makes the table that verdicts read; each other population is a *superseded
sample*, shown in its own table, marked, with no significance marks and no verdict, even while
no result of the current population exists yet. This is how a re-run from a sample to every user proceeds method by method without a
table ever mixing user sets.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np

from benchmark.evaluation import HEADLINE
from benchmark.results import MethodRuns


def population(result: dict[str, Any]) -> str:
    """A result's evaluation users as a label: ``all users`` or ``sample of N (seed S)``."""
    users = result.get("eval_users", "all")
    if users == "all":
        return "all users"
    if isinstance(users, dict):
        return f"sample of {users.get('sample'):,} (seed {users.get('seed')})"
    return json.dumps(users)


def configured(dataset: str) -> str | None:
    """The population the dataset's YAML names today (None for a dataset without one)."""
    import yaml

    from benchmark.settings import DATASET_CONFIG_DIR

    path = DATASET_CONFIG_DIR / f"{dataset}.yaml"
    if not path.is_file():
        return None
    users = (yaml.safe_load(path.read_text()) or {}).get("eval_users", "all")
    return population({"eval_users": "all" if users in (None, "all") else users})


def split_populations(methods: dict[str, MethodRuns], current: str | None = None
                      ) -> tuple[dict[str, MethodRuns], dict[str, dict[str, MethodRuns]]]:
    """The runs of the ``current`` population (see the module docstring when None), and
    {label: runs} of each superseded one."""
    groups: dict[str, dict[str, MethodRuns]] = {}
    for name, runs in methods.items():
        for result, table, path in zip(runs.results, runs.tables, runs.paths):
            group = groups.setdefault(population(result), {})
            keep = group.setdefault(name, MethodRuns(name))
            keep.results.append(result)
            keep.tables.append(table)
            keep.paths.append(path)
    if current is None:
        if len(groups) <= 1:
            return methods, {}
        counts = Counter({label: sum(len(r.results) for r in g.values())
                          for label, g in groups.items()})
        current = "all users" if "all users" in groups else counts.most_common(1)[0][0]
    return groups.pop(current, {}), groups


def superseded_section(tables: dict[tuple[str, str, str], dict[str, MethodRuns]]) -> list[str]:
    """Tables of superseded samples: means only, marked, never tested."""
    if not tables:
        return []
    lines = ["## Superseded evaluation samples (no verdicts)", "",
             "Results on an evaluation population other than their table's (a sample that the "
             "dataset no longer uses), kept until their methods are re-run on the current "
             "population. Their figures estimate another population, so they are not compared "
             "with the tables above and no finding, mark or README verdict uses them.", ""]
    for (dataset, protocol, label), methods in sorted(tables.items()):
        n = next(iter(methods.values())).results[0].get("n_test_cases")
        lines += [f"### {dataset}, `{protocol}`, {label}: n = {n:,} test cases", "",
                  f"| method | seeds | {HEADLINE} (mean over seeds) | seed sd |", "|---|---|---|---|"]
        rows = []
        for name, runs in methods.items():
            means = runs.seed_means(HEADLINE)
            sd = f"{np.std(means, ddof=1):.4f}" if len(means) > 1 else "–"
            rows.append((-float(np.mean(means)), name, len(means), float(np.mean(means)), sd))
        for _, name, seeds, mean, sd in sorted(rows):
            lines.append(f"| {name} | {seeds} | {mean:.4f} | {sd} |")
        lines.append("")
    return lines
