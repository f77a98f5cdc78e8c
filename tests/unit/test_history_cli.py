"""``reconciler history`` on a store with runs: newest first, one kind, JSON, the fitted models."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from reconciler.cli.main import main
from reconciler.core.history import RunSample
from reconciler.store.database import Store
from reconciler.store.history import RecordedRun
from tests.unit.reconcile_world import T0

RUN = RunSample(kind="fdtd", workflow="default/plan", task="simulate", attempt=1, job_id="100", cluster="dev",
                partition="billed", nodes=1, cpus=4, memory_mib=1000.0, time_limit_seconds=3600, size_hint=2.0,
                state="COMPLETED", elements=1, elapsed_seconds=600.0, queue_wait_seconds=5.0, max_rss_mib=400.0,
                total_cpu_seconds=1200.0, billed_core_seconds=4800, finished_at=T0)


def stored(tmp_path: Path) -> Path:
    with Store(tmp_path / "state.db") as store:
        uid = store.upsert_workflow(namespace="default", name="plan", resource={"metadata": {"name": "plan"}},
                                    revision=None, source_file=None, now=T0).uid
        runs = [replace(RUN, job_id=str(100 + n), attempt=n + 1, cpus=2 ** n, elapsed_seconds=600.0 / 2 ** n,
                        finished_at=T0 + timedelta(minutes=n)) for n in range(3)]
        runs.append(replace(RUN, kind="prep", task="prep", job_id="200", finished_at=T0 - timedelta(hours=1)))
        store.record_runs([RecordedRun(uid=uid, fingerprint="fp", sample=run) for run in runs])
    return tmp_path


def test_lists_runs_newest_first_with_the_models(tmp_path: Path, capsys):
    state = stored(tmp_path)
    assert main(["history", "--state-dir", str(state)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["FINISHED", "KIND"]
    assert [line.split()[5] for line in lines[1:5]] == ["102", "101", "100", "200"]
    assert "dev/billed" in lines[1] and "1x4" in lines[1] and "1x1" in lines[3] and "200%" in lines[3]
    assert lines[1].split()[-1] == "1.3333"  # billed core-hours
    models = lines[lines.index("Models:") + 1:]
    assert models[0].startswith("  fdtd: run time (") and "from 3 runs" in models[0]
    assert models[1].startswith("  prep: run time: too few")


def test_one_kind_as_json(tmp_path: Path, capsys):
    state = stored(tmp_path)
    assert main(["history", "prep", "-o", "json", "--state-dir", str(state)]) == 0
    document = json.loads(capsys.readouterr().out)
    [run] = document["runs"]
    assert (run["kind"], run["jobId"], run["cpuEfficiency"], run["billedCoreSeconds"]) == ("prep", "200", 0.5, 4800)
    assert set(document["models"]) == {"prep"}
    assert main(["history", "--limit", "1", "-o", "json", "--state-dir", str(state)]) == 0
    assert [r["jobId"] for r in json.loads(capsys.readouterr().out)["runs"]] == ["102"]


def test_no_runs(tmp_path: Path, capsys):
    assert main(["history", "nothing", "--state-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "No runs of kind nothing.\n"
