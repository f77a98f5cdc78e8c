"""Decoding of Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``) into
the JSON form the rest of the server works on.

Called by the handlers when a request body arrives as protobuf: client-go's typed clientsets send
their writes that way, which includes ``kubectl create secret|namespace|configmap`` and helm's
release storage (a Secret per release revision). Guarantees: the ``k8s\\x00`` envelope
(``runtime.Unknown``) is unwrapped and the object decoded field by field from the go-to-protobuf
field numbers of the message, with fields at their zero value left out (as JSON's ``omitempty``
leaves them), times rendered as RFC 3339 (micro-times with microseconds) and bytes as base64.

Deviations: only the messages of the built-in types served here are known (Secret, ConfigMap,
Namespace, Lease, both Events, DeleteOptions); anything else is 415 UnsupportedMediaType.
Responses are always JSON, which every client-go client also accepts.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from .errors import ApiError, unsupported_media_type

PROTOBUF = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"

# A message is {field number: (json name, kind, sub-message)}; kinds: s string, b bytes (base64),
# i integer, bool, t Time, mt MicroTime, mss map<string,string>, msb map<string,bytes>,
# rs repeated string, m message, rm repeated message.
Message = dict[int, tuple[str, str, Any]]

_TIME: Message = {}
_OWNER_REF: Message = {
    1: ("kind", "s", None),
    3: ("name", "s", None),
    4: ("uid", "s", None),
    5: ("apiVersion", "s", None),
    6: ("controller", "bool", None),
    7: ("blockOwnerDeletion", "bool", None),
}
OBJECT_META: Message = {
    1: ("name", "s", None),
    2: ("generateName", "s", None),
    3: ("namespace", "s", None),
    4: ("selfLink", "s", None),
    5: ("uid", "s", None),
    6: ("resourceVersion", "s", None),
    7: ("generation", "i", None),
    8: ("creationTimestamp", "t", None),
    9: ("deletionTimestamp", "t", None),
    10: ("deletionGracePeriodSeconds", "i", None),
    11: ("labels", "mss", None),
    12: ("annotations", "mss", None),
    13: ("ownerReferences", "rm", _OWNER_REF),
    14: ("finalizers", "rs", None),
}
_OBJECT_REF: Message = {
    1: ("kind", "s", None),
    2: ("namespace", "s", None),
    3: ("name", "s", None),
    4: ("uid", "s", None),
    5: ("apiVersion", "s", None),
    6: ("resourceVersion", "s", None),
    7: ("fieldPath", "s", None),
}
_SOURCE: Message = {1: ("component", "s", None), 2: ("host", "s", None)}
_SERIES: Message = {1: ("count", "i", None), 2: ("lastObservedTime", "mt", None)}
_CONDITION: Message = {
    1: ("type", "s", None),
    2: ("status", "s", None),
    4: ("lastTransitionTime", "t", None),
    5: ("reason", "s", None),
    6: ("message", "s", None),
}

MESSAGES: dict[tuple[str, str], Message] = {
    ("v1", "Secret"): {
        1: ("metadata", "m", OBJECT_META),
        2: ("data", "msb", None),
        3: ("type", "s", None),
        4: ("stringData", "mss", None),
        5: ("immutable", "bool", None),
    },
    ("v1", "ConfigMap"): {
        1: ("metadata", "m", OBJECT_META),
        2: ("data", "mss", None),
        3: ("binaryData", "msb", None),
        4: ("immutable", "bool", None),
    },
    ("v1", "Namespace"): {
        1: ("metadata", "m", OBJECT_META),
        2: ("spec", "m", {1: ("finalizers", "rs", None)}),
        3: ("status", "m", {1: ("phase", "s", None), 2: ("conditions", "rm", _CONDITION)}),
    },
    ("coordination.k8s.io/v1", "Lease"): {
        1: ("metadata", "m", OBJECT_META),
        2: (
            "spec",
            "m",
            {
                1: ("holderIdentity", "s", None),
                2: ("leaseDurationSeconds", "i", None),
                3: ("acquireTime", "mt", None),
                4: ("renewTime", "mt", None),
                5: ("leaseTransitions", "i", None),
                6: ("strategy", "s", None),
                7: ("preferredHolder", "s", None),
            },
        ),
    },
    ("v1", "Event"): {
        1: ("metadata", "m", OBJECT_META),
        2: ("involvedObject", "m", _OBJECT_REF),
        3: ("reason", "s", None),
        4: ("message", "s", None),
        5: ("source", "m", _SOURCE),
        6: ("firstTimestamp", "t", None),
        7: ("lastTimestamp", "t", None),
        8: ("count", "i", None),
        9: ("type", "s", None),
        10: ("eventTime", "mt", None),
        11: ("series", "m", _SERIES),
        12: ("action", "s", None),
        13: ("related", "m", _OBJECT_REF),
        14: ("reportingComponent", "s", None),
        15: ("reportingInstance", "s", None),
    },
    ("events.k8s.io/v1", "Event"): {
        1: ("metadata", "m", OBJECT_META),
        2: ("eventTime", "mt", None),
        3: ("series", "m", _SERIES),
        4: ("reportingController", "s", None),
        5: ("reportingInstance", "s", None),
        6: ("action", "s", None),
        7: ("reason", "s", None),
        8: ("regarding", "m", _OBJECT_REF),
        9: ("related", "m", _OBJECT_REF),
        10: ("note", "s", None),
        11: ("type", "s", None),
        12: ("deprecatedSource", "m", _SOURCE),
        13: ("deprecatedFirstTimestamp", "t", None),
        14: ("deprecatedLastTimestamp", "t", None),
        15: ("deprecatedCount", "i", None),
    },
    ("v1", "DeleteOptions"): {
        1: ("gracePeriodSeconds", "i", None),
        2: ("preconditions", "m", {1: ("uid", "s", None), 2: ("resourceVersion", "s", None)}),
        3: ("orphanDependents", "bool", None),
        4: ("propagationPolicy", "s", None),
        5: ("dryRun", "rs", None),
    },
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of one message; length-delimited values as bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            out.append((number, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            out.append((number, int.from_bytes(data[pos : pos + 8], "little")))
            pos += 8
        elif wire == 5:
            out.append((number, int.from_bytes(data[pos : pos + 4], "little")))
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _time(data: bytes, micro: bool) -> str | None:
    seconds = nanos = 0
    for number, value in _fields(data):
        if number == 1 and isinstance(value, int):
            seconds = _signed(value)
        elif number == 2 and isinstance(value, int):
            nanos = value
    if seconds == 0 and nanos == 0:
        return None
    when = datetime.fromtimestamp(seconds + nanos / 1e9, tz=UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def _map_entry(data: bytes) -> tuple[str, bytes]:
    key, value = "", b""
    for number, item in _fields(data):
        if number == 1 and isinstance(item, bytes):
            key = item.decode()
        elif number == 2 and isinstance(item, bytes):
            value = item
    return key, value


def decode_message(data: bytes, message: Message) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for number, value in _fields(data):
        if number not in message:
            continue
        name, kind, sub = message[number]
        if kind == "s" and isinstance(value, bytes):
            obj[name] = value.decode()
        elif kind == "b" and isinstance(value, bytes):
            obj[name] = base64.b64encode(value).decode()
        elif kind == "i" and isinstance(value, int):
            obj[name] = _signed(value)
        elif kind == "bool" and isinstance(value, int):
            obj[name] = bool(value)
        elif kind in ("t", "mt") and isinstance(value, bytes):
            obj[name] = _time(value, micro=kind == "mt")
        elif kind in ("mss", "msb") and isinstance(value, bytes):
            k, v = _map_entry(value)
            obj.setdefault(name, {})[k] = v.decode() if kind == "mss" else base64.b64encode(v).decode()
        elif kind == "rs" and isinstance(value, bytes):
            obj.setdefault(name, []).append(value.decode())
        elif kind == "m" and isinstance(value, bytes):
            obj[name] = decode_message(value, sub)
        elif kind == "rm" and isinstance(value, bytes):
            obj.setdefault(name, []).append(decode_message(value, sub))
    # Zero values are what omitempty leaves out of the JSON form.
    return {k: v for k, v in obj.items() if v not in ("", 0, False, None, {}, [])}


def decode(body: bytes, expected_kind: str) -> dict[str, Any]:
    """Decode one protobuf request body (an object, or DeleteOptions for a delete)."""
    if not body.startswith(_MAGIC):
        raise unsupported_media_type(PROTOBUF, ["application/json", "application/yaml"])
    api_version = kind = ""
    raw = b""
    for number, value in _fields(body[len(_MAGIC) :]):
        if number == 1 and isinstance(value, bytes):
            for n, v in _fields(value):
                if n == 1 and isinstance(v, bytes):
                    api_version = v.decode()
                elif n == 2 and isinstance(v, bytes):
                    kind = v.decode()
        elif number == 2 and isinstance(value, bytes):
            raw = value
    kind = kind or expected_kind
    message = MESSAGES.get((api_version or "v1", kind))
    if message is None:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - {api_version} {kind} is not served as protobuf "
            "here - accepted media types include: application/json, application/yaml",
        )
    obj = decode_message(raw, message)
    if kind != "DeleteOptions":
        obj = {"apiVersion": api_version, "kind": kind, **obj}
    return obj
