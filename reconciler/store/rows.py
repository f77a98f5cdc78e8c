"""The typed rows the store hands its readers (the CLI's tables, ``describe``, the publisher):
plain frozen values, never database rows or dicts read by string key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..api import WorkflowStatus


@dataclass(frozen=True)
class WorkflowRow:
    namespace: str
    name: str
    uid: str
    generation: int
    created_at: datetime
    spec: dict
    labels: dict[str, str]
    status: WorkflowStatus | None
    source_file: str | None = None


@dataclass(frozen=True)
class EventRow:
    at: datetime
    type: str
    reason: str
    message: str
