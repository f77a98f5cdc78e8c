"""How the reconciler's log lines look: JSON lines for a log collector, or text for a person.

Called by :func:`reconciler.cli.main.main` once per process (``--log-format``, ``--log-level``,
or ``$RECONCILER_LOG_FORMAT`` and ``$RECONCILER_LOG_LEVEL``). ``auto`` writes JSON when stderr is
not a terminal (a pod, a systemd unit, a file) and text when a person watches it. Every line
carries the context the loop set while it worked (:mod:`reconciler.engine.logcontext`): the
cluster, workflow, task, job id and revision, where they apply.

A JSON line is one object: ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``,
``message``, the context fields present, any other ``extra=`` field the call gave, and
``exception`` (the formatted traceback) when there is one.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from enum import Enum
from typing import TextIO

from ..engine.logcontext import FIELDS, ContextFilter


class LogFormat(str, Enum):
    AUTO = "auto"
    JSON = "json"
    TEXT = "text"


# What every LogRecord has: anything else on a record came from a call's ``extra=`` or the context.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, object]:
    """The record's context and ``extra=`` fields, context fields first in their order."""
    found = {name: value for name, value in record.__dict__.items() if name not in _STANDARD}
    ordered = {name: found.pop(name) for name in FIELDS if name in found}
    return {**ordered, **found}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in _extras(record).items():
            line.setdefault(name, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with the context after the message: ``[workflow=default/x task=y]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        extras = _extras(record)
        if not extras:
            return text
        return f"{text} [{' '.join(f'{name}={value}' for name, value in extras.items())}]"


def chosen_format(choice: LogFormat, stream: TextIO) -> LogFormat:
    if choice is not LogFormat.AUTO:
        return choice
    isatty = getattr(stream, "isatty", None)
    return LogFormat.TEXT if isatty is not None and isatty() else LogFormat.JSON


def configure_logging(*, level: str, log_format: LogFormat, stream: TextIO) -> None:
    """Send the root logger's records to ``stream`` in the chosen format; as ``basicConfig``,
    nothing changes when the root logger has a handler already (a host application's, or a
    test runner's)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if chosen_format(log_format, stream) is LogFormat.JSON else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
