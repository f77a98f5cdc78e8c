"""Log lines: JSON objects (or text) that carry the cluster, workflow, task, job id and revision
the loop was working on, whichever module logged them; and the options that choose them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli.logformat import JsonFormatter, LogFormat, TextFormatter, chosen_format
from reconciler.cli.main import build_parser
from reconciler.engine.controller import Controller
from reconciler.engine.logcontext import ContextFilter, log_context
from reconciler.sources.base import Snapshot
from reconciler.store.database import Store
from tests.fakes import FakeSlurm, LoginNodes, MemorySource

PLANS = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {name: a}
spec: {workdir: /work/a}
---
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: one}
spec:
  cluster: a
  tasks:
    - {name: step, script: "echo one"}
"""


class RevisedSource(MemorySource):
    """Manifests as a Git source reads them: at a revision."""

    def read(self) -> Snapshot:
        return Snapshot(load=super().read().load, revision="4f2a9c1e", files=("plans.yaml",))


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """What the package's loggers write through a JSON handler, as the CLI installs it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("reconciler")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_line_of_a_tick_names_what_the_loop_worked_on(tmp_path: Path, captured: io.StringIO):
    nodes = LoginNodes({"/work/a": FakeSlurm("login-a", first_job_id=700)})
    with Store(tmp_path / "state.db") as store:
        Controller(source=RevisedSource(PLANS), store=store, state_dir=tmp_path, interval=30.0, connect=nodes).tick()

    submitted = [line for line in lines(captured) if line["message"].startswith("submitted one.step")]
    assert len(submitted) == 1, lines(captured)
    line = submitted[0]
    assert {k: line[k] for k in ("cluster", "workflow", "task", "job_id", "revision")} == {
        "cluster": "a", "workflow": "default/one", "task": "step", "job_id": "700", "revision": "4f2a9c1e"}
    assert line["level"] == "INFO" and line["logger"] == "reconciler.slurm.client"
    assert line["time"].endswith("Z")


def test_a_json_line_holds_the_context_extras_and_the_traceback(captured: io.StringIO):
    log = logging.getLogger("reconciler.test")
    with log_context(workflow="default/tile", task="review"):
        with log_context(job_id="42"):
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                log.exception("it broke: %s", "badly", extra={"attempt": 2})
        log.warning("after \"the\" job")
    log.info("outside")

    broke, after, outside = lines(captured)
    assert broke["message"] == "it broke: badly" and broke["attempt"] == 2
    assert (broke["workflow"], broke["task"], broke["job_id"]) == ("default/tile", "review", "42")
    assert "RuntimeError: boom" in broke["exception"]
    assert after["message"] == 'after "the" job' and "job_id" not in after and after["task"] == "review"
    assert not {"workflow", "task", "job_id"} & outside.keys()


def test_the_text_line_shows_the_context_after_the_message():
    record = logging.LogRecord("reconciler.x", logging.WARNING, __file__, 1, "cannot %s", ("observe",), None)
    with log_context(cluster="hpc1", workflow="default/one"):
        ContextFilter().filter(record)
    text = TextFormatter().format(record)
    assert text.endswith(" WARNING reconciler.x: cannot observe [cluster=hpc1 workflow=default/one]")


def test_auto_is_json_unless_stderr_is_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert chosen_format(LogFormat.AUTO, io.StringIO()) is LogFormat.JSON
    assert chosen_format(LogFormat.AUTO, Terminal()) is LogFormat.TEXT
    assert chosen_format(LogFormat.JSON, Terminal()) is LogFormat.JSON
    assert chosen_format(LogFormat.TEXT, io.StringIO()) is LogFormat.TEXT


def test_log_options_default_to_the_environment_and_apply_to_every_command(monkeypatch):
    monkeypatch.setenv("RECONCILER_LOG_LEVEL", "warning")
    monkeypatch.delenv("RECONCILER_LOG_FORMAT", raising=False)
    args = build_parser().parse_args(["run", "--source", "plans"])
    assert (args.log_level, args.log_format) == ("WARNING", LogFormat.AUTO)
    args = build_parser().parse_args(["operator", "--log-format", "text", "--log-level", "debug"])
    assert (args.log_level, args.log_format) == ("DEBUG", LogFormat.TEXT)
    monkeypatch.setenv("RECONCILER_LOG_FORMAT", "json")
    assert build_parser().parse_args(["validate", "x.yaml"]).log_format is LogFormat.JSON
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--source", "plans", "--log-format", "xml"])


def test_the_metrics_address_is_loopback_for_run_and_every_interface_for_the_operator():
    assert build_parser().parse_args(["run", "--source", "p", "--metrics-port", "0"]).metrics_address == "127.0.0.1"
    assert build_parser().parse_args(["operator", "--metrics-port", "8080"]).metrics_address == "0.0.0.0"
