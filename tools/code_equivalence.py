"""Record a behaviour-preserving refactor: ``python tools/code_equivalence.py --since <commit>``.

Runs the smoke grid with the code of ``<commit>`` and with the checkout, and writes a
code-equivalence entry for each method whose per-user files are byte-identical
(``benchmark.equivalence``), so cached runs and committed results stay valid through it.
"""

from __future__ import annotations

import argparse
import sys

from benchmark.equivalence import certify
from benchmark.errors import BenchmarkError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--since", required=True, help="the commit whose code was certified")
    parser.add_argument("--methods", default=None,
                        help="comma-separated methods to check (default: every built-in one)")
    args = parser.parse_args(argv)
    only = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    try:
        written, differ = certify(args.since, only)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for entry in written:
        print(f"equivalent: {entry['what']} {entry['old']} -> {entry['new']}")
    for method in differ:
        print(f"differs: {method} (its runs are recomputed; no entry written)")
    if not written and not differ:
        print("no method's code changed since that commit")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
