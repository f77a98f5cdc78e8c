"""Admission rules: the model checks that the Kubernetes API server repeats, as CEL.

A model declares its rules beside the validators they mirror, as its ``model_config``
(``model_config = admission_rules(Rule(...), ...)``); pydantic puts them into the model's JSON
Schema as ``x-kubernetes-validations``, and :mod:`reconciler.api.crds` carries them into the
CRDs unchanged, so ``kubectl apply`` of such a mistake is refused with the rule's message before
any reconciler sees the object.

Guarantees of every rule declared with :class:`Rule`:

* it refuses only what the model refuses too (or the DAG check of ``reconciler.manifests.dag``,
  for the names ``dependsOn`` gives): the model stays the full check, a rule is an early copy of
  one part of it. Fields set to null count as absent, as in the model and in the API server;
* it reads only nodes the CRD schema exposes to CEL (typed nodes: a free-form value such as
  ``approved`` or a WorkflowTemplate's tasks is invisible there, so nothing about it is checked);
* it uses only standard CEL (macros, ``size``, ``in``, ``matches``), no Kubernetes extension, so
  its cost stays easy to bound: every list a rule iterates has a ``max_length`` in its model.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import ConfigDict

VALIDATIONS = "x-kubernetes-validations"


class Reason(str, Enum):
    """How the API server classifies a refusal (the ``reason`` of a rule).

    FieldValueDuplicate is left out on purpose: the API server reports it without the rule's
    message (only "Duplicate value" and the node's type), so a duplicate is Invalid here.
    """

    INVALID = "FieldValueInvalid"
    REQUIRED = "FieldValueRequired"
    FORBIDDEN = "FieldValueForbidden"


@dataclass(frozen=True)
class Rule:
    """One CEL rule over the node of its model (``self``): true when the value is acceptable."""

    rule: str
    message: str
    # Relative to the model's node (".tasks"): the field the refusal names; the node itself if unset.
    field_path: str | None = None
    reason: Reason = Reason.INVALID

    def to_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"rule": self.rule, "message": self.message}
        if self.field_path is not None:
            schema["fieldPath"] = self.field_path
        if self.reason is not Reason.INVALID:
            schema["reason"] = self.reason.value
        return schema


def admission_rules(*rules: Rule) -> ConfigDict:
    """A model config carrying ``rules`` into the model's JSON Schema (merged with the
    config of the model's bases by pydantic)."""
    return ConfigDict(json_schema_extra={VALIDATIONS: [rule.to_schema() for rule in rules]})

