"""``meta.k8s.io/v1`` Table responses and the JSONPath subset printer columns use.

Called by the request handlers when a client's Accept header asks for ``as=Table`` (``kubectl get``
does), and by resources when turning a CRD's ``additionalPrinterColumns`` into columns.
Guarantees, as the apiextensions table convertor does it: ``Name`` comes first; a ``string``
column prints its JSONPath result, any other type is kept as a typed cell (``integer``, ``number``,
``boolean``) and a ``date`` column becomes a human-readable age (``5s``, ``3m2s``) computed by the
server; a path with no result is a ``null`` cell (kubectl prints ``<none>``); rows carry the object
as PartialObjectMetadata unless ``includeObject`` says ``None`` or ``Object``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .gofmt import go_number

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
    "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    format: str
    description: str
    priority: int
    cell: Callable[[dict[str, Any]], Any]

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


# --- JSONPath -------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\.\.?(?P<field>[A-Za-z0-9_\-$]+)
      |\[\?\(@(?P<fpath>(\.[A-Za-z0-9_\-]+)+)\s*(?P<fop>==|!=)\s*(?P<fval>"[^"]*"|'[^']*'|[^)\s]+)\)\]
      |\[(?P<index>-?\d+|\*)\]
      |\[['"](?P<qfield>[^'"]+)['"]\]
      |\.\*
    """,
    re.VERBOSE,
)


def compile_jsonpath(expression: str) -> list[re.Match[str]]:
    """Tokenise a simple JSONPath (``.a.b``, ``.a[0]``, ``.a[*].b``, ``['k']``, ``[?(@.k=="v")]``).
    Raises ValueError for anything else."""
    text = expression.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if text.startswith("$"):
        text = text[1:]
    tokens: list[re.Match[str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"unsupported JSONPath {expression!r} at {text[pos:]!r}")
        tokens.append(m)
        pos = m.end()
    return tokens


def _literal(text: str) -> Any:
    if text[:1] in ("'", '"'):
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        return text


def evaluate(tokens: list[re.Match[str]], obj: Any) -> list[Any]:
    """All values the path selects, in document order."""
    current = [obj]
    for tok in tokens:
        nxt: list[Any] = []
        for node in current:
            if tok.group("field") or tok.group("qfield"):
                key = tok.group("field") or tok.group("qfield")
                if isinstance(node, dict) and key in node:
                    nxt.append(node[key])
            elif tok.group("fpath"):
                want = _literal(tok.group("fval"))
                for item in node if isinstance(node, list) else []:
                    value: Any = item
                    for part in tok.group("fpath").split(".")[1:]:
                        value = value.get(part) if isinstance(value, dict) else None
                    if (value == want) != (tok.group("fop") == "!="):
                        nxt.append(item)
            elif tok.group("index"):
                idx = tok.group("index")
                if isinstance(node, list):
                    if idx == "*":
                        nxt.extend(node)
                    elif -len(node) <= int(idx) < len(node):
                        nxt.append(node[int(idx)])
            elif isinstance(node, dict):
                nxt.extend(node.values())
            elif isinstance(node, list):
                nxt.extend(node)
        current = nxt
    return current


# --- cells ----------------------------------------------------------------------------------------


def parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y{rest}d" if rest else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(timestamp: Any) -> str:
    """``ConvertToHumanReadableDateType``: the age of an RFC 3339 timestamp."""
    if not timestamp:
        return "<unknown>"
    when = parse_time(str(timestamp))
    if when is None:
        return "<invalid>"
    return human_duration((datetime.now(UTC) - when).total_seconds())


def _print_string(value: Any) -> str:
    # jsonpath PrintResults: strings as they are, other values through fmt's %v.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return go_number(value)
    return json.dumps(value, separators=(",", ":"))


def typed_cell(column_type: str, value: Any) -> Any:
    """``cellForJSONValue`` of the apiextensions table convertor."""
    if value is None:
        return None
    if column_type == "string":
        return _print_string(value)
    if column_type == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if column_type == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if column_type == "date" and isinstance(value, str):
        return age(value) if parse_time(value) else "<invalid>"
    return None


def printer_column(spec: dict[str, Any]) -> Column:
    """A column from one ``additionalPrinterColumns`` entry."""
    tokens = compile_jsonpath(spec["jsonPath"])
    column_type = spec.get("type", "string")

    def cell(obj: dict[str, Any]) -> Any:
        results = evaluate(tokens, obj)
        return typed_cell(column_type, results[0]) if results else None

    return Column(
        name=spec["name"],
        type=column_type,
        format=spec.get("format", ""),
        description=spec.get("description", ""),
        priority=int(spec.get("priority", 0)),
        cell=cell,
    )


def name_column() -> Column:
    return Column("Name", "string", "name", NAME_DESCRIPTION, 0, lambda o: o.get("metadata", {}).get("name", ""))


def age_column() -> Column:
    """The ``Age`` column of the built-in printers: a human-readable age as a string cell."""
    return Column(
        "Age",
        "string",
        "",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
        0,
        lambda o: age(o.get("metadata", {}).get("creationTimestamp")),
    )


def created_at_column() -> Column:
    """The default table convertor's ``Created At``: the raw timestamp (kubectl prints it as is)."""
    return Column(
        "Created At",
        "date",
        "",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
        0,
        lambda o: o.get("metadata", {}).get("creationTimestamp"),
    )


def partial_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def table(
    columns: list[Column], objects: list[dict[str, Any]], resource_version: str, include_object: str
) -> dict[str, Any]:
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [c.cell(obj) for c in columns]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = partial_metadata(obj)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [c.definition() for c in columns],
        "rows": rows,
    }
