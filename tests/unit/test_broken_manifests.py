"""Generated broken manifests: each yields errors naming its file, a line inside it and what is
wrong, never an exception, and never a runnable workflow."""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

from hypothesis import given, settings

from reconciler.engine.controller import Controller
from reconciler.manifests.loader import ManifestError, load_text
from reconciler.manifests.resolve import resolve
from reconciler.store.database import Store
from tests.broken_manifests import BrokenManifest, broken_manifests, good_workflow, sample
from tests.fakes import LoginNodes, MemorySource

FILE = "plans/broken.yaml"


def _problems(text: str) -> tuple[list[ManifestError], int]:
    """Every error of loading and resolving ``text``, and how many workflows would run."""
    loaded = load_text(text, filename=FILE)
    resolution = resolve(loaded.resources, require_cluster=False)
    errors = [*loaded.errors, *resolution.errors, *(e for item in resolution.invalid for e in item.errors)]
    return errors, len(resolution.workflows)


@settings(max_examples=200, deadline=None)
@given(broken_manifests())
def test_a_broken_manifest_gets_errors_with_file_line_and_message(manifest: BrokenManifest) -> None:
    text = manifest.render("broken-one")
    errors, runnable = _problems(text)
    assert errors, f"{manifest.kind}: nothing reported for\n{text}"
    assert runnable == 0
    lines = text.count("\n") + 1
    for error in errors:
        assert error.file == FILE
        assert error.line is not None and 1 <= error.line <= lines, (str(error), text)
        assert error.message.strip() and "Traceback" not in error.message
        assert str(error).startswith(f"{FILE}:{error.line}: ")


def test_the_good_manifests_they_are_mixed_with_are_good() -> None:
    errors, runnable = _problems(good_workflow("good-one", tasks=3))
    assert (errors, runnable) == ([], 1)


def test_a_sample_for_a_folder_is_the_same_each_time_and_covers_every_kind() -> None:
    first = sample(60)
    assert [m.template for m in first] == [m.template for m in sample(60)]
    assert len(first) == 60
    assert {m.kind for m in first} >= {"invalid YAML", "unknown field", "wrong type", "bad dependsOn"}


@settings(max_examples=25, deadline=None)
@given(manifest=broken_manifests())
def test_the_loop_names_every_broken_manifest_with_its_line(manifest: BrokenManifest) -> None:
    """Whether or not the workflow was ever good, and whether or not its name can be read."""
    source = MemorySource(manifest.render("broken-one"))
    with tempfile.TemporaryDirectory() as state, Store(Path(state) / "state.db") as store:
        handler = _Lines()
        logging.getLogger("reconciler").addHandler(handler)
        try:
            Controller(source=source, store=store, state_dir=Path(state), interval=1.0, connect=LoginNodes({})).tick()
        finally:
            logging.getLogger("reconciler").removeHandler(handler)
    assert any(re.match(r"plans\.yaml:\d+: ", line) for line in handler.lines), handler.lines


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
