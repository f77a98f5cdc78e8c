"""Go's renderings of JSON values, for messages and bodies that must read as kube-apiserver's.

Called by the error and schema modules (``go_repr`` for ``field.Error`` values, ``go_number`` for
bounds in OpenAPI messages) and by storage (``normalize`` on every stored object). Guarantees:
``normalize`` gives a value the shape a JSON round trip through Go's unstructured decoder gives it
(an integral float such as ``0.0`` comes back as ``0``, the way Go's encoder prints ``float64(0)``).
"""

from __future__ import annotations

import json
import math
from typing import Any


def go_number(value: float | int) -> str:
    """``fmt.Sprintf("%v", x)`` for a JSON number."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exp = text.split("e")
        sign = "-" if exp.startswith("-") else "+"
        text = f"{mantissa}e{sign}{exp.lstrip('+-').zfill(2)}"
    return text


def _quote(text: str) -> str:
    # strconv.Quote keeps printable non-ASCII characters, as json.dumps(ensure_ascii=False) does.
    return json.dumps(text, ensure_ascii=False)


def go_value(value: Any) -> str:
    """``fmt.Sprintf("%#v", x)`` for a value decoded from JSON into ``interface{}``."""
    if value is None:
        return "interface {}(nil)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_number(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(go_value(v) for v in value) + "}"
    if isinstance(value, dict):
        # %#v prints a map with sorted keys.
        items = ", ".join(f"{_quote(k)}:{go_value(value[k])}" for k in sorted(value))
        return "map[string]interface {}{" + items + "}"
    return repr(value)


def go_repr(value: Any) -> str:
    """How ``field.Error.ErrorBody`` shows a bad value: ``%v`` for numbers and booleans, ``%q`` for
    strings, ``null`` for nil, ``%#v`` for anything else."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return go_number(value)
    if isinstance(value, str):
        return _quote(value)
    return go_value(value)


def json_type(value: Any) -> str:
    """The OpenAPI type name of a decoded JSON value (as kube-openapi reports a type mismatch)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def normalize(value: Any) -> Any:
    """A deep copy with integral floats turned into ints (see the module docstring)."""
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value
