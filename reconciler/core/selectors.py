"""Kubernetes label selectors: parsing ``-l`` strings and matching them against labels.

Called by the CLI's ``get workflows`` and ``get tasks``. Pure: no I/O. :func:`parse_selector`
accepts exactly the set-based grammar of Kubernetes (``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``,
``k notin (a,b)``, ``k``, ``!k``, terms joined by commas and ANDed) with its rules on keys and
values, and raises :class:`SelectorError` naming the offending term for anything else, so a typo
never silently selects nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_NAME_RE = re.compile(_NAME)
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_PREFIX_RE = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")

# A key token as the lexer sees it; whether it is a valid key is checked afterwards so the
# error can say what is wrong with it.
_KEY = r"[^\s=!(),]+"
_EXISTS = re.compile(rf"(?P<key>{_KEY})")
_ABSENT = re.compile(rf"!\s*(?P<key>{_KEY})")
_EQUALITY = re.compile(rf"(?P<key>{_KEY})\s*(?P<op>==|!=|=)\s*(?P<value>[^\s=!(),]*)")
_SET = re.compile(rf"(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)")


class SelectorError(ValueError):
    """A selector string that is not valid Kubernetes label-selector syntax."""


class Operator(str, Enum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        match self.operator:
            case Operator.EXISTS:
                return present
            case Operator.DOES_NOT_EXIST:
                return not present
            case Operator.EQUALS | Operator.IN:
                return present and labels[self.key] in self.values
            case Operator.NOT_EQUALS | Operator.NOT_IN:
                # As in Kubernetes: a missing label is "not equal" to anything.
                return not present or labels[self.key] not in self.values


@dataclass(frozen=True)
class Selector:
    """Requirements that must all hold; no requirement selects everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def parse_selector(text: str | None) -> Selector:
    """The selector ``text`` means; ``None`` or blank selects everything."""
    if text is None or not text.strip():
        return Selector()
    return Selector(tuple(_requirement(term.strip()) for term in _terms(text)))


def _terms(text: str) -> list[str]:
    """``text`` split at the commas outside parentheses."""
    terms, depth, start = [], 0, 0
    for position, char in enumerate(text):
        if char == "(":
            depth += 1
            if depth > 1:
                raise SelectorError(f"nested parenthesis at position {position}")
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unmatched ')' at position {position}")
        elif char == "," and depth == 0:
            terms.append(text[start:position])
            start = position + 1
    if depth:
        raise SelectorError("unclosed '('")
    terms.append(text[start:])
    return terms


def _requirement(term: str) -> Requirement:
    if not term:
        raise SelectorError("empty term (a stray comma)")
    if found := _ABSENT.fullmatch(term):
        return Requirement(_key(found["key"], term), Operator.DOES_NOT_EXIST)
    if found := _SET.fullmatch(term):
        values = [v.strip() for v in found["values"].split(",")]
        if values == [""]:
            raise SelectorError(f"{term!r}: the values of '{found['op']}' can't be empty")
        operator = Operator.IN if found["op"] == "in" else Operator.NOT_IN
        return Requirement(_key(found["key"], term), operator, frozenset(_value(v, term) for v in values))
    if found := _EQUALITY.fullmatch(term):
        operator = Operator.NOT_EQUALS if found["op"] == "!=" else Operator.EQUALS
        return Requirement(_key(found["key"], term), operator, frozenset({_value(found["value"], term)}))
    if found := _EXISTS.fullmatch(term):
        return Requirement(_key(found["key"], term), Operator.EXISTS)
    raise SelectorError(f"{term!r}: expected key, !key, key=value, key==value, key!=value, "
                        "key in (values) or key notin (values)")


def _key(key: str, term: str) -> str:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _PREFIX_RE.fullmatch(prefix)):
        raise SelectorError(f"{term!r}: key prefix {prefix!r} must be a DNS subdomain of at most 253 characters")
    if not _NAME_RE.fullmatch(name):
        raise SelectorError(f"{term!r}: key name {name!r} must be at most 63 characters of [A-Za-z0-9_.-], "
                            "starting and ending with a letter or digit")
    return key


def _value(value: str, term: str) -> str:
    if value and not _NAME_RE.fullmatch(value):
        raise SelectorError(f"{term!r}: value {value!r} must be empty or at most 63 characters of "
                            "[A-Za-z0-9_.-], starting and ending with a letter or digit")
    return value
