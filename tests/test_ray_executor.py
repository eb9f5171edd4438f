"""`--executor ray`: the grid as Ray tasks gives what the serial run gives, in dependency order.

The end-to-end test starts a local Ray instance with two job slots (a few seconds) on tiny data;
the ordering, GPU-request and writability tests need no Ray.
"""

import json
import multiprocessing
import socket
import sys
import time
from pathlib import Path

import pytest

from benchmark import grid, registry
from benchmark.cli import main
from benchmark.errors import BenchmarkError
from benchmark.grid import Job, dependencies, schedule
from benchmark.runner import RunRequest

METHODS = ("popularity", "item_knn", "sasrec_id", "sasrec_sid")
PROTOCOLS, SEEDS = ("loo", "cold_item"), (0, 1)
# The end-to-end grid: one seed keeps it at 8 jobs over 2 workers (two seeds took a minute of CI)
E2E_SEEDS = (0,)
LLM_METHODS = {"sid_llm", "said", "said_minilm", "ra_rec", "ra_rec_hard", "recformer",
               "recformer_pretrained"}

BROKEN = '''
from benchmark import register
from benchmark.adapter import AdapterBase


@register("broken")
class Broken(AdapterBase):
    def fit(self, train, validate, ctx):
        raise RuntimeError("boom")

    def score(self, users):
        raise AssertionError("never reached")
'''


def _args(dataset, cache, results, methods=METHODS):
    return ["--methods", ",".join(methods), "--protocol", "both", "--seeds",
            ",".join(map(str, E2E_SEEDS)),
            "--dataset", str(dataset), "--profile", "smoke", "--set", "harness.threads=1",
            "--cache-dir", str(cache), "--results-dir", str(results), "--no-progress",
            "--no-report"]


def _per_user(results: Path, method: str, protocol: str, seed: int) -> Path:
    return results / "tiny" / protocol / method / f"seed{seed}.per_user.csv"


def test_ray_grid_matches_the_serial_run_and_resumes(tiny_atomic, tmp_path, capsys):
    pytest.importorskip("ray")
    assert main(_args(tiny_atomic, tmp_path / "serial_cache", tmp_path / "serial")) == 0
    ray_args = _args(tiny_atomic, tmp_path / "ray_cache", tmp_path / "ray")
    capsys.readouterr()
    assert main([*ray_args, "--executor", "ray", "--ray-workers", "2"]) == 0
    finished = [line for line in capsys.readouterr().out.splitlines() if " seed" in line
                and "took" in line]
    assert len(finished) == len(METHODS) * len(PROTOCOLS) * len(E2E_SEEDS)
    assert all("(computed)" in line for line in finished)  # as the serial lines say
    cells = [(m, p, s) for m in METHODS for p in PROTOCOLS for s in E2E_SEEDS]
    for cell in cells:
        serial, on_ray = _per_user(tmp_path / "serial", *cell), _per_user(tmp_path / "ray", *cell)
        assert on_ray.read_bytes() == serial.read_bytes(), cell
        a, b = (json.loads(path.with_name(f"seed{cell[2]}.json").read_text())
                for path in (serial, on_ray))
        for key in ("metrics", "config", "split_hash", "harness"):
            assert a[key] == b[key], (cell, key)
    capsys.readouterr()

    # A rerun on the same cache copies every finished run (same bytes, original fit times);
    # a job that fails is named with its method and error while the others go on.
    module = tmp_path / "broken_method.py"
    module.write_text(BROKEN)
    rerun = _args(tiny_atomic, tmp_path / "ray_cache", tmp_path / "rerun", (*METHODS, "broken"))
    code = main([*rerun, "--adapter-module", str(module), "--executor", "ray",
                 "--ray-workers", "2"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "2 of 10 jobs failed" in err
    assert err.count(f"failed: broken {tiny_atomic.resolve()} ") == 2
    assert "method 'broken' failed in fit: RuntimeError: boom" in err
    for cell in cells:
        first = _per_user(tmp_path / "ray", *cell).with_name(f"seed{cell[2]}.json")
        again = _per_user(tmp_path / "rerun", *cell).with_name(f"seed{cell[2]}.json")
        assert again.read_bytes() == first.read_bytes(), cell
    assert len(list((tmp_path / "ray_cache" / "runs").iterdir())) == len(cells)


def test_without_ray_the_ray_executor_says_how_to_install_it(tiny_atomic, tmp_path,
                                                             monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    common = ["--methods", "popularity", "--protocol", "loo", "--dataset", str(tiny_atomic),
              "--profile", "smoke", "--cache-dir", str(tmp_path / "cache"), "--no-progress",
              "--no-report"]
    assert main([*common, "--results-dir", str(tmp_path / "a"), "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --executor ray needs Ray") and 'pip install -e ".[ray]"' in err
    assert not (tmp_path / "a").exists()
    # The serial default never imports Ray.
    assert main([*common, "--results-dir", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "tiny" / "loo" / "popularity" / "seed0.json").exists()


def test_ray_options_need_the_ray_executor(capsys):
    assert main(["--methods", "popularity", "--ray-workers", "2"]) == 2
    assert "--ray-workers needs --executor ray" in capsys.readouterr().err


def _grid(methods, protocols=PROTOCOLS, seeds=SEEDS, datasets=("ml-100k",)):
    return [Job(d, p, m, s) for d in datasets for p in protocols for m in methods for s in seeds]


def test_ra_rec_waits_for_sasrec_id_of_its_own_split_and_seed():
    jobs = _grid(["popularity", "ra_rec", "ra_rec_hard", "sasrec_id"])  # --all's order
    before, order = dependencies(jobs), schedule(jobs)
    for job in jobs:
        if job.method.startswith("ra_rec"):
            assert before[job] == {Job(job.dataset, job.protocol, "sasrec_id", job.seed)}, job
            assert order.index(job) > order.index(next(iter(before[job])))
        else:
            assert before[job] == set(), job
    # The builders come first, then everything else in the given order.
    assert order[:4] == [Job("ml-100k", p, "sasrec_id", s) for p in PROTOCOLS for s in SEEDS]
    # Without sasrec_id in the grid, ra_rec trains the checkpoint and ra_rec_hard waits for it.
    alone = dependencies(_grid(["ra_rec", "ra_rec_hard"], ["loo"], [0]))
    assert alone[Job("ml-100k", "loo", "ra_rec_hard", 0)] == {Job("ml-100k", "loo", "ra_rec", 0)}


def test_item_text_artefacts_are_built_once_per_dataset_before_their_readers():
    jobs = _grid(["sasrec_sid", "sid_llm"], datasets=("ml-100k", "amazon-scientific"))
    before = dependencies(jobs)
    for dataset in ("ml-100k", "amazon-scientific"):
        builder = Job(dataset, "loo", "sasrec_sid", 0)  # semantic IDs: every protocol and seed
        assert before[builder] == set()
        for job in jobs:
            if job.dataset == dataset and job != builder:
                assert builder in before[job], job
        # SID-LLM stage 1 is shared by the protocols of one seed.
        assert Job(dataset, "loo", "sid_llm", 1) in before[Job(dataset, "cold_item", "sid_llm", 1)]
        assert not any(j.dataset != dataset for j in before[Job(dataset, "loo", "sid_llm", 1)])


def test_every_registered_method_fits_the_dependency_table():
    known = registry.available()
    for artefact, (methods, scope) in grid.SHARED_ARTEFACTS.items():
        assert set(methods) <= set(known), artefact
        assert set(scope) <= {"dataset", "protocol", "seed"}, artefact
    jobs = _grid(list(known))
    assert sorted(schedule(jobs)) == sorted(jobs)  # no cycle, nothing lost


def test_only_llm_methods_ask_for_a_gpu_and_only_where_there_is_one():
    from benchmark.ray_executor import task_resources

    for method in ("sid_llm", "said", "ra_rec", "ra_rec_hard", "recformer",
                   "recformer_pretrained", "popularity", "sasrec_id", "sasrec_sid"):
        wants = method in LLM_METHODS
        assert registry.adapter_class(method).wants_gpu is wants, method
        assert task_resources(method, 2, cluster_gpus=1) == {"num_cpus": 2,
                                                             "num_gpus": int(wants)}, method
        # On a CPU-only cluster a GPU request would wait forever: none is made.
        assert task_resources(method, None, cluster_gpus=0) == {"num_cpus": 1, "num_gpus": 0}


def test_a_worker_that_cannot_write_the_cache_or_results_fails_before_any_work(tmp_path):
    from benchmark.ray_executor import run_job

    blocker = tmp_path / "not_a_directory"
    blocker.write_text("a file where the results folder should be")
    request = RunRequest(method="popularity", dataset="ml-100k", profile="smoke",
                         cache_dir=tmp_path / "cache", results_dir=blocker / "results",
                         show_progress=False)
    with pytest.raises(BenchmarkError) as error:
        run_job(request)
    message = str(error.value)
    assert f"node {socket.gethostname()} cannot write {blocker / 'results'}" in message
    assert "every Ray node mounts at the same path" in message
    assert not (tmp_path / "cache" / "runs").exists()  # nothing ran


def _want_artefact(cache_root: Path, log: Path, start) -> None:
    from benchmark.cache import Cache

    def build() -> str:
        with open(log, "a") as fh:
            fh.write("built\n")
        time.sleep(0.5)  # long enough for the other process to ask meanwhile
        return "codes"

    start.wait()
    assert Cache(cache_root).get_or_build("semantic_ids", {"catalog": "c"}, build) == "codes"


def test_two_processes_wanting_one_artefact_at_once_build_it_once(tmp_path):
    """The guarantee benchmark.grid relies on: the cache's lock, not the job order."""
    context = multiprocessing.get_context("fork")
    start = context.Barrier(2)
    workers = [context.Process(target=_want_artefact,
                               args=(tmp_path / "cache", tmp_path / "log", start))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert (tmp_path / "log").read_text() == "built\n"
