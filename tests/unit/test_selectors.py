"""Kubernetes label selectors: the grammar, its key and value rules, and matching."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.selectors import Operator, Requirement, Selector, SelectorError, parse_selector

LABELS = {"team": "physics", "tier": "gpu", "example.com/owner": "ana"}


@pytest.mark.parametrize(("selector", "expected"), [
    ("", True),
    ("team=physics", True),
    ("team==physics", True),
    ("team=chemistry", False),
    ("team!=chemistry", True),
    ("team!=physics", False),
    ("missing!=x", True),  # an absent label differs from every value
    ("team in (chemistry, physics)", True),
    ("team in (chemistry)", False),
    ("team notin (chemistry,biology)", True),
    ("team notin (physics)", False),
    ("missing notin (x)", True),
    ("missing in (x)", False),
    ("team", True),
    ("missing", False),
    ("!missing", True),
    ("!team", False),
    ("example.com/owner=ana", True),
    ("team=physics,tier=gpu", True),
    ("team=physics, tier=cpu", False),
    ("team in (physics,chemistry),!missing,tier", True),
    (" team = physics ", True),
])
def test_selector_matches_as_kubernetes_does(selector: str, expected: bool):
    assert parse_selector(selector).matches(LABELS) is expected


@pytest.mark.parametrize(("selector", "names"), [
    ("team!", "team!"),
    ("team=a=b", "team=a=b"),
    ("team in ()", "team in ()"),
    ("team in (a", "unclosed"),
    ("team in a)", "unmatched"),
    ("team=physics,", "empty term"),
    (",team", "empty term"),
    ("-team=a", "-team"),
    ("team=-a", "-a"),
    ("team=" + "a" * 64, "a" * 64),
    ("k" * 64, "k" * 64),
    ("Bad_Prefix/name=a", "Bad_Prefix"),
    ("/name=a", "prefix"),
    ("a/b/c=d", "a/b"),
    ("team inn (a)", "team inn (a)"),
    ("team in ((a))", "nested"),
])
def test_malformed_selector_names_the_bad_term(selector: str, names: str):
    with pytest.raises(SelectorError, match=re.escape(names)):
        parse_selector(selector)


def test_parse_gives_requirements():
    assert parse_selector("a in (x,y),!b,c!=z") == Selector((
        Requirement("a", Operator.IN, frozenset({"x", "y"})),
        Requirement("b", Operator.DOES_NOT_EXIST),
        Requirement("c", Operator.NOT_EQUALS, frozenset({"z"})),
    ))


def test_empty_value_is_allowed():
    assert parse_selector("team=").matches({"team": ""})
    assert not parse_selector("team=").matches({"team": "x"})


_names = st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?", fullmatch=True)
_labels = st.dictionaries(st.sampled_from(["a", "b", "c", "x.io/d"]), st.sampled_from(["1", "2", "v-3"]), max_size=4)
_values = st.lists(st.sampled_from(["1", "2", "v-3", "9"]), min_size=1, max_size=3)


@given(labels=_labels, key=st.sampled_from(["a", "b", "c", "x.io/d"]), values=_values)
def test_negated_operators_are_exact_complements(labels: dict[str, str], key: str, values: list[str]):
    joined = ",".join(values)
    assert parse_selector(f"{key}!={values[0]}").matches(labels) != parse_selector(f"{key}={values[0]}").matches(labels)
    assert parse_selector(f"{key} notin ({joined})").matches(labels) != parse_selector(
        f"{key} in ({joined})").matches(labels)
    assert parse_selector(f"!{key}").matches(labels) != parse_selector(key).matches(labels)
    assert parse_selector(f"{key} in ({joined})").matches(labels) == (labels.get(key) in values)


@given(labels=_labels, first=_names, second=_names, value=_names)
def test_comma_is_and(labels: dict[str, str], first: str, second: str, value: str):
    left, right = f"{first}={value}", f"!{second}"
    both = parse_selector(f"{left},{right}").matches(labels)
    assert both == (parse_selector(left).matches(labels) and parse_selector(right).matches(labels))


@given(labels=_labels)
def test_a_label_set_selects_itself(labels: dict[str, str]):
    assert parse_selector(",".join(f"{k}={v}" for k, v in labels.items())).matches(labels)
