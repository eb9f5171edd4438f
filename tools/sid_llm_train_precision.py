"""The SID-LLM trained at float32 and at bfloat16 autocast: training speed and validation quality.

What decides the SID-LLM's training precision (``train_precision``): the method is fitted twice
as the benchmark fits it (``runner.fit_adapter``; a benchmark run's checkpoints in
``--cache-dir`` are reused, otherwise it trains), once per training precision, and both models
rank the same validation cases at the method's ranking precision. It reports, per training
precision, the recorded training seconds and tokens per second of both stages (a checkpoint
from the cache reports its original training's figures, under whatever load that run had: the
load averages of this run are recorded, the earlier run's are not), and validation NDCG@10; then
the paired difference bfloat16 - float32 of the per-case NDCG@10 with its 95% interval (mean
+- 1.96 standard errors over cases). The two are different models, so the interval also holds
the training noise of one seed: a difference it excludes is a difference of these two models.

A benchmark, not a test. Run from the repository root::

    python tools/sid_llm_train_precision.py --dataset amazon-scientific --protocol loo \\
        --seed 0 --threads 2 --out results/throughput/sid-llm-train-precision-amazon-scientific.json
"""

from __future__ import annotations

import gc
import os
import platform
import time
from typing import Any

import torch
from measure_common import emit
from sid_llm_precision import paired, parser, prepare

from benchmark import runner
from benchmark.evaluation import HEADLINE, evaluate, metric_values
from benchmark.models.llm import PRECISIONS


def _stage(stats: dict[str, Any] | None) -> dict[str, Any]:
    stats = stats or {}
    return {k: stats.get(k) for k in ("steps", "tokens", "seconds", "tokens_per_s",
                                       "loss_last10")}


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    settings, req, dataset, split, valid = prepare(args)
    load_start = os.getloadavg()
    result: dict[str, Any] = {
        "dataset": args.dataset, "protocol": args.protocol, "seed": args.seed,
        "profile": args.profile, "validation_cases": len(valid),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    ndcg = {}
    # bfloat16 first: the float32 model is usually a benchmark run's, in the cache or still
    # training in another process (the cache's lock makes this one wait for it)
    for precision in reversed(PRECISIONS):
        # (the steering and explanation measurements are not needed: off, as they come
        # after training and are not part of its checkpoints)
        req.overrides = {**req.overrides, "train_precision": precision, "steer_users": 0,
                         "explain_users": 0}
        start = time.perf_counter()
        adapter, _, fit_seconds = runner.fit_adapter(req, settings, dataset, split)
        fit_wall = time.perf_counter() - start
        out = evaluate(adapter, valid, dataset.n_items, mask_history=settings.mask_history,
                       k=settings.top_k, batch_size=settings.eval_batch_size)
        ndcg[precision] = metric_values(out.ranks, out.list_length)[HEADLINE]
        diag = adapter.diagnostics()
        result[precision] = {
            "fit_seconds_recorded": round(fit_seconds, 1), "fit_wall_seconds": round(fit_wall, 1),
            "stage1": _stage(diag.get("stage1")), "stage2": _stage(diag.get("stage2")),
            "ranking_precision": adapter.config.precision,
            "ranking_seconds_per_user": round(out.seconds / len(valid), 4),
            "validation_ndcg10": round(float(ndcg[precision].mean()), 5)}
        print(f"train_precision {precision}: fit {fit_seconds:.0f} s recorded, validation "
              f"NDCG@10 {ndcg[precision].mean():.5f}", flush=True)
        del adapter
        gc.collect()
    result["load_average_start"] = [round(x, 2) for x in load_start]
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["bfloat16_minus_float32_ndcg10"] = paired(ndcg["bfloat16"] - ndcg["float32"])
    result["fit_speedup"] = round(result["float32"]["fit_seconds_recorded"]
                                  / max(result["bfloat16"]["fit_seconds_recorded"], 1e-9), 3)
    emit(result, args.out)


if __name__ == "__main__":
    main()
