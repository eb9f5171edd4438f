"""Command line: ``python -m benchmark [run] --all | --methods a,b``, ``tune``, ``list``,
``report``, ``recommend``, ``chat``.

Errors in the user's input (unknown method, bad data file, unknown config key, empty dataset, a
method's own code failing, an unwritable results or cache directory) print one line
``error: ...`` and exit with status 2; anything else is a bug of ours: one line
``error: internal error: ...`` and status 1. ``--debug`` adds the traceback.

SIGTERM (``kill``, a batch scheduler's time limit) is handled like Ctrl-C: the run unwinds,
so a RecBole training subprocess is stopped with it instead of training on as an orphan, and
the invocation exits with status 143 (finished runs stay cached).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

from benchmark.config import PROFILES
from benchmark.errors import BenchmarkError, one_line

COMMANDS = ("run", "tune", "list", "report", "recommend", "chat")
DEBUG_HELP = "print the traceback of an error (default: one line naming what to fix)"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _common_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=None,
                   help="dataset name from configs/datasets/ or a path: a RecBole .inter file "
                        "(or its folder), an Amazon Reviews 2023 <Category>.jsonl[.gz], or an "
                        "LC-Rec <Name>.inter.json[.gz] (default: `run` covers the profile's "
                        "datasets, `recommend`/`chat` use ml-100k)")
    p.add_argument("--meta", default=None,
                   help="Amazon meta_<Category>.jsonl[.gz] (default: beside the reviews file)")
    p.add_argument("--profile", default="default", choices=PROFILES,
                   help="smoke (seconds, tests), default (2-core CPU; reference: results/), gpu "
                        "(one GPU, packaged backbones, offline; reference: results-gpu/), paper "
                        "(paper scale, your own weights)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key: `key=value` for every selected method, "
                        "`method.key=value` for one, `harness.key=value` for the protocol "
                        "settings (values parsed as YAML)")
    p.add_argument("--adapter-module", action="append", default=[], metavar="MODULE",
                   help="import a method from outside the repository (file path or dotted name)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="artefact cache (default: $BENCHMARK_CACHE or .cache/ in the repository)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m benchmark",
        description="Benchmark of LLM-for-recommendation paradigms: full-ranking leave-one-out "
                    "evaluation with cold-start slices and paired significance tests.",
        epilog="Without a command (the first argument is an option), `run` is assumed: "
               "python -m benchmark --all. A first argument that is neither an option nor a "
               "command is an error.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="train and evaluate methods (the default command)")
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true",
                       help="every registered method and baseline (RecBole peers only with "
                            "--with-peers)")
    which.add_argument("--methods",
                       help="comma-separated method names, at least one (see `list`)")
    run.add_argument("--with-peers", action="store_true", help="with --all: add the RecBole peers")
    run.add_argument("--protocol", default="both", choices=("loo", "cold_item", "both"))
    run.add_argument("--seeds", default=None,
                     help="comma-separated model seeds, at least one (default: the profile's, "
                          "usually 0)")
    run.add_argument("--results-dir", type=Path, default=None,
                     help="where result files go (default: runs/<profile>/ for the default and "
                          "gpu profiles, the cache for others; the committed reference changes "
                          "only with --results-dir results)")
    run.add_argument("--no-report", action="store_true", help="do not regenerate the report")
    run.add_argument("--plan", action="store_true",
                     help="print the plan (jobs, expected times, total) and exit")
    run.add_argument("--executor", default="serial", choices=("serial", "ray"),
                     help="serial: one job after another in this process (default); ray: each "
                          "job a Ray task, in dependency order (needs the `ray` extra; cache "
                          "and results on a file system every node shares)")
    run.add_argument("--ray-address", default=None, metavar="ADDRESS",
                     help="with --executor ray: an existing cluster (`auto`, or the head's "
                          "HOST:PORT from `ray start --head`); default: a local Ray instance")
    run.add_argument("--ray-workers", type=int, default=None, metavar="N",
                     help="with --executor ray: at most N jobs at once (a local instance gets "
                          "N x harness.threads CPUs); default: the CPUs / harness.threads")
    _common_run_args(run)

    tune = sub.add_parser(
        "tune", help="choose a method's settings on validation (never on test)",
        description="Fit every point of a grid and evaluate it on the validation cases only "
                    "(NDCG@10 over all of them; under cold_item warm and cold_valid together). "
                    "Writes <results>/<dataset>/tuning/<method>.<protocol>.json, which the "
                    "report shows; copy the choice into the method's YAML yourself.")
    tune.add_argument("method")
    tune.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                      help="a config key and its candidate values (repeat for more keys)")
    tune.add_argument("--protocol", default="loo", choices=("loo", "cold_item"))
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--results-dir", type=Path, default=None,
                      help="where the record goes (default: as for `run`)")
    _common_run_args(tune)

    sub.add_parser("list", help="list methods, datasets and profiles").add_argument(
        "--adapter-module", action="append", default=[], metavar="MODULE")

    rep = sub.add_parser("report", help="regenerate REPORT.md from result files alone")
    rep.add_argument("--results-dir", type=Path, default=None, help="default: results/")
    rep.add_argument("--output", type=Path, default=None, help="default: REPORT.md beside results")
    rep.add_argument("--lenient", action="store_true",
                     help="skip result files that cannot be trusted (no per-user file, "
                          "unreadable, row count or users that disagree) instead of stopping; "
                          "each is named on stderr and in the report's 'Skipped files'")

    for name, text in (("recommend", "recommend for one user, optionally steered by a prompt"),
                       ("chat", "talk to a conversational method")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--method", default="sid_llm")
        p.add_argument("--protocol", default="loo", choices=("loo", "cold_item"))
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--user", required=name == "recommend", help="original user id")
        if name == "recommend":
            p.add_argument("--prompt", default=None, help="a request in words, e.g. a genre")
            p.add_argument("-k", type=int, default=10, help="how many items")
            p.add_argument("--explain", action="store_true",
                           help="print the method's reason for its first pick (sid_llm: "
                                "written by the model from the catalogue facts)")
        _common_run_args(p)
    for p in sub.choices.values():
        # SUPPRESS: a subcommand without --debug keeps the value given before it.
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help=DEBUG_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    lead = 0  # options before the command (--debug)
    while lead < len(argv) and argv[lead] == "--debug":
        lead += 1
    parser = build_parser()
    if lead == len(argv) or argv[lead].startswith("-") and argv[lead] not in ("-h", "--help"):
        argv.insert(lead, "run")  # options first: `run` is the default command
    elif argv[lead] not in (*COMMANDS, "-h", "--help"):
        parser.error(f"unknown command {argv[lead]!r}; commands: {', '.join(COMMANDS)}")
    args = parser.parse_args(argv)
    try:
        with _sigterm_unwinds():
            _check_not_empty(args)
            return {"run": cmd_run, "tune": cmd_tune, "list": cmd_list, "report": cmd_report,
                    "recommend": cmd_converse, "chat": cmd_converse}[args.command](args)
    except _Terminated:
        print("terminated; finished runs are cached and will be reused", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted; finished runs are cached and will be reused", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `list | head` stopped reading: not an error
        with contextlib.suppress(OSError, ValueError):  # no real stdout under a test runner
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for SIGPIPE, as 130 is SIGINT's
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        message, status = _error_line(exc, args)
        print(f"error: {message}", file=sys.stderr)
        return status


def _check_not_empty(args: argparse.Namespace) -> None:
    """An option given an empty value is an error, not a silent fall back to its default."""
    dataset = getattr(args, "dataset", None)
    if dataset is not None and not dataset.strip():
        raise BenchmarkError(f"--dataset names no dataset, got {dataset!r}")


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so it unwinds as Ctrl-C does."""


@contextlib.contextmanager
def _sigterm_unwinds():
    """While the command runs, SIGTERM raises :class:`_Terminated` instead of killing the
    process outright: ``finally`` blocks and ``subprocess.run`` (which kills its child on any
    exception) get to run. Only the main thread can take a signal handler; elsewhere (a test
    runner's worker thread) SIGTERM keeps its handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: Any) -> NoReturn:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _error_line(exc: Exception, args: argparse.Namespace) -> tuple[str, int]:
    """The one line an exception is reported as, and the exit status (2: the user's to fix)."""
    unwritable = _unwritable(exc, args)
    if unwritable is not None:
        return unwritable, 2
    if isinstance(exc, BenchmarkError):
        return str(exc), 2
    hint = "" if args.debug else " (rerun with --debug for the traceback)"
    return f"internal error: {one_line(exc)}{hint}", 1


def _unwritable(exc: Exception, args: argparse.Namespace) -> str | None:
    """For an OSError on a path under a place this command writes (itself, or the cause of a
    method's failure): which path, why, and which option chooses another place."""
    error = exc if isinstance(exc, OSError) else exc.__cause__
    if not isinstance(error, OSError) or error.filename is None:
        return None
    path = Path(str(error.filename)).resolve()
    flags = [flag for flag, root in _write_places(args)
             if path == root.resolve() or path.is_relative_to(root.resolve())]
    if not flags:
        return None
    reason = error.strerror or one_line(error)
    return f"cannot write {error.filename}: {reason}; choose another {' / '.join(flags)}"


def _write_places(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(option, folder or file) of every place the command writes to."""
    from benchmark.settings import (
        DEFAULT_RESULTS_DIR,
        default_cache_dir,
        reference_results_dir,
        results_dir_for,
    )

    if args.command == "report":
        results = args.results_dir or DEFAULT_RESULTS_DIR
        return [("--output", args.output or results.parent / "REPORT.md"),
                ("--results-dir", results)]
    if args.command not in ("run", "tune", "recommend", "chat"):
        return []
    cache = args.cache_dir or default_cache_dir()
    places = [("--cache-dir", cache)]
    if args.command == "run":
        places.insert(0, ("--results-dir", results_dir_for(args.profile, args.results_dir, cache)))
    elif args.command == "tune":
        places.insert(0, ("--results-dir",
                          args.results_dir or reference_results_dir(args.profile, cache)))
    return places


def _load_external(modules: list[str]) -> None:
    from benchmark import registry

    for module in modules:
        registry.load_external(module)


def cmd_list(args: argparse.Namespace) -> int:
    from benchmark import registry
    from benchmark.settings import DATASET_CONFIG_DIR, harness_settings

    _load_external(args.adapter_module)
    peers = set(harness_settings("default").peers)
    print("methods:")
    for name, spec in registry.available().items():
        print(f"  {name:22s} {spec.target}{'  (peer: --with-peers)' if name in peers else ''}")
    print("datasets:")
    for path in sorted(DATASET_CONFIG_DIR.glob("*.yaml")):
        print(f"  {path.stem}")
    print("  <path>                 RecBole .inter file/folder, Amazon 2023 <Category>.jsonl[.gz], "
          "or LC-Rec <Name>.inter.json[.gz]")
    print(f"profiles: {', '.join(PROFILES)}")
    print("protocols: loo, cold_item")
    return 0


def _split_overrides(pairs: list[str]):
    from benchmark.config import parse_overrides

    parsed = parse_overrides(pairs)
    harness = {k.split(".", 1)[1]: v for k, v in parsed.items() if k.startswith("harness.")}
    methods = {k: v for k, v in parsed.items() if not k.startswith("harness.")}
    return harness, methods


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark import grid, registry, report, runner
    from benchmark.settings import (
        default_cache_dir,
        harness_settings,
        reference_results_dir,
        results_dir_for,
    )

    _check_executor_args(args)
    _load_external(args.adapter_module)
    harness_over, method_over = _split_overrides(args.overrides)
    settings = harness_settings(args.profile, harness_over)
    known = registry.available()
    if args.all:
        methods = [m for m in known if m not in settings.peers or args.with_peers]
    else:
        # a method named twice (or by an alias and its name) runs once, where first named
        methods = list(dict.fromkeys(registry.resolve_name(m.strip())
                                     for m in args.methods.split(",") if m.strip()))
        if not methods:
            raise BenchmarkError(f"--methods names no method, got {args.methods!r}; "
                                 f"known methods: {', '.join(known)}")
        unknown = [m for m in methods if registry.split_variant(m)[0] not in known]
        if unknown:
            raise BenchmarkError(f"unknown method {unknown[0]!r}; known methods: {', '.join(known)}")
    _check_scoped_overrides(method_over, methods)
    seeds = settings.seeds if args.seeds is None else parse_seeds(args.seeds)
    datasets = [args.dataset] if args.dataset else settings.datasets
    slow: set[str] = set()
    from benchmark.code_status import flat_settings  # the plan's module imports it anyway
    from benchmark.config import to_dict

    resolved = {}  # (dataset, method) -> its config's settings, for the plan's estimates
    for dataset in datasets:  # every config is checked before any data is loaded or job run
        for method in methods:
            _, config = runner.resolve_config(method, args.profile,
                                              _overrides_for(method, method_over, len(methods)),
                                              _dataset_name(dataset))
            resolved[(dataset, method)] = flat_settings(to_dict(config))
            if getattr(config, "precision", "float32") == "bfloat16":
                slow.add(method)
    _warn_emulated_bfloat16(sorted(slow))
    protocols = ("loo", "cold_item") if args.protocol == "both" else (args.protocol,)
    jobs = [grid.Job(d, p, m, s) for d in datasets for p in protocols for m in methods
            for s in seeds]
    cache_dir = args.cache_dir or default_cache_dir()
    out_dir = results_dir_for(args.profile, args.results_dir, cache_dir)
    # Override keys are checked against each method's own config; a scoped key
    # (`sasrec_id.lr=...`) reaches only its method.
    plan = grid.GridRun(
        profile=args.profile, results_dir=out_dir, cache_dir=cache_dir,
        method_overrides={m: _overrides_for(m, method_over, len(methods)) for m in methods},
        harness_overrides=harness_over, meta=args.meta, show_progress=not args.no_progress,
        adapter_modules=tuple(args.adapter_module))
    from benchmark import plan as costs

    # Expected times come from the profile's reference results (results/ for the default
    # profile, results-gpu/ for gpu), whatever folder this run writes to.
    records = costs.recorded(reference_results_dir(args.profile, cache_dir))
    jobs = costs.cheap_first(jobs, records, resolved)
    setup = costs.setup_seconds(jobs, lambda job: _prepare(plan, job))
    lines, _, _ = costs.plan_lines(jobs, records, setup, resolved)
    print("\n".join(lines), flush=True)
    if args.plan:
        return 0
    start = time.perf_counter()
    expected = {j: costs.job_expected(records, j, setup, resolved) for j in jobs}
    if args.executor == "ray":
        status = _run_on_ray(args, jobs, plan, settings.threads, expected)
        if status:
            return status
    else:
        grid.run_serial(jobs, plan, progress=not args.no_progress, expected=expected)
    print(f"wall time: {time.perf_counter() - start:.1f} s; results in {out_dir}")
    if not args.no_report:
        output = report.write_report(out_dir)
        print(f"report: {output}")
    return 0


def _prepare(plan: Any, job: Any) -> None:
    """What every job does before its method runs: load and split the data, fingerprint the
    code (timed by the plan as a job's set-up)."""
    from benchmark import runner
    from benchmark.code_fingerprint import method_fingerprint
    from benchmark.settings import harness_settings

    req = plan.request(job, show_progress=False)
    runner.prepare(req, harness_settings(req.profile, req.harness_overrides))
    method_fingerprint(runner.resolve_config(job.method, req.profile, req.overrides,
                                             _dataset_name(job.dataset))[0].__module__)


def native_bfloat16() -> bool:
    """Whether this machine runs bfloat16 natively: a GPU, or a CPU with AVX512-BF16 or AMX
    (as torch reports them). Without it, torch's bfloat16 autocast emulates the products."""
    import torch

    if torch.cuda.is_available():
        return True
    capability = torch._C._cpu._get_cpu_capability()  # {flag: bool}, torch >= 2.4
    return bool(capability.get("avx512_bf16") or capability.get("amx_bf16"))


def _warn_emulated_bfloat16(methods: list[str]) -> None:
    """One warning naming the methods whose frozen-LLM passes run under ``precision:
    bfloat16`` on a CPU without native bfloat16. It does not change the setting: precision is
    part of a run's config, and a run that changed it by hardware would not be the run asked
    for. Measured on an AVX2-only CPU (AMD EPYC, one thread, beside another job): a 576 x 1536
    Linear over 256 tokens took 79 ms under bfloat16 autocast against 9.5 ms in float32, and
    the SID-LLM ranked about 2.3 s per Amazon user there, against 0.11 on a CPU with AMX
    (both at one thread beside another job)."""
    if not methods or native_bfloat16():
        return
    fix = " ".join(f"--set {m}.precision=float32" for m in methods)
    verb, them = ("runs its", "it") if len(methods) == 1 else ("run their", "them")
    print(f"warning: {', '.join(methods)} {verb} LLM passes under precision bfloat16, which "
          "this CPU emulates (no AVX512-BF16 or AMX): on such a CPU a Linear layer measured 8x "
          f"slower than in float32. Add {fix} to run {them} at float32 (validation NDCG@10 "
          "measured the same at both; docs/methods/sid_llm.md).", file=sys.stderr, flush=True)


def _check_executor_args(args: argparse.Namespace) -> None:
    if args.executor != "ray":
        for flag, value in (("--ray-address", args.ray_address),
                            ("--ray-workers", args.ray_workers)):
            if value is not None:
                raise BenchmarkError(f"{flag} needs --executor ray")
    if args.ray_workers is not None and args.ray_workers < 1:
        raise BenchmarkError(f"--ray-workers expects an integer >= 1, got {args.ray_workers}")


def _run_on_ray(args: argparse.Namespace, jobs: list, plan: Any, threads: int | None,
                expected: dict) -> int:
    """The grid as Ray tasks (paths made absolute: a worker's directory may differ); 0, or the
    exit status of the failed jobs (1 if one of them hit a bug of ours, else 2)."""
    from benchmark import ray_executor

    absolute = {j: j if _dataset_name(j.dataset)
                else dataclasses.replace(j, dataset=_absolute(j.dataset)) for j in jobs}
    jobs = list(absolute.values())
    expected = {absolute[j]: seconds for j, seconds in expected.items() if j in absolute}
    plan = dataclasses.replace(
        plan, results_dir=plan.results_dir.resolve(), cache_dir=plan.cache_dir.resolve(),
        meta=args.meta and _absolute(args.meta),
        adapter_modules=tuple(_absolute(m) for m in plan.adapter_modules))
    statuses: list[int] = []

    def describe(exc: BaseException) -> str:
        message, status = _error_line(exc, args)
        statuses.append(status)
        return message

    failed = ray_executor.run_ray(jobs, plan, threads=threads, address=args.ray_address,
                                  workers=args.ray_workers, progress=not args.no_progress,
                                  describe_error=describe, expected=expected)
    if not failed:
        return 0
    print(f"error: {len(failed)} of {len(jobs)} jobs failed (named above); finished runs are "
          "cached, so the same command resumes", file=sys.stderr)
    return min(statuses)


def _absolute(path: str) -> str:
    """An existing path made absolute; anything else (a module name) unchanged."""
    return str(Path(path).resolve()) if Path(path).exists() else path


def _dataset_name(dataset: str) -> str | None:
    """The name a method YAML's ``datasets:`` block uses: a config name; None for a path (its
    name is only known once loaded, and the run resolves the config again then)."""
    from benchmark.settings import DATASET_CONFIG_DIR

    return dataset if (DATASET_CONFIG_DIR / f"{dataset}.yaml").exists() else None


def cmd_tune(args: argparse.Namespace) -> int:
    from benchmark import registry, tuning
    from benchmark.settings import default_cache_dir, reference_results_dir

    _load_external(args.adapter_module)
    args.method = registry.resolve_name(args.method)
    if args.method not in registry.available():
        raise BenchmarkError(f"unknown method {args.method!r}; known methods: "
                             f"{', '.join(registry.available())}")
    if args.seed < 0:
        raise BenchmarkError(f"--seed expects an integer >= 0, got {args.seed}")
    harness_over, method_over = _split_overrides(args.overrides)
    if set(harness_over) - {"threads"}:  # threads change speed, not what validation chooses
        raise BenchmarkError("tune takes the profile's harness settings (only "
                             "--set harness.threads=N may change); drop the other --set harness.*")
    grid = tuning.Grid.parse(args.grid)
    cache_dir = args.cache_dir or default_cache_dir()
    tuning.tune(args.method, args.dataset or "ml-100k", args.protocol, grid, seed=args.seed,
                profile=args.profile, overrides=_overrides_for(args.method, method_over, 1),
                results_dir=args.results_dir or reference_results_dir(args.profile, cache_dir),
                cache_dir=cache_dir, show_progress=not args.no_progress,
                threads=harness_over.get("threads"))
    return 0


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; a seed named twice counts once; anything but
    non-negative integers (an empty list included) is an error."""
    if not text.strip():
        raise BenchmarkError(f"--seeds names no seed, got {text!r}; give comma-separated "
                             "integers >= 0, e.g. 0,1,2")
    seeds = []
    for part in text.split(","):
        try:
            seed = int(part)
        except ValueError:
            raise BenchmarkError(
                f"--seeds expects comma-separated integers, got {part.strip()!r}") from None
        if seed < 0:  # numpy and torch take seeds >= 0
            raise BenchmarkError(f"--seeds expects integers >= 0, got {seed}")
        seeds.append(seed)
    return list(dict.fromkeys(seeds))


def _check_scoped_overrides(overrides: dict, methods: list[str]) -> None:
    for key in overrides:
        scope, dot, _ = key.partition(".")
        if dot and scope not in methods:
            raise BenchmarkError(f"--set {key}: {scope!r} is not among the selected methods")


def _overrides_for(method: str, overrides: dict, n_methods: int) -> dict:
    """Scoped keys for this method; unscoped keys go to every method."""
    return {k: v for k, v in overrides.items() if "." not in k or k.split(".", 1)[0] == method}


def cmd_report(args: argparse.Namespace) -> int:
    from benchmark import report
    from benchmark.settings import DEFAULT_RESULTS_DIR

    results = args.results_dir or DEFAULT_RESULTS_DIR
    if not Path(results).is_dir():
        raise BenchmarkError(f"{results}: no such results directory")
    output = report.write_report(Path(results), args.output, lenient=args.lenient)
    print(f"report: {output}")
    return 0


def cmd_converse(args: argparse.Namespace) -> int:
    from benchmark import conversation

    _load_external(args.adapter_module)
    return conversation.main(args)
