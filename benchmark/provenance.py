"""Where and with what a run was made: package versions, git commit, hardware, peak memory."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
from importlib import metadata
from typing import Any

from benchmark import registry

PACKAGES = ("torch", "numpy", "pandas", "scipy", "transformers", "peft", "sentence-transformers",
            "recbole", "vector-quantize-pytorch", "scikit-learn")


def package_versions() -> dict[str, str]:
    """Python's version and those of the installed packages that can change a result."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    """HEAD of the repository, with ``+dirty`` if code changed; None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=registry.REPO_ROOT,
                             capture_output=True, text=True, timeout=5)
        # Dirty = uncommitted changes to anything but the run's own outputs (results/ and
        # REPORT.md change as a multi-method run goes, and say nothing about the code).
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)results", ":(exclude)REPORT.md"],
                               cwd=registry.REPO_ROOT, capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def hardware(device: str) -> dict[str, Any]:
    """CPU, torch threads and the device (with the GPU's name on CUDA)."""
    import torch

    info = {"machine": platform.machine(), "processor": platform.processor() or None,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": device}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    # ru_maxrss is the process's peak so far (KiB on Linux): an upper bound for this run.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def environment(device: str) -> dict[str, Any]:
    """The ``environment`` block of a result JSON."""
    return {"versions": package_versions(), "git_commit": git_commit(),
            "hardware": hardware(device), "platform": platform.platform()}
