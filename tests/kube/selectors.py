"""Label and field selectors, parsed and matched as k8s.io/apimachinery's ``labels`` and ``fields``
packages do.

Called by storage for ``list``, ``watch`` and ``deletecollection`` requests. Guarantees: the label
grammar is the full one (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``, ``>``, ``<``),
with ``!=`` and ``notin`` matching objects that lack the label; field selectors take ``=``, ``==``
and ``!=`` with backslash escapes. A selector that does not parse, or a field the resource does not
index, raises ``ApiError`` 400 BadRequest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import bad_request

_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if self.op in ("gt", "lt"):
            try:
                number = int(value or "")
            except ValueError:
                return False
            bound = int(self.values[0])
            return number > bound if self.op == "gt" else number < bound
        return False


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _check_key(selector: str, key: str) -> None:
    if not _KEY.match(key) or len(key.split("/")[-1]) > 63:
        raise bad_request(
            f'unable to parse requirement: values[0][{key}]: Invalid value: "{key}": name part must consist of '
            "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        )


def _check_value(key: str, value: str) -> None:
    if not _VALUE.match(value) or len(value) > 63:
        raise bad_request(
            f'unable to parse requirement: values[0][{key}]: Invalid value: "{value}": a valid label must be an '
            "empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character"
        )


_SET = re.compile(r"^\s*(\S+?)\s+(in|notin)\s*\((.*)\)\s*$")
_CMP = re.compile(r"^\s*([^=!<>\s]+)\s*(==|=|!=|>|<)\s*(.*?)\s*$")


def parse_labels(selector: str) -> list[Requirement]:
    """Parse a ``labelSelector`` query parameter."""
    requirements: list[Requirement] = []
    if not selector.strip():
        return requirements
    for raw in _split_top_level(selector):
        part = raw.strip()
        if not part:
            raise bad_request(f"unable to parse requirement: found '', expected: identifier in \"{selector}\"")
        if m := _SET.match(part):
            key, op, values = m.group(1), m.group(2), tuple(v.strip() for v in m.group(3).split(","))
            _check_key(selector, key)
            for v in values:
                _check_value(key, v)
            requirements.append(Requirement(key, op, values))
        elif m := _CMP.match(part):
            key, op, value = m.group(1), m.group(2), m.group(3)
            _check_key(selector, key)
            if op in (">", "<"):
                if not re.fullmatch(r"-?\d+", value):
                    raise bad_request(
                        "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer"
                    )
                requirements.append(Requirement(key, "gt" if op == ">" else "lt", (value,)))
                continue
            _check_value(key, value)
            requirements.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
        elif part.startswith("!"):
            key = part[1:].strip()
            _check_key(selector, key)
            requirements.append(Requirement(key, "!"))
        else:
            _check_key(selector, part)
            requirements.append(Requirement(part, "exists"))
    return requirements


def labels_match(requirements: list[Requirement], obj: dict[str, Any]) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    negate: bool
    value: str


def _unescape_split(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current = ""
    escaped = False
    for ch in text:
        if escaped:
            current += "\\" + ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_fields(selector: str, supported: frozenset[str], unsupported: Callable[[str], str]) -> list[FieldRequirement]:
    """Parse a ``fieldSelector``; ``supported`` is the set of fields the resource indexes and
    ``unsupported(field)`` words the error for any other."""
    requirements: list[FieldRequirement] = []
    if not selector.strip():
        return requirements
    for part in _unescape_split(selector, ","):
        m = re.match(r"^(.*?)(!=|==|=)(.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{part}'")
        field = m.group(1).strip()
        if field not in supported:
            raise bad_request(unsupported(field))
        requirements.append(FieldRequirement(field, m.group(2) == "!=", _unescape(m.group(3))))
    return requirements


def field_value(obj: dict[str, Any], field: str) -> str:
    node: Any = obj
    for part in field.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def fields_match(requirements: list[FieldRequirement], obj: dict[str, Any]) -> bool:
    return all((field_value(obj, r.field) == r.value) != r.negate for r in requirements)
