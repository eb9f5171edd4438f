"""Recording a behaviour-preserving refactor as code-equivalence entries.

A refactor changes code fingerprints (:mod:`benchmark.code_fingerprint`) and so every cache key
and the recorded code of every result made before it. When the refactor changes no result, that
is shown, not assumed: the smoke grid (the smoke profile's datasets, both protocols, seed 0) is
run with the old code (a git worktree of the given commit) and with the checkout, and an entry
old fingerprint -> new fingerprint is written for each method whose per-user files are
byte-identical in every cell. Module fingerprints (the keys of artefacts and checkpoints) get
entries only when the grid covered every built-in method and every one reproduced. Methods that differ get none: their
cached runs are recomputed and their committed results are reported as made by other code.

``python tools/code_equivalence.py --since <commit>`` runs it; entries go to
``configs/code-equivalence.json`` with the commit and the grid they were checked on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmark import code_fingerprint as cf
from benchmark import registry
from benchmark.cache import atomic_write_text
from benchmark.errors import BenchmarkError


def _git(*args: str, cwd: Path = registry.REPO_ROOT) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise BenchmarkError(f"git {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def method_modules() -> dict[str, str]:
    """{method: its adapter module} of the built-in methods."""
    return {name: spec.target.partition(":")[0] for name, spec in registry.available().items()
            if spec.yaml_path is not None}


def changed_methods(old_root: Path, methods: dict[str, str]) -> dict[str, tuple[str, str]]:
    """{method: (old, new) fingerprint} for the methods whose code differs and is not yet
    linked by an entry. The old fingerprint is the one the old code records (computed by its
    own fingerprinting where it has one, so a change to the fingerprinting is covered too)."""
    old_of = _recorded_fingerprints(old_root, methods)
    out = {}
    for name, module in methods.items():
        old = old_of.get(name)
        if old is None:
            try:
                old = cf.fingerprint_of([module, cf.HARNESS_MODULE], root=old_root)
            except BenchmarkError:  # the method did not exist then
                continue
        new = cf.fingerprint_of([module, cf.HARNESS_MODULE])
        if not cf.same_code(old, new):
            out[name] = (old, new)
    return out


def _recorded_fingerprints(tree: Path, methods: dict[str, str]) -> dict[str, str]:
    """{method: the fingerprint the code in ``tree`` records for it}; {} where that code has no
    fingerprinting (then the current rule is applied to its files)."""
    if not (tree / "benchmark" / "code_fingerprint.py").is_file():
        return {}
    script = ("import json, sys\nfrom benchmark.code_fingerprint import method_fingerprint\n"
              "out = {}\nfor name, module in json.loads(sys.argv[1]).items():\n"
              "    try:\n        out[name] = method_fingerprint(module)\n"
              "    except Exception:\n        pass\nprint(json.dumps(out))\n")
    done = subprocess.run([sys.executable, "-c", script, json.dumps(methods)], cwd=tree,
                          env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
                          text=True)
    if done.returncode:
        raise BenchmarkError(f"the code in {tree} could not fingerprint its methods: "
                             f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def changed_modules(old_root: Path) -> dict[str, tuple[str, str]]:
    """{module: (old, new) fingerprint} of every project module present in both trees."""
    out = {}
    for package in cf.PROJECT_PACKAGES:
        for path in sorted((registry.REPO_ROOT / package).rglob("*.py")):
            rel = path.relative_to(registry.REPO_ROOT).with_suffix("")
            name = ".".join(rel.parts).removesuffix(".__init__")
            if not (old_root / path.relative_to(registry.REPO_ROOT)).exists():
                continue
            old = cf.fingerprint_of([name], root=old_root)
            new = cf.fingerprint_of([name])
            if not cf.same_code(old, new):
                out[name] = (old, new)
    return out


def smoke_grid(tree: Path, methods: list[str], out: Path) -> None:
    """The smoke grid of ``methods`` run by the code in ``tree``, results into ``out``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "BENCHMARK_CACHE": str(out / "cache")}
    cmd = [sys.executable, "-m", "benchmark", "--methods", ",".join(methods), "--profile",
           "smoke", "--protocol", "both", "--seeds", "0", "--results-dir", str(out / "results"),
           "--cache-dir", str(out / "cache"), "--no-report", "--no-progress"]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode:
        raise BenchmarkError(f"the smoke grid failed in {tree}: "
                             f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")


def identical_methods(old: Path, new: Path) -> dict[str, bool]:
    """{method: whether every per-user file of it under ``new`` is byte-identical to the one
    under ``old``} (a file missing on either side counts as different)."""
    names = {p.relative_to(root) for root in (old, new) for p in root.glob("*/*/*/*.per_user.csv")}
    same: dict[str, bool] = {}
    for rel in sorted(names):
        a, b = old / rel, new / rel
        equal = a.is_file() and b.is_file() and a.read_bytes() == b.read_bytes()
        same[rel.parts[2]] = same.get(rel.parts[2], True) and equal
    return same


def record(since: str, methods: dict[str, tuple[str, str]], modules: dict[str, tuple[str, str]],
           same: dict[str, bool], path: Path | None = None) -> list[dict]:
    """Append an entry for each method that reproduced, and for the modules if all did (pass
    no modules when the grid did not cover every method: a module may serve one unchecked)."""
    path = path or cf.EQUIVALENCE_FILE
    entries = cf.equivalences(path)
    grid = "smoke profile, its datasets, loo and cold_item, seed 0: per-user files byte-identical"
    new = [{"old": old, "new": fp, "what": f"run of {name}", "since": since, "checked": grid}
           for name, (old, fp) in sorted(methods.items()) if same.get(name)]
    if methods and all(same.get(name) for name in methods):
        new += [{"old": old, "new": fp, "what": f"module {name}", "since": since, "checked": grid}
                for name, (old, fp) in sorted(modules.items())]
    if new:
        atomic_write_text(path, json.dumps({"entries": entries + new}, indent=1) + "\n")
    return new


def certify(since: str, only: list[str] | None = None) -> tuple[list[dict], list[str]]:
    """Run the check against commit ``since`` (for the methods ``only``, default every
    built-in one); the entries written and the methods that differ."""
    commit = _git("rev-parse", since)
    with tempfile.TemporaryDirectory(prefix="equivalence-") as tmp:
        old_tree = Path(tmp) / "old"
        _git("worktree", "add", "--detach", str(old_tree), commit)
        try:
            modules_of = method_modules()
            if only:
                unknown = sorted(set(only) - set(modules_of))
                if unknown:
                    raise BenchmarkError(f"unknown method(s): {', '.join(unknown)}")
                modules_of = {m: modules_of[m] for m in only}
            methods = changed_methods(old_tree, modules_of)
            modules = {} if only else changed_modules(old_tree)
            if not methods:
                return record(commit, {}, modules, {}), []
            smoke_grid(old_tree, sorted(methods), Path(tmp) / "old-run")
            smoke_grid(registry.REPO_ROOT, sorted(methods), Path(tmp) / "new-run")
            same = identical_methods(Path(tmp) / "old-run" / "results",
                                     Path(tmp) / "new-run" / "results")
            if changed_methods(old_tree, modules_of) != methods:
                raise BenchmarkError("the checkout's code changed while the check ran; "
                                     "run it again on a checkout that stays as it is")
        finally:
            _git("worktree", "remove", "--force", str(old_tree))
    return record(commit, methods, modules, same), sorted(m for m in methods if not same.get(m))
