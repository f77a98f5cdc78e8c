"""The resilience scenarios' fixtures, and the table scripts/resilience ends with: each scenario
records its key figures with ``record_property`` (jobs accounted against jobs expected, how long
the fault lasted, what status said meanwhile) and the table lists them with the verdict.

Every fixture that takes a daemon of the shared dev cluster away starts it again in its teardown,
so a scenario that fails never leaves the cluster down."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.devcluster import DevCluster
from tests.integration.gitops_world import Loop, PlanRepo, gitops_world

COLUMNS = (("scenario", None), ("verdict", None), ("took", None), ("jobs accounted / expected", "jobs"),
           ("fault lasted", "fault"), ("status meanwhile", "meanwhile"))


@pytest.fixture
def stopped_daemons(dev_cluster: DevCluster) -> Iterator[Callable[[str], None]]:
    """``stop(name)``: takes one of the dev cluster's daemons away; every daemon stopped this way
    runs again after the test, whatever its outcome."""
    stopped: list[str] = []

    def stop(name: str) -> None:
        stopped.append(name)
        dev_cluster.stop(name)

    yield stop
    for name in stopped:
        dev_cluster.start(name)


@pytest.fixture
def local_loop(tmp_path: Path, dev_cluster: DevCluster) -> Iterator[tuple[PlanRepo, Loop]]:
    repo, loop, _ = gitops_world("local", tmp_path, dev_cluster, interval=0.5)
    yield repo, loop
    loop.stop()


@pytest.fixture
def ssh_loop(tmp_path: Path, dev_cluster: DevCluster) -> Iterator[tuple[PlanRepo, Loop]]:
    repo, loop, _ = gitops_world("ssh", tmp_path, dev_cluster, interval=0.5)
    yield repo, loop
    loop.stop()


REPORTS: list[pytest.TestReport] = []  # the scenarios' outcomes, in the order they ran


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "tests/resilience/" in report.nodeid and (report.when == "call" or report.failed):
        REPORTS.append(report)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows = []
    for report in REPORTS:
        facts = dict(report.user_properties)
        scenario = report.nodeid.split("::", 1)[1].removeprefix("test_").replace("_", " ")
        took = f"{report.duration:.0f} s" if report.when == "call" else "-"
        verdict = "held" if report.passed else "skipped" if report.skipped else "FAILED"
        rows.append([scenario, verdict, took, *(str(facts.get(key, "-")) for _, key in COLUMNS[3:])])
    if not rows:
        return
    header = [title for title, _ in COLUMNS]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    terminalreporter.section("resilience")
    for row in (header, ["-" * width for width in widths], *rows):
        terminalreporter.write_line(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
