"""The trained methods' GPU paths: fit and rank on CUDA at the smoke profile.

Skipped where no CUDA device is visible (this project's CPU machines and CI); on a GPU machine
`python -m pytest tests/test_gpu_paths.py` runs them. The runner puts a run on CUDA whenever
one is available, so these fits are exactly what `--profile gpu` does, at smoke size: a tensor
created on the CPU and mixed with the model's (the class of bug that once crashed
``SIDVocab.extend`` on CUDA) fails here with a device error. The CPU-side guard against that
class of bug is the `meta`-device test in tests/test_sid_llm.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import smoke_fit

from benchmark.evaluation import evaluate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("method", ["sasrec_id", "sasrec_sid", "recformer", "sid_llm", "said",
                                    "said_minilm", "ra_rec", "ra_rec_hard"])
def test_smoke_fit_and_ranking_run_on_cuda(method, tiny_atomic, cache_dir):
    adapter, ctx, dataset, split = smoke_fit(method, "cold_item", tiny_atomic, cache_dir)
    assert ctx.device == "cuda"
    ranks = evaluate(adapter, split.test, dataset.n_items).ranks
    assert len(ranks) == len(split.test.users)
    assert np.isfinite(ranks).any()  # some target ranked (a miss is inf for list methods)
