"""Loading resource manifests from YAML files and folders, with file- and line-aware errors.

Called by every source (directory, Git) and by ``reconciler validate``. Guarantees: a broken
document or file yields :class:`ManifestError` values naming file, line and field path, and never
stops the other documents or files from loading; nothing in a file can make the loader construct
arbitrary objects, expand an alias bomb, or read an unbounded file.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from ..api import API_VERSION, KINDS, Resource
from ..api.meta import DNS1123_LABEL, DNS1123_SUBDOMAIN
from ..api.units import AUTO_OR_MEMORY_PATTERN, AUTO_OR_TIME_PATTERN, MEMORY_PATTERN, TIME_PATTERN
from ..api.workflow import ENV_NAME, SLURM_WORD

MAX_FILE_BYTES = 1024 * 1024
# Bounds the expanded size of a document, so a few nested aliases cannot make it explode.
MAX_NODES_PER_DOCUMENT = 200_000
MANIFEST_SUFFIXES = (".yaml", ".yml")

FieldPath = tuple[str | int, ...]

PATTERN_HINTS = {
    DNS1123_LABEL: "use lowercase letters, digits and '-', starting and ending alphanumeric, at most 63",
    DNS1123_SUBDOMAIN: "use lowercase letters, digits, '-' and '.', starting and ending alphanumeric",
    MEMORY_PATTERN: "use a whole number with an optional K, M, G or T suffix, e.g. 4G",
    TIME_PATTERN: "use Slurm's time format: MM, HH:MM:SS or D-HH:MM:SS, e.g. 01:30:00",
    AUTO_OR_MEMORY_PATTERN: "use a whole number with an optional K, M, G or T suffix, e.g. 4G, or auto",
    AUTO_OR_TIME_PATTERN: "use Slurm's time format: MM, HH:MM:SS or D-HH:MM:SS, e.g. 01:30:00, or auto",
    ENV_NAME: "use letters, digits and '_', not starting with a digit",
    SLURM_WORD: "use letters, digits and _.:,=+/@- only",
}


@dataclass(frozen=True)
class ManifestError:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass(frozen=True)
class SourceLocation:
    file: str
    line: int | None  # None for objects read from an API
    document: int


@dataclass(frozen=True)
class LoadedResource:
    resource: Resource
    location: SourceLocation

    @property
    def key(self) -> tuple[str, str, str]:
        meta = self.resource.metadata
        return (self.resource.kind, meta.namespace, meta.name)


@dataclass(frozen=True)
class BrokenDocument:
    """A document that failed to load; its identity, when readable, lets callers keep the last
    good version of that resource."""

    kind: str | None
    namespace: str | None
    name: str | None
    errors: tuple[ManifestError, ...]


@dataclass
class LoadResult:
    resources: list[LoadedResource] = field(default_factory=list)
    broken: list[BrokenDocument] = field(default_factory=list)

    @property
    def errors(self) -> list[ManifestError]:
        return [error for doc in self.broken for error in doc.errors]

    def extend(self, other: LoadResult) -> None:
        self.resources.extend(other.resources)
        self.broken.extend(other.broken)


class _TooLarge(Exception):
    pass


class _Plain:
    """Converts ruamel's round-trip nodes to plain data, recording the line of every field path."""

    def __init__(self) -> None:
        self.lines: dict[FieldPath, int] = {}
        self.nodes = 0

    def convert(self, value: Any, path: FieldPath = ()) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES_PER_DOCUMENT:
            raise _TooLarge
        if isinstance(value, CommentedMap):
            result: dict[Any, Any] = {}
            for key, item in value.items():
                child = (*path, str(key))
                with contextlib.suppress(KeyError, TypeError):
                    self.lines[child] = value.lc.key(key)[0] + 1
                result[key if isinstance(key, str) else str(key)] = self.convert(item, child)
            return result
        if isinstance(value, CommentedSeq):
            items = []
            for index, item in enumerate(value):
                child = (*path, index)
                with contextlib.suppress(KeyError, TypeError, IndexError):
                    self.lines[child] = value.lc.item(index)[0] + 1
                items.append(self.convert(item, child))
            return items
        if isinstance(value, str):
            return str(value)
        return value

    def line_of(self, path: FieldPath, fallback: int | None) -> int | None:
        """The line of the deepest recorded prefix of ``path``."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return fallback


def _format_path(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _yaml() -> YAML:
    # The round-trip loader keeps line numbers and, unlike the "unsafe" loader, never builds
    # Python objects from tags.
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    return yaml


def load_text(text: str, *, filename: str) -> LoadResult:
    """Load every resource in a multi-document YAML text."""
    result = LoadResult()
    stream = io.StringIO(text)
    documents: Iterator[Any] = _yaml().load_all(stream)
    index = 0
    while True:
        try:
            raw = next(documents)
        except StopIteration:
            break
        except YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            result.broken.append(
                BrokenDocument(None, None, None, (ManifestError(filename, line, "", f"invalid YAML: {problem}"),))
            )
            break  # the parser cannot resynchronise after a syntax error
        index += 1
        if raw is None:
            continue
        start_line = raw.lc.line + 1 if hasattr(raw, "lc") and raw.lc.line is not None else 1
        loaded = _load_document(raw, filename=filename, index=index, start_line=start_line)
        if isinstance(loaded, LoadedResource):
            result.resources.append(loaded)
        else:
            result.broken.append(loaded)
    return result


def _load_document(raw: Any, *, filename: str, index: int, start_line: int | None) -> LoadedResource | BrokenDocument:
    def broken(line: int | None, path: str, message: str, data: dict | None = None) -> BrokenDocument:
        meta = (data or {}).get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        name = meta.get("name") if isinstance(meta.get("name"), str) else None
        namespace = meta.get("namespace", "default") if name else None
        kind = (data or {}).get("kind")
        return BrokenDocument(
            kind if isinstance(kind, str) else None,
            namespace if isinstance(namespace, str) else None,
            name,
            (ManifestError(filename, line, path, message),),
        )

    plain = _Plain()
    try:
        data = plain.convert(raw)
    except _TooLarge:
        return broken(start_line, "", f"document expands to more than {MAX_NODES_PER_DOCUMENT} nodes (alias bomb?)")
    if not isinstance(data, dict):
        return broken(start_line, "", f"expected a mapping with apiVersion and kind, got {type(data).__name__}")
    kind = data.get("kind")
    if data.get("apiVersion") != API_VERSION:
        return broken(
            plain.line_of(("apiVersion",), start_line),
            "apiVersion",
            f"expected {API_VERSION!r}, got {data.get('apiVersion')!r}",
            data,
        )
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        return broken(
            plain.line_of(("kind",), start_line), "kind",
            f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}", data,
        )
    try:
        resource = model.model_validate(data)
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False):
            loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and part.startswith("function-")))
            # Model-level validators report with an empty tail; their location is the object itself.
            errors.append(
                ManifestError(filename, plain.line_of(loc, start_line), _format_path(loc), _describe(error))
            )
        first = broken(None, "", "", data)
        return BrokenDocument(first.kind, first.namespace, first.name, tuple(errors))
    return LoadedResource(resource, SourceLocation(filename, start_line, index))


# ObjectMeta fields the API server sets that the models do not carry; dropped before validation
# so an object read back from Kubernetes validates like the manifest it came from.
_SERVER_METADATA = ("managedFields", "selfLink", "ownerReferences", "deletionGracePeriodSeconds", "generateName")


def load_object(data: dict[str, Any], *, origin: str) -> LoadedResource | BrokenDocument:
    """One resource read from an API (Kubernetes), validated like a manifest document; errors
    name ``origin`` (e.g. "workflow default/plan") and the field, with no line. The object's
    status is not validated: it is the reconciler's own output."""
    document = {key: value for key, value in data.items() if key != "status"}
    metadata = document.get("metadata")
    if isinstance(metadata, dict):
        document["metadata"] = {k: v for k, v in metadata.items() if k not in _SERVER_METADATA}
    return _load_document(document, filename=origin, index=0, start_line=None)


def _describe(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        if error["loc"] and error["loc"][-1] in ("on", "true", True):
            # YAML 1.1 tools (kubectl) turn an "on" key into true, so the field is onFailures.
            return "unknown field; the failures a retry reacts to are listed in onFailures"
        return "unknown field"
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"] == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern")
        if pattern in PATTERN_HINTS:
            return f"{error['input']!r} is not valid: {PATTERN_HINTS[pattern]}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def load_file(path: Path, *, display: str | None = None) -> LoadResult:
    name = display or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return _single_error(name, f"file is {size} bytes; manifests are limited to {MAX_FILE_BYTES}")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return _single_error(name, "file is not UTF-8 text")
    except OSError as exc:
        return _single_error(name, f"cannot read: {exc.strerror or exc}")
    return load_text(text, filename=name)


def _single_error(filename: str, message: str) -> LoadResult:
    return LoadResult(broken=[BrokenDocument(None, None, None, (ManifestError(filename, None, "", message),))])


def manifest_files(root: Path) -> list[Path]:
    """YAML files under ``root`` in a stable order, skipping hidden files and folders."""
    if root.is_file():
        return [root]
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).parts
        if any(part.startswith(".") for part in relative):
            continue
        if path.is_file() and path.suffix in MANIFEST_SUFFIXES:
            found.append(path)
    return found


def load_paths(paths: Iterable[Path], *, relative_to: Path | None = None) -> LoadResult:
    """Load every manifest file under ``paths``; names in errors are relative to ``relative_to``."""
    result = LoadResult()
    for root in paths:
        if not root.exists():
            result.extend(_single_error(str(root), "no such file or directory"))
            continue
        for path in manifest_files(root):
            display = str(path)
            if relative_to is not None and path.is_relative_to(relative_to):
                display = str(path.relative_to(relative_to))
            result.extend(load_file(path, display=display))
    return result
