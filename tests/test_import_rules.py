"""The one-way dependency rule (docs/layout.md) is checked by lint-imports, and it bites.

Each case copies the three packages and pyproject.toml, plants one forbidden import, and runs
`lint-imports` on the copy: the contract that the import breaks must be reported.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_CONTRACT = "Protocol does not import models, adapters or baselines"
MODELS_CONTRACT = "Models import only adapter, cache, config, data, errors"
LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")


def lint_copy(tmp_path: Path, plant: tuple[str, str] | None = None) -> subprocess.CompletedProcess:
    for package in ("benchmark", "adapters", "baselines"):
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    if plant:
        path, line = plant
        with open(tmp_path / path, "a") as f:
            f.write(f"\n{line}  # noqa\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "200"}
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_tree_as_it_is_keeps_both_contracts(tmp_path):
    out = lint_copy(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{PROTOCOL_CONTRACT} KEPT" in out.stdout
    assert f"{MODELS_CONTRACT} KEPT" in out.stdout


@pytest.mark.parametrize("plant, broken", [
    (("benchmark/evaluation.py", "from benchmark.models import sasrec"), PROTOCOL_CONTRACT),
    (("benchmark/__init__.py", "import adapters.sasrec_id"), PROTOCOL_CONTRACT),
    (("benchmark/models/sasrec.py", "from benchmark import runner"), MODELS_CONTRACT),
    (("benchmark/models/llm.py", "import baselines.popularity"), MODELS_CONTRACT),
])
def test_a_planted_violation_breaks_its_contract(tmp_path, plant, broken):
    out = lint_copy(tmp_path, plant)
    assert out.returncode != 0
    assert f"{broken} BROKEN" in out.stdout, out.stdout + out.stderr
