"""How many directions SAID's frozen item table uses, against MiniLM's (issue 15).

SAID's stage 2 learns a linear adapter over a frozen table. Over the LLM-aligned table its
validation curve climbs for hundreds of epochs where the same stage 2 over MiniLM's table
settles in tens; this measures why: the singular-value spectrum of each table as stage 2
reads it (centred, mean row norm 1; ``adapters.said.table_spectrum``). It builds each
table the way a run does (``SAID.prepare``: stage 1 comes from the cache when a run made it,
otherwise it trains, minutes on this CPU) and touches no interaction data.

Run from the repository root::

    python tools/said_table_spectrum.py --seeds 0,1,2 --out results/probes/said-table-spectrum.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from adapters.said import table_spectrum  # importing it registers `said`
from benchmark.adapter import RunContext, TrainData
from benchmark.cache import Cache
from benchmark.datasets import load_dataset
from benchmark.runner import resolve_config
from benchmark.settings import default_cache_dir


def spectrum_rows(dataset: str, seeds: list[int], methods: list[str], cache_dir: Path,
                  overrides: dict | None = None) -> list[dict]:
    data = load_dataset(dataset)
    # prepare reads the catalogue only: no interaction goes in
    train = TrainData(data.n_items, [], data.catalog, np.zeros(data.n_items, dtype=np.int64))
    rows = []
    for method in methods:
        for seed in seeds:
            cls, cfg = resolve_config(method, "default", overrides or {}, dataset=data.name)
            ctx = RunContext(seed=seed, device="cpu", cache=Cache(cache_dir), protocol="loo",
                             catalog_hash=data.catalog.fingerprint(), train_hash="",
                             show_progress=False)
            torch.manual_seed(seed)
            adapter = cls(cfg)
            adapter.prepare(train, ctx)
            row = {"dataset": data.name, "method": method, "seed": seed,
                   "shape": list(adapter.table.shape), **table_spectrum(adapter.table)}
            if method == "said":
                row["stage1_cached"] = adapter.stage1.get("cached")
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="ml-100k,amazon-scientific")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default="said,said_minilm")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    cache_dir = args.cache_dir or default_cache_dir()
    rows = [row for name in args.datasets.split(",")
            for row in spectrum_rows(name, seeds, args.methods.split(","), cache_dir)]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
