"""The cache knows the code: a run, a checkpoint or an artefact made by other code is never
served as this code's; a documentation edit, or a refactor recorded as equivalent, keeps them.
A rerun that reproduces a result leaves its file byte-identical, and no file names the machine.
"""

import dataclasses
import json
import re
from pathlib import Path

from benchmark import code_fingerprint as cf
from benchmark import runner
from benchmark.cli import main
from benchmark.registry import REPO_ROOT

ADAPTER = '''\
"""A user's method: items scored by their training count{sign_doc}."""
from dataclasses import dataclass

import torch

from benchmark import register
from benchmark.adapter import AdapterBase


@register("counts")
class Counts(AdapterBase):
    @dataclass
    class Config:
        pass

    def fit(self, train, validate, ctx):
        self.counts = torch.as_tensor(train.item_counts, dtype=torch.float32)
        ctx.report_stop("no_training")

    def score(self, users):
        return {sign}self.counts.expand(len(users), -1)
'''


def _adapter(folder: Path, sign: str = "", doc: str = "") -> Path:
    path = folder / "counts_method.py"
    path.write_text(ADAPTER.format(sign=sign, sign_doc=doc))
    return path


def _run(module: Path, dataset: Path, out: Path, cache: Path, methods: str, capsys) -> dict:
    """One CLI invocation on the smoke profile; {method: "computed" | "reused ..."}."""
    code = main(["--adapter-module", str(module), "--methods", methods, "--dataset", str(dataset),
                 "--protocol", "loo", "--profile", "smoke", "--results-dir", str(out),
                 "--cache-dir", str(cache), "--no-report", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    found = {m: re.search(rf"^{m} .*\((computed|reused from the cache)\)  took ", printed, re.M)
             for m in methods.split(",")}
    return {m: match and match.group(1) for m, match in found.items()}


def _ranks(out: Path, method: str) -> list[str]:
    csv = out / "tiny" / "loo" / method / "seed0.per_user.csv"
    return [line.split(",")[2] for line in csv.read_text().splitlines()[1:]]


def test_an_edited_adapter_is_rerun_and_nothing_else(tmp_path, tiny_atomic, capsys):
    """Negating the scores of a user adapter (one line) gives new ranks on the same cache; the
    other method of the invocation is copied from the cache."""
    module = _adapter(tmp_path)
    out, cache = tmp_path / "results", tmp_path / "cache"
    first = _run(module, tiny_atomic, out, cache, "counts,popularity", capsys)
    before = _ranks(out, "counts")
    _adapter(tmp_path, sign="-")
    second = _run(module, tiny_atomic, out, cache, "counts,popularity", capsys)
    assert _ranks(out, "counts") != before, "the old code's ranks were served"
    assert first == {"counts": "computed", "popularity": "computed"}
    assert second == {"counts": "computed", "popularity": "reused from the cache"}


def test_a_docstring_edit_reuses_the_finished_run(tmp_path, tiny_atomic, capsys):
    module = _adapter(tmp_path)
    out, cache = tmp_path / "results", tmp_path / "cache"
    _run(module, tiny_atomic, out, cache, "counts", capsys)
    _adapter(tmp_path, doc=", most popular first")  # the docstring only
    assert _run(module, tiny_atomic, out, cache, "counts", capsys) == {
        "counts": "reused from the cache"}


def test_an_equivalence_entry_keeps_runs_through_a_refactor(tmp_path, tiny_atomic, capsys,
                                                            monkeypatch):
    monkeypatch.setattr(cf, "EQUIVALENCE_FILE", tmp_path / "code-equivalence.json")
    module = _adapter(tmp_path)
    out, cache = tmp_path / "results", tmp_path / "cache"
    _run(module, tiny_atomic, out, cache, "counts", capsys)
    old = json.loads((out / "tiny/loo/counts/seed0.json").read_text())["code"]["fingerprint"]
    # The same scores, written another way: a new fingerprint.
    module.write_text(module.read_text().replace("self.counts.expand(len(users), -1)",
                                                 "self.counts.repeat(len(users), 1)"))
    new = cf.method_fingerprint("external_adapter_counts_method")
    assert new != old
    cf.EQUIVALENCE_FILE.write_text(json.dumps({"entries": [{"old": old, "new": new}]}))
    assert _run(module, tiny_atomic, out, cache, "counts", capsys) == {
        "counts": "reused from the cache"}
    assert cf.same_code(old, new) and cf.canonical(new) == old
    cf.EQUIVALENCE_FILE.write_text(json.dumps({"entries": []}))
    assert _run(module, tiny_atomic, out, cache, "counts", capsys) == {"counts": "computed"}


def test_the_fingerprint_ignores_docstrings_comments_and_layout():
    a = 'def f(x):\n    """Doc."""\n    # a comment\n    return x + 1\n'
    b = "def f(x):\n\n    return (x\n            + 1)\n"
    c = "def f(x):\n    return x + 2\n"
    assert cf.normalised_tree(a) == cf.normalised_tree(b) != cf.normalised_tree(c)


def _with(path: str, line: str = "_EDITED = 1"):
    """A reader of the checkout in which one file has one more line of code."""
    target = REPO_ROOT / path

    def read(p: Path):
        text = cf._read_file(p)
        return f"{text}\n{line}\n" if p == target and text else text

    return read


def test_an_edit_of_the_sasrec_backbone_changes_exactly_the_runs_that_execute_it():
    """Today's VERSION constant was bumped by hand, and a finished run was copied regardless."""
    edit = _with("benchmark/models/sasrec.py")
    methods = {"sasrec_id": "adapters.sasrec_id", "ra_rec": "adapters.ra_rec",
               "said": "adapters.said", "popularity": "baselines.popularity",
               "item_knn": "baselines.item_knn"}
    changed = {name for name, module in methods.items()
               if cf.fingerprint_of([module, cf.HARNESS_MODULE], reader=edit)
               != cf.fingerprint_of([module, cf.HARNESS_MODULE])}
    assert changed == {"sasrec_id", "ra_rec", "said"}
    # An edit of the evaluator is an edit of every run.
    edit = _with("benchmark/evaluation.py")
    assert all(cf.fingerprint_of([m, cf.HARNESS_MODULE], reader=edit)
               != cf.fingerprint_of([m, cf.HARNESS_MODULE]) for m in methods.values())


def test_artefact_keys_hold_the_builders_code(tmp_path):
    from benchmark.cache import Cache

    cache, built = Cache(tmp_path), []
    assert cache.get_or_build("x", [1], lambda: built.append(1) or "a") == "a"
    assert cache.get_or_build("x", [1], lambda: built.append(2) or "b") == "a"
    assert cache.get_or_build("x", [1], lambda: built.append(3) or "c", code="other") == "c"
    assert built == [1, 3]


def test_a_rerun_that_reproduces_a_result_leaves_its_files_byte_identical(tmp_path, tiny_atomic):
    """From an empty cache the run is computed again (new timings, memory, maybe another
    machine); since ranks and metrics are the same, the files in place stay as they are."""
    out = tmp_path / "results"

    def rerun(cache: str) -> tuple[Path, str]:
        return runner.run_with_outcome(runner.RunRequest(
            method="item_knn", dataset=str(tiny_atomic), protocol="cold_item", profile="smoke",
            results_dir=out, cache_dir=tmp_path / cache, show_progress=False))

    path, outcome = rerun("cache1")
    assert outcome == "computed"
    first = (path.read_bytes(), path.with_suffix(".per_user.csv").read_bytes())
    path2, outcome = rerun("cache2")
    assert outcome == "computed" and path2 == path
    assert (path.read_bytes(), path.with_suffix(".per_user.csv").read_bytes()) == first


def test_result_files_name_no_folder_of_the_machine(tmp_path, tiny_atomic):
    path = runner.run(runner.RunRequest(
        method="popularity", dataset=str(tiny_atomic), protocol="loo", profile="smoke",
        results_dir=tmp_path / "r", cache_dir=tmp_path / "c", show_progress=False))
    text = path.read_text()
    assert str(tmp_path) not in text and str(REPO_ROOT) not in text
    result = json.loads(text)
    assert result["dataset"]["stats"]["source"] == "tiny.inter"
    assert result["code"]["fingerprint"] == cf.method_fingerprint("baselines.popularity")


def test_committed_results_are_current_and_name_no_machine_folder():
    paths = sorted(REPO_ROOT.glob("results*/*/*/*/seed*.json"))
    assert paths
    old = [p for p in paths if json.loads(p.read_text())["schema_version"] != 3]
    absolute = [p for p in paths if re.search(r'": "(/|[A-Za-z]:\\\\)', p.read_text())]
    assert old == [] and absolute == []


def test_equivalence_entries_only_for_byte_identical_smoke_results(tmp_path):
    from benchmark.equivalence import identical_methods, record

    old, new = tmp_path / "old", tmp_path / "new"
    for root, flipped in ((old, "1"), (new, "2")):
        for method, rank in (("kept", "1"), ("flipped", flipped)):
            f = root / "tiny" / "loo" / method / "seed0.per_user.csv"
            f.parent.mkdir(parents=True)
            f.write_text(f"user_id,target_item_id,rank\nu,i,{rank}\n")
    same = identical_methods(old, new)
    assert same == {"kept": True, "flipped": False}
    path = tmp_path / "eq.json"
    written = record("abc", {"kept": ("o1", "n1"), "flipped": ("o2", "n2")},
                     {"benchmark.x": ("o3", "n3")}, same, path)
    assert [(e["old"], e["new"]) for e in written] == [("o1", "n1")]  # no module entry: one
    assert cf.canonical("n1", cf.equivalences(path)) == "o1"          # method differs
    assert cf.canonical("n2", cf.equivalences(path)) == "n2"


def test_equivalence_holds_along_any_chain_of_entries_also_through_a_branch():
    """b -> c and d -> c were both certified (two older codes against one newer), then c -> e:
    a result made with b is this (e) code's, although following old links back from e
    reaches d and never b."""
    entries = [{"old": "b", "new": "c"}, {"old": "d", "new": "c"}, {"old": "c", "new": "e"},
               {"old": "x", "new": "y"}]
    assert cf.canonical("e", entries) == "d"  # one line back: misses b
    assert cf.same_code("b", "e", entries) and cf.same_code("d", "e", entries)
    assert cf.same_code("e", "b", entries) and cf.same_code("e", "e", [])
    assert not cf.same_code("x", "e", entries) and not cf.same_code(None, "e", entries)


def test_a_rerun_by_equivalent_code_keeps_the_files_code_record(tmp_path, tiny_atomic,
                                                                 monkeypatch):
    monkeypatch.setattr(cf, "EQUIVALENCE_FILE", tmp_path / "code-equivalence.json")
    out = tmp_path / "results"
    request = runner.RunRequest(method="popularity", dataset=str(tiny_atomic), protocol="loo",
                                profile="smoke", results_dir=out, show_progress=False)
    path = runner.run(dataclasses.replace(request, cache_dir=tmp_path / "c1"))
    committed = json.loads(path.read_text())
    committed["code"]["fingerprint"] = "0123456789abcdef"  # made by older code
    path.write_text(json.dumps(committed, indent=1))
    before = path.read_bytes()
    runner.run(dataclasses.replace(request, cache_dir=tmp_path / "c2"))
    assert json.loads(path.read_text())["code"]["fingerprint"] != "0123456789abcdef"
    path.write_bytes(before)
    cf.EQUIVALENCE_FILE.write_text(json.dumps({"entries": [
        {"old": "0123456789abcdef", "new": cf.method_fingerprint("baselines.popularity")}]}))
    runner.run(dataclasses.replace(request, cache_dir=tmp_path / "c3"))
    assert path.read_bytes() == before
