"""The Grafana dashboard the chart ships (charts/slurm-reconciler/dashboards): every PromQL query
names only metrics the loop's /metrics endpoint really exports, with labels those metrics carry.

The exported names are read from a scrape of a live registry after its code paths ran in-process:
ticks over in-memory edges (tests/fakes.py) with a failing command, a workflow waiting for a
person, core-hours billed and a retry. A metric the dashboard uses that none of these produced
fails the test too: a panel that can never show anything is a defect."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.api import FailureKind, TaskPhase, TaskStatus
from reconciler.api.workflow import Resources
from reconciler.core.observed import AttemptRecord, JobKey, JobOutcome
from reconciler.core.plan import Submit
from reconciler.engine.controller import Controller
from reconciler.engine.metrics import Metrics
from reconciler.slurm.transport import TransportError
from reconciler.store.database import Store
from tests.fakes import FakeSlurm, LoginNodes, MemorySource

DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "slurm-reconciler" / "dashboards" / "slurm-reconciler.json"

PLANS = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {name: a}
spec: {workdir: /work/a}
---
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {name: b}
spec: {workdir: /work/b}
---
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: one, labels: {team: optics}}
spec:
  cluster: a
  defaults: {resources: {partition: debug}}
  tasks:
    - {name: step, script: "echo one"}
---
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: review}
spec:
  cluster: a
  tasks:
    - {name: check, type: approval}
---
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata: {name: far}
spec:
  cluster: b
  tasks:
    - {name: step, script: "echo far"}
"""

# PromQL's own words: functions, aggregations and keywords.
PROMQL = {"sum", "max", "min", "avg", "count", "rate", "increase", "histogram_quantile", "vector", "by", "without",
          "or", "and", "unless", "on", "ignoring", "label_values", "topk", "bottomk", "clamp_min"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Every sample name a scrape shows after the code paths ran, with the labels it carries."""
    tmp_path = tmp_path_factory.mktemp("dashboard")
    metrics = Metrics(group_label="team")
    nodes = LoginNodes({"/work/a": FakeSlurm("login-a"), "/work/b": FakeSlurm("login-b", first_job_id=500)})
    nodes["/work/b"].fail("squeue", TransportError("connection reset"))
    with Store(tmp_path / "state.db") as store:
        Controller(source=MemorySource(PLANS), store=store, state_dir=tmp_path, interval=30.0, connect=nodes,
                   metrics=metrics).tick()
        # What a finished attempt leaves: billed core-hours, and a retry of a timed-out one.
        one = store.workflow("default", "one")
        assert one is not None and one.status is not None
        billed = one.status.model_copy(update={"tasks": {
            "step": TaskStatus(phase=TaskPhase.SUCCEEDED, billed_core_seconds=3600)}})
        metrics.tick(seconds=0.01, events={}, workflows=[dataclasses.replace(w, status=billed) if w.uid == one.uid
                                                          else w for w in store.active_workflows()])
    failed = AttemptRecord(key=JobKey("step", 1), fingerprint="f", indices=None, job_id="1", recorded_at=one.created_at,
                           outcome=JobOutcome(phase=TaskPhase.FAILED, failure=FailureKind.TIMEOUT))
    metrics.submitted("a", [Submit(uid=one.uid, key=JobKey("step", 2), fingerprint="f", resources=Resources(),
                                   indices=None, parallelism=None)], attempts=lambda uid: [failed])
    scrape = generate_latest(metrics.registry).decode()
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(scrape):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", variable["query"]["query"]


def parts(expr: str) -> tuple[set[str], set[str]]:
    """The metric names a query reads and the label names it uses (in matchers, by (...), and
    label_values)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values say nothing about names
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors: [5m]
    labels = set()
    for matchers in re.findall(r"\{([^}]*)\}", text):
        labels |= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
    text = re.sub(r"\{[^}]*\}", "", text)
    for grouping in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", text):
        labels |= {word.strip() for word in grouping.split(",") if word.strip()}
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)
    variable = re.match(r"\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)", text)
    if variable:
        return {variable.group(1)}, {variable.group(2)}
    words = set(re.findall(r"(?<![\w$.])[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    return words - PROMQL, labels


def test_the_dashboard_has_panels_for_every_part_of_the_loop():
    titles = " ".join(panel["title"].lower() for panel in json.loads(DASHBOARD.read_text())["panels"])
    for topic in ("phase", "submissions", "retries", "latency", "errors", "tick", "queue", "core-hours",
                  "observation", "attention"):
        assert topic in titles, topic
    assert sum(1 for _ in queries()) >= 15


@pytest.mark.parametrize(("where", "expr"), list(queries()))
def test_every_query_names_metrics_the_endpoint_exports(where: str, expr: str, exported: dict[str, set[str]]):
    metrics, labels = parts(expr)
    assert metrics, f"{where}: no metric in {expr!r}"
    unknown = sorted(metrics - exported.keys())
    assert not unknown, f"{where}: {unknown} not exported (exported: {sorted(exported)})"
    carried = set().union(*(exported[name] for name in metrics))
    missing = sorted(labels - carried - {"le"} if any(n.endswith("_bucket") for n in metrics) else labels - carried)
    assert not missing, f"{where}: labels {missing} are on none of {sorted(metrics)}"


def test_the_checker_catches_a_misspelt_metric_and_label(exported: dict[str, set[str]]):
    metrics, labels = parts('sum by (clustr) (rate(reconciler_submision_total{cluster=~"$cluster"}[5m]))')
    assert metrics == {"reconciler_submision_total"} and labels == {"clustr", "cluster"}
    assert "reconciler_submision_total" not in exported
    assert "clustr" not in exported["reconciler_submissions_total"]
