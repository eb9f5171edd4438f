"""A trained SID-LLM ranked at float32 and at bfloat16 autocast, on every validation case, in one run.

What decides the SID-LLM's ranking precision: speed and validation quality of the *trained*
model, measured together. The tool fits the method as the benchmark does (``runner.fit_adapter``:
a benchmark run's checkpoints in ``--cache-dir`` are reused, otherwise it trains first; the
ranking precision is not part of the stage-2 checkpoint when stage 2 does not validate), then
ranks every validation case at both precisions, in chunks of ``--chunk`` cases whose order of
precisions alternates, so that load on the machine falls on both alike. It reports, per
precision, seconds per user, tokens computed per second (every token the decoder is fed,
padding included) and validation NDCG@10; the paired difference bfloat16 - float32 of the
per-case NDCG@10 with its 95% interval (mean +- 1.96 standard errors over cases); and the share
of cases whose target has the same rank at both. The machine's load average is recorded at the start
and the end: an idle 2-core machine is the setting the budget is stated for.

A benchmark, not a test. Run from the repository root::

    python tools/sid_llm_precision.py --dataset amazon-scientific --protocol loo --seed 0 \\
        --threads 2 --out results/throughput/sid-llm-precision-amazon-scientific.json
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from measure_common import emit

from benchmark import runner
from benchmark.evaluation import HEADLINE, evaluate, metric_values
from benchmark.models.llm import PRECISIONS
from benchmark.settings import harness_settings
from benchmark.splits import Cases


def paired(diff: np.ndarray) -> dict[str, float]:
    """Mean of a paired difference and its normal 95% interval."""
    mean = float(diff.mean())
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    return {"mean": round(mean, 5), "ci95": [round(mean - 1.96 * se, 5),
                                            round(mean + 1.96 * se, 5)],
            "ci_contains_0": bool(mean - 1.96 * se <= 0 <= mean + 1.96 * se)}


class TokenCounter:
    """Counts the tokens the decoder is fed (a forward pre-hook on it)."""

    def __init__(self, decoder: torch.nn.Module) -> None:
        self.tokens = 0
        decoder.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, _module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            self.tokens += int(ids.numel())


def parser(description: str) -> argparse.ArgumentParser:
    """The options of the SID-LLM precision tools: which trained run, threads, which
    validation cases, method settings, where to write the JSON."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--dataset", default="amazon-scientific")
    ap.add_argument("--protocol", default="loo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", default="default")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", type=int, default=0, help="validation cases (0 = every case)")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="method setting key=value (YAML value), as the benchmark's --set")
    ap.add_argument("--out", type=Path, default=None)
    return ap


def prepare(args: argparse.Namespace) -> tuple[Any, Any, Any, Any, Cases]:
    """(harness settings, run request, dataset, split, the validation cases to rank)."""
    from benchmark.config import parse_overrides

    torch.set_num_threads(args.threads)
    settings = harness_settings(args.profile)
    req = runner.RunRequest(method="sid_llm", dataset=args.dataset, protocol=args.protocol,
                            seed=args.seed, profile=args.profile,
                            overrides=parse_overrides(args.overrides),
                            cache_dir=args.cache_dir, show_progress=False)
    dataset, split = runner.prepare(req, settings)
    valid = split.valid
    if 0 < args.cases < len(valid):
        idx = runner.validation_sample(len(valid), args.cases, settings.split_seed)
        valid = Cases(valid.users[idx], [valid.histories[i] for i in idx], valid.targets[idx])
    return settings, req, dataset, split, valid


def main() -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--eval-batch", type=int, default=None,
                    help="prompts per beam-search batch when ranking (default: the method's "
                         "eval_batch); set after fitting, so the trained model is the same")
    args = ap.parse_args()
    settings, req, dataset, split, valid = prepare(args)
    start = time.perf_counter()
    adapter, _, fit_seconds = runner.fit_adapter(req, settings, dataset, split)
    fit_wall = time.perf_counter() - start
    if args.eval_batch:
        adapter.config.eval_batch = args.eval_batch
    counter = TokenCounter(adapter.model.get_base_model().get_decoder()
                           if hasattr(adapter.model, "get_base_model")
                           else adapter.model.get_decoder())
    seconds = dict.fromkeys(PRECISIONS, 0.0)
    tokens = dict.fromkeys(PRECISIONS, 0)
    values = {p: [] for p in PRECISIONS}
    ranks = {p: [] for p in PRECISIONS}
    load_start = os.getloadavg()
    for number, lo in enumerate(range(0, len(valid), args.chunk)):
        hi = min(lo + args.chunk, len(valid))
        chunk = Cases(valid.users[lo:hi], valid.histories[lo:hi], valid.targets[lo:hi])
        order = PRECISIONS if number % 2 == 0 else tuple(reversed(PRECISIONS))
        for precision in order:
            adapter.config.precision = precision
            counter.tokens = 0
            out = evaluate(adapter, chunk, dataset.n_items, mask_history=settings.mask_history,
                           k=settings.top_k, batch_size=settings.eval_batch_size)
            seconds[precision] += out.seconds
            tokens[precision] += counter.tokens
            values[precision].append(metric_values(out.ranks, out.list_length)[HEADLINE])
            ranks[precision].append(out.ranks)
        print(f"{hi}/{len(valid)} cases: " + ", ".join(
            f"{p} {seconds[p] / hi:.4f} s/user" for p in PRECISIONS), flush=True)
    n = len(valid)
    ndcg = {p: np.concatenate(values[p]) for p in PRECISIONS}
    rk = {p: np.concatenate(ranks[p]) for p in PRECISIONS}
    result = {
        "dataset": args.dataset, "protocol": args.protocol, "seed": args.seed,
        "profile": args.profile, "validation_cases": n,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "fit_seconds_recorded": round(fit_seconds, 1), "fit_wall_seconds": round(fit_wall, 1),
        "k": settings.top_k, "beam_width": max(adapter.config.beam_width, settings.top_k),
        "eval_batch": adapter.config.eval_batch,
    }
    for p in PRECISIONS:
        result[p] = {"seconds_per_user": round(seconds[p] / n, 4),
                     "tokens_per_second": round(tokens[p] / seconds[p], 1),
                     "validation_ndcg10": round(float(ndcg[p].mean()), 5)}
    result["bfloat16_minus_float32_ndcg10"] = paired(ndcg["bfloat16"] - ndcg["float32"])
    result["same_target_rank_share"] = round(float(
        np.mean((rk["bfloat16"] == rk["float32"]) | (np.isinf(rk["bfloat16"])
                                                      & np.isinf(rk["float32"])))), 4)
    result["speedup"] = round(seconds["float32"] / seconds["bfloat16"], 3)
    emit(result, args.out)


if __name__ == "__main__":
    main()
