"""What the loop is working on, attached to every log line written meanwhile.

The controller sets the revision for a tick and the cluster for its part of it, the executor
the workflow, task and job ids for each action; :class:`ContextFilter`, installed on the log
handler by the CLI, copies them onto every record, so a line logged anywhere below (the Slurm
client, the transports, the store) says which workflow and task it is about without its call
naming them. The context lives in a ``ContextVar``: each thread sees only its own, and leaving
a ``log_context`` block restores the one before, even when the block raises.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

# The fields, in the order a text line shows them.
FIELDS = ("cluster", "workflow", "task", "job_id", "revision")

_CONTEXT: ContextVar[Mapping[str, str]] = ContextVar("reconciler_log_context", default=MappingProxyType({}))


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Within the block, every log record carries these fields (None leaves a field as it was)."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown log context fields: {', '.join(sorted(unknown))}")
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current() -> Mapping[str, str]:
    return _CONTEXT.get()


class ContextFilter(logging.Filter):
    """Copies the current context onto each record, unless the call gave the field itself
    (``extra={"job_id": ...}``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _CONTEXT.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True
