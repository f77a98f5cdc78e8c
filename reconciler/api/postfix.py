"""The scoring expression language: postfix arithmetic over the Optimizer's criteria.

Written by people in a Workflow's or SlurmCluster's ``scoring.expression`` (e.g.
``time 0.7 * cost 0.3 * +``); part of the API because the model validates it when the manifest
loads (``parse_expression`` raises ``ExpressionError`` saying which token is wrong and why, which
the loader reports with file and line) and evaluated by the Optimizer
(``reconciler.core.optimizer``) once per candidate
configuration. Pure. A parsed expression is well formed: every operator finds its two operands,
exactly one value is left at the end, every name is a criterion, and no divisor is a constant zero;
so evaluation can only fail on a missing criterion value.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# The criteria an expression may name, each with what it means (shown in errors and docs).
# Times are in hours so that weights like "time 0.7 *" read naturally next to "cost".
CRITERIA: Mapping[str, str] = {
    "time": "predicted hours from now to the end: expected wait + run time",
    "run": "predicted run hours",
    "wait": "expected hours in the queue (the median of recent runs there)",
    "start": "hours until the expected start as Slurm estimates it (sbatch --test-only)",
    "cost": "predicted billed core-hours x the partition's costPerCoreHour",
    "coreHours": "predicted billed core-hours",
    "cpus": "CPUs per task",
    "nodes": "nodes",
}

DEFAULT_SCORE = "time"

_OPERATORS: Mapping[str, Callable[[float, float], float]] = {
    "+": lambda x, y: x + y,
    "-": lambda x, y: x - y,
    "*": lambda x, y: x * y,
    "/": lambda x, y: x / y if y != 0 else math.inf,
    "min": min,
    "max": max,
}
OPERATORS = tuple(_OPERATORS)

# No "inf" or "nan": float() would take them, but they are no weight a person means.
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_EXAMPLE = "e.g. 'time' or 'time 0.7 * cost 0.3 * +'"


class ExpressionError(ValueError):
    """A scoring expression that is not well formed; the message says where and what to do."""


@dataclass(frozen=True)
class Expression:
    """A well-formed postfix expression: numbers (floats) and names or operators (strings)."""

    terms: tuple[float | str, ...]

    @property
    def names(self) -> frozenset[str]:
        """The criteria the expression uses (so the caller computes only those)."""
        return frozenset(term for term in self.terms if isinstance(term, str) and term in CRITERIA)

    def evaluate(self, values: Mapping[str, float]) -> float:
        """The score for one candidate. A division by zero gives +inf (and so does a result that
        is not a number, e.g. inf - inf): such a candidate loses rather than stopping the choice."""
        stack: list[float] = []
        for term in self.terms:
            if isinstance(term, float):
                stack.append(term)
            elif term in _OPERATORS:
                right = stack.pop()
                stack.append(_OPERATORS[term](stack.pop(), right))
            else:
                stack.append(_value(values, term))
        result = stack[0]
        return math.inf if math.isnan(result) else result

    def __str__(self) -> str:
        return " ".join(_format(term) for term in self.terms)


def _value(values: Mapping[str, float], name: str) -> float:
    try:
        return float(values[name])
    except KeyError:
        raise KeyError(f"the score needs criterion {name!r}, which has no value "
                       f"(given: {', '.join(sorted(values)) or 'none'})") from None


def _format(term: float | str) -> str:
    if isinstance(term, str):
        return term
    return str(int(term)) if term.is_integer() and abs(term) < 1e15 else repr(term)


def parse_expression(text: str) -> Expression:
    """Parse and validate; raises ``ExpressionError`` naming the token (counted from 1) at fault."""
    tokens = text.split()
    if not tokens:
        raise ExpressionError(f"empty expression; write one, {_EXAMPLE}")
    # What is known of each stack slot before any candidate is seen: its value when it is made
    # of numbers only (so a constant zero divisor is caught now), else None.
    stack: list[float | None] = []
    terms: list[float | str] = []
    for position, token in enumerate(tokens, start=1):
        term = _term(position, token)
        if isinstance(term, float):
            stack.append(term)
        elif term in _OPERATORS:
            _apply_statically(stack, position, term)
        else:
            stack.append(None)
        terms.append(term)
    if len(stack) > 1:
        raise ExpressionError(f"{len(stack)} values left on the stack; join them with operators "
                              f"({' '.join(OPERATORS)}), {_EXAMPLE}")
    return Expression(tuple(terms))


def _term(position: int, token: str) -> float | str:
    if _NUMBER.match(token):
        return float(token)
    if token in _OPERATORS or token in CRITERIA:
        return token
    close = difflib.get_close_matches(token, [*CRITERIA, *OPERATORS], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ExpressionError(f"token {position} ({token!r}): unknown name; {hint}"
                          f"the criteria are {', '.join(CRITERIA)} and the operators {' '.join(OPERATORS)}")


def _apply_statically(stack: list[float | None], position: int, operator: str) -> None:
    if len(stack) < 2:
        has = "one" if stack else "none"
        raise ExpressionError(f"token {position} ({operator!r}): needs two operands, has {has}")
    right = stack.pop()
    left = stack.pop()
    if operator == "/" and right == 0:
        raise ExpressionError(f"token {position} ('/'): divides by a constant zero")
    if left is None or right is None:
        stack.append(None)
    else:
        stack.append(_OPERATORS[operator](left, right))
