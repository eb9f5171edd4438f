"""Record a calibration run's job times for the plan: ``python tools/plan_calibration.py RUN_DIR``.

RUN_DIR is the results folder of a run of ``python -m benchmark --all`` made on an idle machine
with an empty cache at the profile's threads (the conditions of a user's first run), stopped
whenever enough jobs have finished. Its whole-job seconds go to
``results/timing/plan-calibration.json``: the plan expects those jobs to take as long, and scales
every other recorded time by the median ratio of calibrated to recorded seconds
(``benchmark/plan.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.plan import CALIBRATION, write_calibration
from benchmark.settings import DEFAULT_RESULTS_DIR


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="the calibration run's results folder")
    parser.add_argument("--output", type=Path, default=Path(DEFAULT_RESULTS_DIR) / CALIBRATION)
    parser.add_argument("--note", default="", help="how the run was made (machine, load)")
    args = parser.parse_args(argv)
    try:
        data = write_calibration(args.run_dir, args.output, args.note)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(data['jobs'])} jobs ({data['hardware']}) -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
