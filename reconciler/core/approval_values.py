"""The values an approval carries, from the words a person types to the job that reads them.

Pure. ``reconciler approve --set`` parses with ``parse_assignments``; the planner hands every job
task the values of the approvals before it (``ApprovedValues``, carried by its ``Submit``) and the
executor renders the task with them (``with_approved``) right before sbatch, so the stored spec
keeps its ``{{ approvals.TASK.NAME }}`` references. Guarantees:

* a value is checked against its parameter's declared type before it is recorded (the model's
  ``value_problems``); a parameter left out takes its default;
* every approval before a task is visible to it twice: ``{{ approvals.TASK.NAME }}`` replaced in
  its script, command and environment values, and the variable ``APPROVAL_<TASK>_<NAME>`` (the
  task's name upper-cased with ``-`` and ``.`` as ``_``, the parameter's name upper-cased);
* values render the way YAML wrote them: ``true``/``false``, numbers as Python prints them
  (``1.2``, ``3``), strings unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..api import Task
from ..api.approval import REFERENCE, ApprovalParameter, ApprovalValue, ParameterType, value_problems

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class ApprovalValuesError(ValueError):
    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class ApprovedValues:
    """The values one approval task was approved with (defaults filled in), as a later task
    sees them."""

    task: str
    values: tuple[tuple[str, ApprovalValue], ...]

    @property
    def as_dict(self) -> dict[str, ApprovalValue]:
        return dict(self.values)


def render(value: ApprovalValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def canonical(values: Mapping[str, ApprovalValue]) -> str:
    """One text per set of values, whatever their order: what the store keeps and fingerprints fold."""
    return json.dumps(dict(values), sort_keys=True, separators=(",", ":"))


def described(values: Mapping[str, ApprovalValue]) -> str:
    return ", ".join(f"{name}={render(value)}" for name, value in sorted(values.items()))


def effective(parameters: Sequence[ApprovalParameter], given: Mapping[str, ApprovalValue]) -> dict[str, ApprovalValue]:
    """``given`` with each declared parameter it leaves out at its default (given values are
    checked already; names no longer declared are left out)."""
    values = {p.name: p.default for p in parameters if p.default is not None}
    values.update({name: value for name, value in given.items() if any(p.name == name for p in parameters)})
    return values


def checked(parameters: Sequence[ApprovalParameter], given: Mapping[str, ApprovalValue]) -> dict[str, ApprovalValue]:
    """``given`` if it approves with ``parameters``, integers given for a number kept as they are;
    raises :class:`ApprovalValuesError` listing every problem."""
    problems = value_problems(parameters, given)
    if problems:
        raise ApprovalValuesError(problems)
    return dict(given)


def _parsed(parameter: ApprovalParameter, text: str) -> ApprovalValue:
    kind = parameter.type
    if kind is ParameterType.STRING:
        return text
    if kind is ParameterType.BOOLEAN:
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ValueError(f"parameter {parameter.name!r}: {text!r} expects true or false")
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"parameter {parameter.name!r}: {text!r} expects a {kind.value}") from None
    if kind is ParameterType.INTEGER:
        raise ValueError(f"parameter {parameter.name!r}: {text!r} expects an integer")
    return number


def parse_assignments(parameters: Sequence[ApprovalParameter], assignments: Sequence[str]) -> dict[str, ApprovalValue]:
    """The values ``NAME=VALUE`` words give (``--set``), each read as its parameter's type, then
    checked like any approval's; raises :class:`ApprovalValuesError` listing every problem."""
    declared = {p.name: p for p in parameters}
    given: dict[str, ApprovalValue] = {}
    problems: list[str] = []
    unreadable: set[str] = set()
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        name = name.strip()
        if not sep or not name:
            problems.append(f"{assignment!r}: expected NAME=VALUE")
        elif name in given:
            problems.append(f"parameter {name!r} is set twice")
        elif name not in declared:
            given[name] = text  # reported as unknown below, with the declared names
        else:
            try:
                given[name] = _parsed(declared[name], text)
            except ValueError as exc:
                problems.append(str(exc))
                unreadable.add(name)
    # A value that could not be read is reported once, not again as missing.
    problems += [p for p in value_problems(parameters, given)
                 if not any(p.startswith(f"parameter {name!r}") for name in unreadable)]
    if problems:
        raise ApprovalValuesError(problems)
    return given


def env_name(task: str, parameter: str) -> str:
    return f"APPROVAL_{re.sub(r'[^A-Za-z0-9]', '_', task).upper()}_{parameter.upper()}"


def with_approved(task: Task, approved: Sequence[ApprovedValues]) -> Task:
    """``task`` as it runs after the approvals ``approved``: their references replaced in its
    script, command and environment values, and each value in its own variable (a variable the
    task sets itself wins)."""
    if not approved:
        return task
    values = {item.task: item.as_dict for item in approved}

    def substitute(text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            found = values.get(match.group(1), {}).get(match.group(2))
            return match.group(0) if found is None else render(found)

        return REFERENCE.sub(replace, text)

    variables = {env_name(item.task, name): render(value) for item in approved for name, value in item.values}
    return task.model_copy(update={
        "script": substitute(task.script) if task.script is not None else None,
        "command": [substitute(word) for word in task.command] if task.command is not None else None,
        "env": {**variables, **{name: substitute(value) for name, value in task.env.items()}},
    })
