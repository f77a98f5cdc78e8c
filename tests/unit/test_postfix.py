"""The scoring expression language: what expressions compute, and what each malformed one is told."""

from __future__ import annotations

import math
import re

import pytest

from reconciler.api.postfix import (
    CRITERIA,
    DEFAULT_SCORE,
    Expression,
    ExpressionError,
    parse_expression,
)

VALUES = {"time": 2.0, "run": 1.5, "wait": 0.5, "start": 0.25, "cost": 10.0, "coreHours": 8.0,
          "cpus": 4.0, "nodes": 1.0}


@pytest.mark.parametrize(("text", "expected"), [
    ("time", 2.0),
    ("time 0.7 * cost 0.3 * +", 2.0 * 0.7 + 10.0 * 0.3),
    ("run wait +", 2.0),
    ("cost coreHours -", 2.0),
    ("coreHours cpus /", 2.0),
    ("time cost min", 2.0),
    ("time cost max", 10.0),
    ("start 1e-3 +", 0.251),
    ("3", 3.0),
    ("-2 time *", -4.0),
    (".5 nodes +", 1.5),
    ("time run wait + cost * -", 2.0 - 2.0 * 10.0),
    ("  time\t2   *\n", 4.0),
])
def test_an_expression_computes_its_value(text, expected):
    assert parse_expression(text).evaluate(VALUES) == pytest.approx(expected)


def test_operands_keep_their_order():
    assert parse_expression("10 4 -").evaluate({}) == 6
    assert parse_expression("8 2 /").evaluate({}) == 4


def test_names_are_the_criteria_used():
    assert parse_expression("time 0.7 * cost 0.3 * + time min").names == {"time", "cost"}
    assert parse_expression("2 3 +").names == frozenset()


def test_the_normalised_source_reads_back_to_the_same_expression():
    expression = parse_expression("  time   0.70 *\ncost 3.0 * + 1e-3 +")
    assert str(expression) == "time 0.7 * cost 3 * + 0.001 +"
    assert parse_expression(str(expression)) == expression


def test_an_expression_is_a_hashable_value():
    assert parse_expression("time 2 *") == parse_expression("time   2.0 *")
    assert len({parse_expression("time 2 *"), parse_expression("time 2.0 *"), parse_expression("time")}) == 2
    with pytest.raises(AttributeError):
        parse_expression("time").terms = ()


def test_a_division_by_a_zero_value_makes_the_candidate_lose():
    expression = parse_expression("time wait /")
    assert expression.evaluate({**VALUES, "wait": 0.0}) == math.inf
    assert parse_expression("wait wait /").evaluate({**VALUES, "wait": 0.0}) == math.inf


def test_a_result_that_is_no_number_loses():
    assert parse_expression("time wait -").evaluate({"time": math.inf, "wait": math.inf}) == math.inf


def test_a_missing_value_is_named():
    with pytest.raises(KeyError, match=re.escape("criterion 'cost', which has no value (given: run, time)")):
        parse_expression("time cost +").evaluate({"time": 1.0, "run": 1.0})


def test_the_default_score_is_the_predicted_time_to_the_end():
    assert parse_expression(DEFAULT_SCORE).names == {"time"}
    assert set(CRITERIA) == {"time", "run", "wait", "start", "cost", "coreHours", "cpus", "nodes"}


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty expression; write one, e.g. 'time' or 'time 0.7 * cost 0.3 * +'"),
    ("  \n ", "empty expression"),
    ("tim 2 *", "token 1 ('tim'): unknown name; did you mean 'time'? the criteria are time, run, wait, "
                "start, cost, coreHours, cpus, nodes and the operators + - * / min max"),
    ("time price +", "token 2 ('price'): unknown name; the criteria are time"),
    ("time inf +", "token 2 ('inf'): unknown name"),
    ("time nan +", "token 2 ('nan'): unknown name"),
    ("time 2 3 * * *", "token 6 ('*'): needs two operands, has one"),
    ("*", "token 1 ('*'): needs two operands, has none"),
    ("time 0.7 *  cost", "2 values left on the stack; join them with operators"),
    ("time cost run", "3 values left on the stack; join them with operators (+ - * / min max)"),
    ("time 0 /", "token 3 ('/'): divides by a constant zero"),
    ("time 1 1 - /", "token 5 ('/'): divides by a constant zero"),
    ("time 2 0.5 4 * 2 min - /", "token 9 ('/'): divides by a constant zero"),
    ("time 0e5 /", "token 3 ('/'): divides by a constant zero"),
])
def test_a_malformed_expression_is_told_what_and_where(text, message):
    with pytest.raises(ExpressionError, match=re.escape(message)):
        parse_expression(text)


def test_an_expression_error_is_a_value_error():
    # So pydantic validators that call the parser report it as a validation error.
    assert issubclass(ExpressionError, ValueError)


def test_a_divisor_that_depends_on_a_criterion_is_allowed():
    assert parse_expression("time wait 1 - /").evaluate({"time": 1.0, "wait": 2.0}) == 1.0


def test_an_expression_built_by_hand_evaluates_the_same():
    assert Expression(("time", 2.0, "*")).evaluate({"time": 3.0}) == 6.0
