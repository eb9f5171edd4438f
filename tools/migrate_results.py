"""Rewrite committed result JSONs in the current schema (``benchmark.results.upgrade``).

Usage: ``python tools/migrate_results.py [RESULTS_DIR ...]`` (default: results/ and, where it
exists, results-gpu/). Per-user files are not touched; a file already current is left as it is.
A migrated file reads exactly as before through the report (the upgrade is the same code the
report applies on reading), so migrating changes no figure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmark.cache import atomic_write_text
from benchmark.registry import REPO_ROOT
from benchmark.results import SCHEMA_VERSION, upgrade


def migrate(results_dir: Path) -> int:
    """Upgrade every ``seed*.json`` under ``results_dir``; how many were rewritten."""
    count = 0
    for path in sorted(results_dir.glob("*/*/*/seed*.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        if result.get("schema_version") == SCHEMA_VERSION:
            continue
        atomic_write_text(path, json.dumps(upgrade(result), indent=1, sort_keys=False))
        count += 1
    return count


def main(argv: list[str]) -> int:
    dirs = [Path(a) for a in argv] or [d for d in (REPO_ROOT / "results", REPO_ROOT / "results-gpu")
                                       if d.is_dir()]
    for folder in dirs:
        print(f"{folder}: {migrate(folder)} result files rewritten in schema {SCHEMA_VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
