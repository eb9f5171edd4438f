"""Inner progress bars name their job during a grid run."""

from __future__ import annotations

import io

from tqdm.auto import tqdm

from benchmark.progress import job_label


def test_bars_created_inside_a_job_carry_its_label_and_tqdm_is_restored():
    with job_label("tiger ml-100k loo seed0"):
        named = tqdm(range(3), desc="TIGER epoch 2/50", file=io.StringIO())
        positional = tqdm(range(3), "RQ-VAE", file=io.StringIO())
        bare = tqdm(range(3), file=io.StringIO())
    after = tqdm(range(3), desc="TIGER epoch 3/50", file=io.StringIO())
    assert named.desc == "tiger ml-100k loo seed0 - TIGER epoch 2/50"
    assert positional.desc == "tiger ml-100k loo seed0 - RQ-VAE"
    assert bare.desc == "tiger ml-100k loo seed0"
    assert after.desc == "TIGER epoch 3/50"
