"""Four invocations at once on one cache give what one invocation alone gives.

Each runs the same 12 quick jobs (3 baselines x 2 protocols x 2 seeds) into its own results
folder; the per-run lock lets one of them compute a run while the others wait and copy it.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from benchmark.cli import main
from benchmark.results import read_run

ROOT = Path(__file__).resolve().parent.parent
METHODS, PROTOCOLS, SEEDS = ("popularity", "random", "item_knn"), ("loo", "cold_item"), range(2)
INVOCATIONS = 4


def _args(dataset, cache, results):
    return ["--methods", ",".join(METHODS), "--protocol", "both", "--seeds",
            ",".join(map(str, SEEDS)), "--dataset", str(dataset), "--profile", "smoke",
            "--cache-dir", str(cache), "--results-dir", str(results), "--no-progress",
            "--no-report"]


def _files(results):
    return {f"tiny/{p}/{m}/seed{s}": results / "tiny" / p / m / f"seed{s}.json"
            for p in PROTOCOLS for m in METHODS for s in SEEDS}


def test_concurrent_invocations_on_one_cache_match_a_serial_run(tiny_atomic, tmp_path, capsys):
    assert main(_args(tiny_atomic, tmp_path / "serial_cache", tmp_path / "serial")) == 0
    capsys.readouterr()
    serial = _files(tmp_path / "serial")

    shared = tmp_path / "shared_cache"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "benchmark",
                               *_args(tiny_atomic, shared, tmp_path / f"out{i}")],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for i in range(INVOCATIONS)]
    errors = [p.communicate(timeout=240)[1] for p in procs]
    seconds = time.perf_counter() - start
    for p, err in zip(procs, errors):
        assert p.returncode == 0, err
        assert "Traceback" not in err and "warning" not in err

    outputs = [_files(tmp_path / f"out{i}") for i in range(INVOCATIONS)]
    for job, serial_json in serial.items():
        serial_csv = serial_json.with_suffix(".per_user.csv").read_bytes()
        jsons = set()
        for files in outputs:
            read_run(files[job], files[job].with_suffix(".per_user.csv"))  # parses and agrees
            assert files[job].with_suffix(".per_user.csv").read_bytes() == serial_csv, job
            jsons.add(files[job].read_bytes())
        # one invocation computed the run, the others copied it: identical down to its timings
        assert len(jsons) == 1, job
    assert len(list((shared / "runs").iterdir())) == len(serial)
    assert list(tmp_path.rglob("*.tmp")) == []  # no writer's temporary file is left
    print(f"{INVOCATIONS} invocations x {len(serial)} jobs: {seconds:.1f} s")
