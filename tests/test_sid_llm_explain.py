"""The SID-LLM's explanations: the facts, the training target, and the faithfulness checks."""

from __future__ import annotations

import numpy as np
import pytest

from adapters.sid_llm_explain import (
    Checker,
    CoPurchases,
    TitleCopy,
    facts,
    facts_text,
    faithfulness,
    reason,
    short_title,
)
from benchmark.data import ItemCatalog


def _shop() -> ItemCatalog:
    items = [
        ("Stanley Sharpshooter Staples Steel Heavy (1000 Count)", "Stanley",
         ("Fasteners", "Staples")),
        ("Stanley Stainless Narrow Crown Staple", "Stanley", ("Fasteners", "Staples")),
        ("Scotch Foil Tape", "3M", ("Tapes", "Foil Tapes")),
        ("Gorilla Glue", "Gorilla", ("Adhesives",)),
        ("Duct Tape Silver", "3M", ("Tapes", "Duct Tapes")),
        ("Pen", "Bic", ("Office",)),  # a title shorter than MIN_BARE_TITLE is never "named"
    ]
    return ItemCatalog([str(i) for i in range(len(items))],
                       [{"title": t, "brand": b, "categories": ", ".join(c)} for t, b, c in items],
                       [c for _, _, c in items])


def test_facts_link_the_most_recent_history_items_that_share_a_label_or_the_brand():
    cat = _shop()
    f = facts(cat, np.array([0, 3, 2]), 4)  # pick: Duct Tape (3M; Tapes)
    assert f.values == {"labels": ("Tapes", "Duct Tapes"), "brand": ("3M",)}
    assert f.links == [(2, ["Tapes", "3M"])]  # Gorilla Glue and the staples share nothing
    assert "Related history: Scotch Foil Tape (shares Tapes, 3M)" in facts_text(cat, f)
    assert reason(cat, f) == "Because you liked Scotch Foil Tape (Tapes, 3M), I picked Duct Tape Silver."
    lonely = facts(cat, np.array([3]), 5)
    assert lonely.links == [] and "nothing in your history is connected" in reason(cat, lonely)


def test_links_name_the_most_specific_shared_labels_and_look_through_the_whole_history():
    cat = _shop()
    # the staples share both labels and the brand: the brand and the most specific label
    assert facts(cat, np.array([0]), 1).links == [(0, ["Staples", "Stanley"])]
    # the linked tape is the oldest of seven history items: the whole history is searched
    assert facts(cat, np.array([2, 3, 3, 3, 3, 3, 3]), 4).links == [(2, ["Tapes", "3M"])]


def test_items_bought_together_by_other_users_complete_the_links():
    cat = _shop()
    # user 0 bought the glue and the pen; user 1 the glue, the pen and the duct tape
    co = CoPurchases([np.array([3, 5]), np.array([3, 5, 4])], n_items=6)
    assert co.count(3, 5) == 2 and co.count(3, 4) == 1 and co.count(0, 4) == 0
    f = facts(cat, np.array([0, 3]), 5, co=co)  # pick: the pen, which shares nothing
    assert f.links == [] and f.bought == [(3, 2)]
    assert "Gorilla Glue (bought with it by 2 other customers)" in facts_text(cat, f)
    assert reason(cat, f) == "Because customers who bought Gorilla Glue also bought it, I picked Pen."
    # in a training example the user bought both: one other buyer fewer
    assert facts(cat, np.array([3]), 4, co=co, own=True).bought == []
    # a catalogue link comes first; bought-together ones fill the remaining places
    both = facts(cat, np.array([3, 2]), 4, co=co)
    assert both.links == [(2, ["Tapes", "3M"])] and both.bought == [(3, 1)]
    check = Checker(cat, co).check(reason(cat, both), np.array([3, 2]), [4])
    assert check["named_history"] == 2 and check["connected_history"] == 2


def test_items_of_the_picks_semantic_id_family_fill_the_last_places():
    cat = _shop()
    families = np.array([7, 7, 1, 2, 1, 2])  # first SID code: the glue and the pen share one
    f = facts(cat, np.array([0, 3]), 5, families=families)  # the pen shares no label, no brand
    assert f.links == [] and f.bought == [] and f.family == [3]
    assert "Gorilla Glue (same semantic-ID family)" in facts_text(cat, f)
    text = reason(cat, f)
    assert text == "Because you liked Gorilla Glue, described much like it, I picked Pen."
    check = Checker(cat, families=families).check(text, np.array([0, 3]), [5])
    assert check["history_reference"] and check["connected_history"] == 1
    # without families the glue is not connected to the pen
    assert Checker(cat).check(text, np.array([0, 3]), [5])["connected_history"] == 0
    # catalogue links and bought-together items come first; families fill what is left
    co = CoPurchases([np.array([3, 4])], n_items=6)  # another user bought the glue and tape
    full = facts(cat, np.array([2, 3, 0]), 4, co=co, families=np.array([3, 1, 2, 3, 3, 0]))
    assert full.links == [(2, ["Tapes", "3M"])] and full.bought == [(3, 1)]
    assert full.family == []  # the staples (family 3) would be a third: two places at most
    one = facts(cat, np.array([0, 3, 2]), 4, families=np.array([3, 1, 2, 1, 3, 0]))
    assert one.links == [(2, ["Tapes", "3M"])] and one.family == [0]


def test_short_titles_never_leave_a_parenthesis_open():
    assert short_title(_shop(), 0) == "Stanley Sharpshooter Staples Steel Heavy"


def test_a_restated_reason_is_faithful_by_every_check():
    cat = _shop()
    history, pick = np.array([0, 3, 2]), 4
    out = Checker(cat).check(reason(cat, facts(cat, history, pick)), history, [pick])
    # "Tapes" is a supported claim; "3M" is shorter than MIN_CLAIM and not looked for
    assert out == {"hallucinated_title": False, "claims": 1, "supported_claims": 1,
                   "history_reference": True, "words": 13, "named_history": 1,
                   "connected_history": 1}


@pytest.mark.parametrize("text, expected", [
    # names an item that is neither in the history nor a pick
    ("You will like it as you liked Gorilla Glue.", {"hallucinated_title": True,
                                                     "history_reference": False}),
    # names nothing: no history reference, and an unsupported claim (Office is the pen's)
    ("It is great for the Office.", {"hallucinated_title": False, "claims": 1,
                                     "supported_claims": 0, "history_reference": False}),
    # a brand inside a named title is not a claim; the short title counts as naming the item
    ("Like Stanley Sharpshooter Staples Steel Heavy, it is Tapes.",
     {"history_reference": True, "claims": 1, "supported_claims": 1}),
    # "pen" is shorter than MIN_BARE_TITLE: a word, not a title
    ("A pen would do.", {"hallucinated_title": False, "history_reference": False}),
])
def test_the_checks_find_titles_and_claims_on_word_boundaries(text, expected):
    out = Checker(_shop()).check(text, np.array([0, 1]), [4])
    assert {k: out[k] for k in expected} == expected


def test_faithfulness_rates_and_a_text_without_claims():
    checks = [{"hallucinated_title": True, "claims": 2, "supported_claims": 1,
               "history_reference": False, "words": 10},
              {"hallucinated_title": False, "claims": 0, "supported_claims": 0,
               "history_reference": True, "words": 20}]
    checks[1] |= {"named_history": 2, "connected_history": 1}
    rates = faithfulness(checks)
    assert rates["hallucinated_title_rate"] == 0.5 and rates["attribute_support"] == 0.5
    assert rates["connected_history"] == 0.5
    assert rates["history_reference_rate"] == 0.5 and rates["mean_words"] == 15
    no_claims = faithfulness(checks[1:])
    assert no_claims["attribute_support"] is None  # not "100% supported"
    assert faithfulness([]) == {"n": 0}


def _copy_after(copy: TitleCopy, tok, text: str, pick_last: bool) -> tuple[str, bool]:
    """Decode as a model would that always takes the first (or last) allowed token: the text
    after ``text``, and whether the hook let go once a title was complete."""
    tokens = tok.encode(text, add_special_tokens=False)
    start = len(tokens)
    while (only := copy(0, tokens)) is not None:
        tokens.append(only[-1] if pick_last else only[0])
    return tok.decode(tokens[start:]), copy(0, tokens) is None


@pytest.mark.parametrize("pick_last", [False, True])
def test_title_copy_spells_a_title_of_the_facts_after_each_cue(pick_last):
    from benchmark.models.llm import tiny_random_lm

    _, tok = tiny_random_lm()
    cat = _shop()
    f = facts(cat, np.array([0, 2]), 1)  # pick: the stainless staple; history: both Stanleys
    assert [h for h, _ in f.links] == [0]
    f.family = [2]  # a second history title: the trie branches after its first token
    titles = {short_title(cat, 0), short_title(cat, 2)}
    copy = TitleCopy(tok, cat, [f])
    after, released = _copy_after(copy, tok, "Because you liked", pick_last)
    assert after.startswith(" ") and after[1:] in titles and released
    after, _ = _copy_after(copy, tok, "Because you liked X and customers who bought ", pick_last)
    assert after in titles  # a cue that ends in a space: the title without one
    after, _ = _copy_after(copy, tok, "Because you liked it, I picked", pick_last)
    assert after == " " + short_title(cat, 1)
    # no cue at the end, or a case that does not match: the step stays free
    assert copy(0, tok.encode("Because you liked it", add_special_tokens=False)) is None
    assert copy(0, tok.encode("because You Liked", add_special_tokens=False)) is None


def test_title_copy_leaves_a_slot_free_when_the_facts_give_no_title():
    from benchmark.models.llm import tiny_random_lm

    _, tok = tiny_random_lm()
    cat = _shop()
    lonely = facts(cat, np.array([3]), 5)  # the pen shares nothing with the glue
    copy = TitleCopy(tok, cat, [lonely])
    assert copy(0, tok.encode("Because you liked", add_special_tokens=False)) is None
    assert copy(0, tok.encode("I picked", add_special_tokens=False)) is not None
