"""Instantiating a Workflow from a WorkflowTemplate: ``{{ params.NAME }}`` substitution.

Called by workflow resolution before the DAG is built. Pure: takes models, returns a new
WorkflowSpec or the list of problems (missing, unknown or unused arguments, unknown references).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..api import Workflow, WorkflowSpec, WorkflowTemplate
from ..api.workflow import ArgumentValue

# Only these two namespaces are substituted, so `{{` elsewhere in a shell script (Jinja, Go
# templates passed to a tool) is left alone.
_EXPRESSION = re.compile(r"\{\{\s*(params|workflow)\.([A-Za-z_][A-Za-z0-9_-]*)\s*\}\}")


class TemplateError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _render(value: ArgumentValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _substitute(data: Any, values: Mapping[str, Mapping[str, str]], unknown: set[str]) -> Any:
    if isinstance(data, str):
        def replace(match: re.Match[str]) -> str:
            scope, name = match.group(1), match.group(2)
            if name in values[scope]:
                return values[scope][name]
            unknown.add(f"{scope}.{name}")
            return match.group(0)

        return _EXPRESSION.sub(replace, data)
    if isinstance(data, list):
        return [_substitute(item, values, unknown) for item in data]
    if isinstance(data, dict):
        return {key: _substitute(item, values, unknown) for key, item in data.items()}
    return data


def instantiate(workflow: Workflow, template: WorkflowTemplate) -> WorkflowSpec:
    """The workflow's spec with the template's tasks, parameters substituted.

    The workflow's own ``defaults`` are merged over the template's.
    Raises :class:`TemplateError` listing every problem at once.
    """
    declared = {p.name: p for p in template.spec.parameters}
    given = workflow.spec.arguments
    problems = [f"unknown argument {name!r} (template {template.metadata.name!r} declares: "
                f"{', '.join(sorted(declared)) or 'none'})" for name in sorted(set(given) - set(declared))]
    params: dict[str, str] = {}
    for name, parameter in declared.items():
        if name in given:
            params[name] = _render(given[name])
        elif parameter.default is not None:
            params[name] = _render(parameter.default)
        else:
            problems.append(f"missing argument {name!r} (required by template {template.metadata.name!r})")
    values = {
        "params": params,
        "workflow": {"name": workflow.metadata.name, "namespace": workflow.metadata.namespace},
    }
    unknown: set[str] = set()
    tasks = _substitute(template.spec.tasks, values, unknown)
    template_defaults = _substitute(template.spec.defaults, values, unknown)
    # A declared parameter without a value is already reported as a missing argument.
    undeclared = sorted(ref for ref in unknown if ref.removeprefix("params.") not in declared)
    problems.extend(f"unknown reference {{{{ {ref} }}}} in template {template.metadata.name!r}" for ref in undeclared)
    if problems:
        raise TemplateError(problems)
    own_defaults = workflow.spec.defaults.model_dump(by_alias=True, exclude_none=True, exclude_unset=True, mode="json")
    defaults = _merge(template_defaults, own_defaults)
    try:
        return WorkflowSpec.model_validate({
            "cluster": workflow.spec.cluster,
            "suspend": workflow.spec.suspend,
            "defaults": defaults,
            "tasks": tasks,
        })
    except ValidationError as exc:
        raise TemplateError([
            f"after substitution: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]) from exc


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
