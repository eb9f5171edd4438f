"""Figures of the report (matplotlib, Agg backend, PNG); None when there is nothing to draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.evaluation import HEADLINE


def plot_overall(path: Path, data: dict[str, tuple[float, float, float]], title: str) -> Path | None:
    """Horizontal bars of each method's mean with its CI; ``data``: name -> (mean, lo, hi)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not data:
        return None
    names = list(data)[::-1]
    means = np.array([data[n][0] for n in names])
    err = _error_bars([data[n] for n in names])
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    ax.barh(names, means, xerr=err, color="#4c72b0", capsize=3)
    ax.set_xlabel(HEADLINE)
    ax.set_title(title)
    return _save(fig, path)


def plot_slices(path: Path, data: dict[str, dict[str, tuple]], order: list[str], title: str
                 ) -> Path | None:
    """Grouped bars, one group per slice; ``data``: slice label -> name -> (mean, lo, hi)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not data:
        return None
    labels = list(data)
    width = 0.8 / max(1, len(order))
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(labels)), 4.2))
    for j, name in enumerate(order):
        vals = [data[label].get(name, (np.nan, np.nan, np.nan)) for label in labels]
        means = np.array([v[0] for v in vals])
        err = _error_bars(vals)
        ax.bar(np.arange(len(labels)) + j * width, means, width, yerr=err, capsize=2, label=name)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2)
    ax.set_xticklabels([label.split("=", 1)[1] for label in labels])
    ax.set_ylabel(HEADLINE)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    """Lay out, write and close ``fig`` as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _error_bars(values: list[tuple[float, float, float]]) -> np.ndarray:
    """[2, n] distances from each mean to its CI bounds. A constant sample's CI is [c, c] while
    its float mean can differ from c in the last bit; matplotlib refuses that -1e-17, so clip."""
    err = np.array([[m - lo for m, lo, _ in values], [hi - m for m, _, hi in values]])
    return np.clip(err, 0.0, None)


def plot_curves(path: Path, curves: dict[str, list[dict]], title: str) -> Path | None:
    """Validation NDCG@10 against training examples seen (left, log scale) and training wall
    seconds (right), one line per method; ``curves``: name -> the result's ``training.curve``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = {n: [p for p in c if p.get("examples") and p.get("seconds") is not None]
             for n, c in curves.items()}
    drawn = {n: c for n, c in drawn.items() if c}
    if not drawn:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for name, points in drawn.items():
        ys = [p["valid_ndcg10"] for p in points]
        left.plot([p["examples"] for p in points], ys, marker=".", label=name)
        right.plot([p["seconds"] for p in points], ys, marker=".", label=name)
    left.set_xscale("log")
    right.set_xscale("log")
    left.set_xlabel("training examples seen")
    right.set_xlabel("training wall seconds")
    left.set_ylabel(f"validation {HEADLINE}")
    left.legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def plot_quality_vs_compute(path: Path, points: dict[str, list[tuple[float, float]]],
                            title: str) -> Path | None:
    """NDCG@10 against training minutes (log axis), one dot per seed and a marker at the mean
    per method; ``points``: name -> [(minutes, NDCG@10) per seed]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = {n: p for n, p in points.items() if p}
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for name, pts in sorted(points.items()):
        x = np.maximum([m for m, _ in pts], 0.01)  # a count-based method trains in no time
        y = np.array([v for _, v in pts])
        line = ax.scatter(x, y, s=12, alpha=0.5)
        ax.scatter([x.mean()], [y.mean()], s=50, marker="D", color=line.get_facecolor()[0])
        ax.annotate(name, (x.mean(), y.mean()), textcoords="offset points", xytext=(5, 3),
                    fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("training minutes per run (log scale; 0.01 = none)")
    ax.set_ylabel(HEADLINE)
    ax.set_title(title)
    return _save(fig, path)
