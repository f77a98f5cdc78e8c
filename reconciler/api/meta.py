"""Shared pieces of every resource: API identity, object metadata and conditions.

Imported by the kind modules (workflow, template, cluster) and by the CRD generator. Everything
here is pure data; the models reject unknown fields so a typo in a manifest is an error, never a
silently ignored setting.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import Enum
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# Final, so its type is this literal: the kinds' ``apiVersion: Literal[...]`` fields default to it.
# The group and version are read from it.
API_VERSION: Final = "hpc.reconciler.dev/v1alpha1"
GROUP, VERSION = API_VERSION.split("/")

# Kubernetes names: DNS-1123 subdomain for objects, DNS-1123 label for things that end up
# inside other names (task names become part of Slurm job names).
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Label keys: optional DNS prefix, then a name segment.
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


class Model(BaseModel):
    """Base of every resource model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        use_enum_values=False,
    )

    def to_wire(self) -> dict:
        """The object as it appears in YAML and in the Kubernetes API."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class FrozenModel(Model):
    model_config = ConfigDict(frozen=True)


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        if len(key) > 253 or not _LABEL_KEY.match(key):
            raise ValueError(f"invalid label key {key!r}: must be [prefix/]name with a DNS prefix")
        if not _LABEL_VALUE.match(value):
            raise ValueError(
                f"invalid label value {value!r} for {key!r}: at most 63 of [A-Za-z0-9_.-], "
                "starting and ending alphanumeric"
            )
    return labels


Labels = Annotated[dict[str, str], AfterValidator(_check_labels)]
Name = Annotated[str, Field(pattern=DNS1123_SUBDOMAIN, max_length=253)]
LabelName = Annotated[str, Field(pattern=DNS1123_LABEL, max_length=63)]


class ObjectMeta(Model):
    """The subset of Kubernetes ObjectMeta the reconciler reads or writes.

    Server-set fields (uid, generation, resourceVersion, ...) are accepted so the same model
    parses objects read back from the Kubernetes API.
    """

    name: Name
    namespace: LabelName = "default"
    labels: Labels = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    finalizers: list[str] = Field(default_factory=list)


class ConditionStatus(str, Enum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Model):
    """A Kubernetes-style condition (metav1.Condition)."""

    type: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$", max_length=316)]
    status: ConditionStatus
    reason: Annotated[str, Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)]
    message: Annotated[str, Field(max_length=32768)] = ""
    last_transition_time: datetime
    observed_generation: int | None = None
