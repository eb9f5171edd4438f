"""REPORT's "Explanations" section: how faithful the words a method writes about its picks are.

A method that explains its picks reports ``diagnostics.explanations`` (the SID-LLM:
adapters/sid_llm_explain.py): the model's own explanations and the count-based baseline,
checked the same way on a fixed sample of users, and verbatim examples with the facts each
explanation was given. The section shows every seed's rates and the first seed's examples.
"""

from __future__ import annotations

from tabulate import tabulate

RATES = (("hallucinated_title_rate", "hallucinated title"),
         ("attribute_support", "attribute claims supported"),
         ("history_reference_rate", "names a history item"),
         ("facts_with_history", "facts name a history item (ceiling)"),
         ("connected_history", "named history items connected to the pick"),
         ("claims_per_explanation", "claims per explanation"),
         ("mean_words", "mean words"))


NONE = {"attribute_support": "n/a (no claims)", "connected_history": "n/a (none named)"}


def _cell(key: str, value: float | None) -> str:
    return NONE.get(key, "n/a") if value is None else f"{value:.3f}"


def explanations_section(found: dict) -> list[str]:
    lines: list[str] = []
    for (dataset, protocol), methods in sorted(found.items()):
        for name, runs in sorted(methods.items()):
            measured = [(r.get("seed"), (r.get("diagnostics") or {}).get("explanations"))
                        for r in runs.results]
            measured = [(s, m) for s, m in measured if isinstance(m, dict) and m.get("users")]
            if not measured:
                continue
            rows = []
            for seed, m in measured:
                for who in ("model", "count_based"):
                    rates = m.get(who) or {}
                    label = name if who == "model" else "count-based baseline"
                    rows.append([label, seed, rates.get("n"),
                                 *[_cell(k, rates.get(k)) for k, _ in RATES]])
            lines += [f"### {name} — {dataset} {protocol}", "",
                      tabulate(rows, ["explanations by", "seed", "users",
                                      *[h for _, h in RATES]],
                               tablefmt="pipe", disable_numparse=True), ""]
            seed, first = measured[0]
            for ex in first.get("examples", []):
                lines += [f"- user {ex.get('user')} (seed {seed}). Facts given: "
                          f"{ex.get('facts')}", f"  - {name}: \"{ex.get('explanation')}\"",
                          f"  - count-based: \"{ex.get('baseline')}\""]
            lines.append("")
    if not lines:
        return []
    return ["## Explanations", "",
            "Explanations of each user's top pick, written by the model from the facts in its "
            "prompt (the pick's catalogue values; history items that share a category, genre "
            "or brand with it; history items other users bought together with it in their "
            "training sequences; history items of its semantic-ID family, where the run's "
            "facts had them), for a fixed sample of users (their training sequences as "
            "histories), beside the count-based reason. The targets: at most 5% hallucinated, "
            "at least 90% of claims supported, at least 80% naming a history item; *facts "
            "name a history item* is the share of picks whose facts give one, the most an "
            "explanation that restates its facts can reach (n/a: not recorded by that run). "
            "Automatic checks: a title is named when "
            "a catalogue title or its first six words occur on word boundaries (at least four "
            "characters); *hallucinated*: names a title that is neither in the history nor the "
            "pick; a *claim* is a catalogue label, brand or year (three characters or more) "
            "outside any named title, *supported* when it belongs to the pick or to a history "
            "item the explanation names; an explanation that names nothing has no history "
            "reference; a named history item is *connected* when it shares a category, genre "
            "or brand with the pick or another user bought both (or, where the run's facts had "
            "them, it is of the pick's semantic-ID family).", "", *lines]
