"""What changed since a dataset's superseded results: the earlier verdicts, named beside today's.

When a dataset's results are re-run on another population (Amazon: from a 2,000-user sample,
four of five users forced in for a cold target, to all 8,317 users), the verdicts it used to
publish are archived once by ``tools/archive_verdicts.py`` in
``results/<dataset>/earlier-verdicts.json``. The report then adds one sentence per protocol to
that dataset's Findings (and so to README's Verdicts): each `main` method whose verdict against
the reference changed, as "earlier verdict (Δ; today's rule on that population) → today's
verdict (Δ)", the methods whose verdict stands, those not yet re-run, and `popularity`'s figure
then and now. The sentence is computed from the archive and today's comparisons; nothing in it
is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.comparisons import WORDS, verdict

FILE_NAME = "earlier-verdicts.json"
PHRASE = {"better": "better than", "no difference": "not significantly different from",
          "worse": "worse than"}


def load(results_dir: Path, dataset: str) -> dict | None:
    """The archive of ``dataset`` under ``results_dir``, or None when it has none."""
    path = Path(results_dir) / dataset / FILE_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def _code(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names) if names else "none"


def sentences(archive: dict | None, protocol: str, tests: dict[str, dict],
              popularity: float | None) -> list[str]:
    """The Findings sentences naming old and new verdicts for one protocol ([] without an
    archive for it). ``tests``: today's `main`-family comparisons with the reference."""
    entry = (archive or {}).get("protocols", {}).get(protocol)
    if not entry:
        return []
    said, redone = entry["published"], entry["one_rule"]["verdicts"]
    changed, stands, missing = [], [], []
    for name, old in said["verdicts"].items():
        if name not in tests:
            missing.append(name)
            continue
        new = tests[name]
        word = WORDS[verdict(new)]
        again = redone.get(name)
        by_rule = (f"; {again['verdict']} by today's rule on that population"
                   if again and again["verdict"] != old["verdict"] else "")
        if word == old["verdict"]:
            stands.append(f"`{name}` ({word}{by_rule})")
            continue
        changed.append(f"`{name}` {old['verdict']} (Δ {old['delta']:+.4f}{by_rule}) → "
                       f"{word} (Δ {new['mean_diff']:+.4f})")
    out = [f"- Since the earlier evaluation ({archive['population']}; {archive['source']}), "
           f"verdicts against `{said.get('reference', 'the reference')}` changed for: "
           f"{'; '.join(changed) if changed else 'none'}. Unchanged: "
           f"{', '.join(stands) if stands else 'none'}. Not yet re-run on today's users: "
           f"{_code(missing)}."]
    extra = []
    if said.get("popularity") is not None and popularity is not None:
        extra.append(f"`popularity` scored {said['popularity']:.4f} then and {popularity:.4f} "
                     "now")
    cold = said.get("cold_targets")
    if cold:
        extra.append(f"the cold targets' verdict was `{cold['method']}` {PHRASE[cold['verdict']]} "
                     f"`{cold['against']}` (Δ {cold['delta']:+.4f}), a reference that scores 0 "
                     "on them by construction; they are now compared with `random`")
    if extra:
        out.append(f"- Then and now: {'; '.join(extra)}.")
    return out
