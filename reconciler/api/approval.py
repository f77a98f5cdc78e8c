"""What an approval task asks a person for: its declared parameters, and the references to their
values that later tasks make (``{{ approvals.TASK.NAME }}``).

Part of the Workflow model (:mod:`reconciler.api.workflow` validates with it); the values
themselves are checked, rendered and substituted by :mod:`reconciler.core.approval_values`.
Guarantees: a parameter's name is usable as part of an environment variable's name, its default
fits its type, and every reference found in a task's script, command or environment names a
parameter of an approval task that comes before that task in the DAG.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Annotated

from pydantic import Field, model_validator

from .meta import FrozenModel

ApprovalValue = str | int | float | bool
PARAMETER_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# The task part is as greedy as a label allows, so the parameter is always the last segment.
REFERENCE = re.compile(r"\{\{\s*approvals\.([a-z0-9][a-z0-9.-]*)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class ParameterType(str, Enum):
    STRING = "string"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"


def type_problem(kind: ParameterType, value: object) -> str | None:
    """Why ``value`` (as YAML or JSON gives it) is not a ``kind``; None when it is one."""
    if kind is ParameterType.BOOLEAN:
        return None if isinstance(value, bool) else "expects true or false"
    if isinstance(value, bool):
        return f"expects a {kind.value}, not a boolean"
    if kind is ParameterType.INTEGER:
        integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        return None if integral else "expects an integer"
    if kind is ParameterType.NUMBER:
        return None if isinstance(value, int | float) else "expects a number"
    return None if isinstance(value, str) else "expects a string (quote it)"


class ApprovalParameter(FrozenModel):
    """A value the person who approves supplies, for the tasks after the approval."""

    name: Annotated[str, Field(pattern=PARAMETER_NAME, max_length=64, description=(
        "used as {{ approvals.TASK.NAME }} and in the variable APPROVAL_TASK_NAME"))]
    type: ParameterType = ParameterType.STRING
    default: ApprovalValue | None = Field(default=None, description="the value when approving gives none")
    description: Annotated[str, Field(max_length=1024)] | None = None

    @model_validator(mode="after")
    def _default_fits(self) -> ApprovalParameter:
        if self.default is not None and (problem := type_problem(self.type, self.default)) is not None:
            raise ValueError(f"parameter {self.name}: default {self.default!r}: {problem}")
        return self

    @property
    def required(self) -> bool:
        return self.default is None


def references(texts: Iterable[str]) -> list[tuple[str, str]]:
    """Every ``(task, parameter)`` that ``{{ approvals.TASK.PARAMETER }}`` names in ``texts``."""
    return [(match.group(1), match.group(2)) for text in texts for match in REFERENCE.finditer(text)]


def reference_problems(name: str, texts: Sequence[str], *, before: Iterable[str],
                       declared: Mapping[str, Sequence[ApprovalParameter]]) -> list[str]:
    """What is wrong with the approval references of task ``name``: each must name an approval
    task in ``before`` (the tasks it comes after, directly or not) and one of its parameters."""
    earlier = set(before)
    problems = []
    for task, parameter in references(texts):
        if task not in declared:
            problems.append(f"task {name}: {{{{ approvals.{task}.{parameter} }}}}: no approval task {task!r}")
        elif task not in earlier:
            problems.append(f"task {name}: {{{{ approvals.{task}.{parameter} }}}}: {task!r} must come before it "
                            f"(add it to dependsOn, directly or through a task before it)")
        elif parameter not in {p.name for p in declared[task]}:
            problems.append(f"task {name}: {{{{ approvals.{task}.{parameter} }}}}: task {task!r} declares no "
                            f"parameter {parameter!r}")
    return problems


def ancestors(depends_on: Mapping[str, Sequence[str]], name: str) -> set[str]:
    """The tasks ``name`` comes after, directly or through others (names not declared are skipped)."""
    found: set[str] = set()
    stack = list(depends_on.get(name, ()))
    while stack:
        current = stack.pop()
        if current not in found:
            found.add(current)
            stack.extend(depends_on.get(current, ()))
    return found


def value_problems(parameters: Sequence[ApprovalParameter], given: Mapping[str, object]) -> list[str]:
    """Why ``given`` does not approve with ``parameters``: unknown names, values of the wrong
    type, required parameters (no default) left out. Empty when it does."""
    declared = {p.name: p for p in parameters}
    problems = [f"unknown parameter {name!r} (declared: {', '.join(declared) or 'none'})"
                for name in given if name not in declared]
    for parameter in parameters:
        if parameter.name not in given:
            if parameter.required:
                problems.append(f"parameter {parameter.name!r} ({parameter.type.value}) needs a value: it has no "
                                "default")
        elif (problem := type_problem(parameter.type, given[parameter.name])) is not None:
            problems.append(f"parameter {parameter.name!r}: {given[parameter.name]!r} {problem}")
    return problems
