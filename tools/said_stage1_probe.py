"""Choose SAID's stage-1 learning rates on the stage-1 objective alone (issue 15).

Stage 1 depends on item text only (no interaction, no validation or test target), so its
learning rates may be chosen on its own loss without touching the recommendation splits. For
each grid point this trains the virtual tokens exactly as ``said`` does (same config, same
seed, ``--epochs`` passes over the catalogue), then measures, on a fixed sample of
``--eval-items`` items, the per-text-token loss with the trained tokens (teacher forcing, no
update: how well the LM reproduces each title from its item's tokens) and the exact greedy
title match. The training loss alone would mislead: with one pass, every item's loss is taken
before its own vector was ever updated.

Run from the repository root::

    python tools/said_stage1_probe.py --dataset ml-100k --epochs 2 \
        --grid stage1_item_lr=0.001,0.02,0.1 --out results/probes/said-stage1-ml-100k-e2.json

Prints one JSON line per grid point as it finishes, then the choice; ``--out`` gets the
whole record (not under ``<dataset>/tuning/``: those are validation records that REPORT.md
reads). ``--backbone tiny:random`` runs in seconds (the test does).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from adapters.said import item_text  # importing it registers `said`
from benchmark.datasets import load_dataset
from benchmark.models.llm import load_causal_lm
from benchmark.models.llm_alignment import (
    AlignmentPrompt,
    AlignmentSettings,
    VirtualTokens,
    greedy_match,
    target_ids,
    text_loss,
    train_alignment,
)
from benchmark.runner import resolve_config


def parse_grid(specs: list[str]) -> list[dict[str, float]]:
    """``key=v1,v2`` specs -> every combination as a dict (keys: said's stage-1 lr keys)."""
    axes = {}
    for spec in specs:
        key, _, values = spec.partition("=")
        if key not in ("stage1_lr", "stage1_item_lr") or not values:
            raise SystemExit(f"--grid takes stage1_lr=... or stage1_item_lr=..., not {spec!r}")
        axes[key] = [float(v) for v in values.split(",")]
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())] or [{}]


@torch.no_grad()
def held_loss(lm, prompt, tokens, targets, items, pad, batch=32) -> float:
    """Per-text-token loss of ``items`` with the trained tokens, token-weighted."""
    total, count = 0.0, 0
    for lo in range(0, len(items), batch):
        chunk = items[lo:lo + batch]
        loss, _ = text_loss(lm, prompt, tokens(torch.as_tensor(chunk, device=tokens.centre.device)),
                            [targets[i] for i in chunk], pad)
        n = sum(len(targets[i]) for i in chunk)
        total, count = total + float(loss) * n, count + n
    return total / max(count, 1)


def probe(dataset: str, grid: list[dict], epochs: int, eval_items: int, seed: int,
          backbone: str | None, device: str) -> dict:
    data = load_dataset(dataset)
    rows = []
    for point in grid:
        overrides = {**point, "stage1_epochs": epochs, **({"backbone": backbone} if backbone else {})}
        _, cfg = resolve_config("said", "default", overrides, dataset=data.name)
        texts = [item_text(data.catalog, i, cfg.text_fields) for i in range(len(data.catalog))]
        lm, tok = load_causal_lm(cfg.backbone, device=device, dtype=cfg.dtype, seed=seed)
        torch.manual_seed(seed)
        tokens = VirtualTokens(len(texts), cfg.item_dim, cfg.virtual_tokens,
                               lm.get_input_embeddings().weight).to(device)
        prompt = AlignmentPrompt.from_template(tok, cfg.prompt, cfg.virtual_tokens)
        targets = [target_ids(tok, t, cfg.max_text_tokens) for t in texts]
        sample = np.sort(np.random.default_rng(seed).permutation(len(texts))[:eval_items])
        before = held_loss(lm, prompt, tokens, targets, sample, tok.pad_token_id)
        start = time.perf_counter()
        stats = train_alignment(lm, tokens, prompt, targets, tok.pad_token_id,
                                AlignmentSettings(epochs, cfg.stage1_batch, cfg.stage1_lr,
                                                  cfg.stage1_item_lr, seed))
        rows.append({"settings": {"stage1_lr": cfg.stage1_lr,
                                  "stage1_item_lr": cfg.stage1_item_lr},
                     "loss_before": round(before, 4),
                     "loss_after": round(held_loss(lm, prompt, tokens, targets, sample,
                                                   tok.pad_token_id), 4),
                     "train_loss_last10": round(stats["loss_last10"], 4),
                     "exact_match_rate": greedy_match(lm, tok, tokens, prompt, targets,
                                                      sample)["exact_match_rate"],
                     "steps": stats["steps"], "tokens_per_s": stats["tokens_per_s"],
                     "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)
    best = min(rows, key=lambda r: r["loss_after"])
    return {"method": "said", "dataset": data.name, "objective":
            f"stage-1 per-token loss on {len(sample)} catalogue items after training "
            "(item text only; no interaction data)",
            "epochs": epochs, "seed": seed, "rows": rows, "chosen": best["settings"],
            "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                            "device": device, "platform": platform.platform()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--grid", nargs="*", default=[])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--eval-items", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backbone", default=None, help="override said's backbone (tiny:random)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    record = probe(args.dataset, parse_grid(args.grid), args.epochs, args.eval_items,
                   args.seed, args.backbone, device)
    print(f"chosen: {json.dumps(record['chosen'])}")  # each row was printed as it finished
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
