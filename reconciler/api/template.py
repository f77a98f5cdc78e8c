"""The WorkflowTemplate kind: a reusable DAG with declared parameters.

A Workflow that names a template with ``templateRef`` is an instance of it; the substitution of
``{{ params.NAME }}`` happens in :mod:`reconciler.templates`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from .admission import Rule, admission_rules
from .meta import API_VERSION, FrozenModel, Model, ObjectMeta
from .workflow import MAX_PARAMETERS, ArgumentValue, WorkflowSpec

PARAMETER_NAME = r"^[A-Za-z_][A-Za-z0-9_-]*$"


class Parameter(FrozenModel):
    name: Annotated[str, Field(pattern=PARAMETER_NAME, max_length=128)]
    default: ArgumentValue | None = None
    description: str | None = None


# Any field of a template's tasks may hold a parameter reference, numbers included
# (`count: "{{ params.tiles }}"`), so tasks are kept as written and type-checked by a trial
# instantiation; the real check happens again on every instance, after substitution.
_REFERENCE = re.compile(r"\{\{\s*params\.[A-Za-z_][A-Za-z0-9_-]*\s*\}\}")
# "1" is accepted by every scalar field of a task (a count, a name, a time, a memory size).
_TRIAL_VALUE = "1"


def _with_trial_values(data: Any) -> Any:
    if isinstance(data, str):
        return _REFERENCE.sub(_TRIAL_VALUE, data)
    if isinstance(data, list):
        return [_with_trial_values(item) for item in data]
    if isinstance(data, dict):
        return {key: _with_trial_values(item) for key, item in data.items()}
    return data


class WorkflowTemplateSpec(FrozenModel):
    # The tasks are free-form here (invisible to CEL), so only the parameters are checked at
    # admission; the trial instantiation in _check is the check of the tasks.
    model_config = admission_rules(Rule(
        "!has(self.parameters) || self.parameters.all(p, self.parameters.exists_one(q, q.name == p.name))",
        "parameter names must be unique", ".parameters"))

    parameters: list[Parameter] = Field(default_factory=list, json_schema_extra={"maxItems": MAX_PARAMETERS})
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="task defaults, as in a Workflow; may hold {{ params.NAME }}"
    )
    tasks: Annotated[
        list[dict[str, Any]],
        Field(min_length=1, description="tasks, as in a Workflow; any field may hold {{ params.NAME }}"),
    ]

    @model_validator(mode="after")
    def _check(self) -> WorkflowTemplateSpec:
        names = [p.name for p in self.parameters]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate parameter names: {', '.join(duplicates)}")
        try:
            WorkflowSpec.model_validate(
                {"defaults": _with_trial_values(self.defaults), "tasks": _with_trial_values(self.tasks)}
            )
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"{where}: {str(first['msg']).removeprefix('Value error, ')}") from None
        return self


class WorkflowTemplate(Model):
    api_version: Literal["hpc.reconciler.dev/v1alpha1"] = API_VERSION
    kind: Literal["WorkflowTemplate"] = "WorkflowTemplate"
    metadata: ObjectMeta
    spec: WorkflowTemplateSpec
