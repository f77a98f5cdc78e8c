"""The command line as a user types it: validate and render on the shipped examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.core.fingerprint import fingerprints
from reconciler.manifests.loader import load_paths
from reconciler.manifests.resolve import resolve

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLUSTER = """\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: SlurmCluster
metadata: {name: hpc}
spec: {workdir: /scratch/plans}
"""


@pytest.fixture
def plans(tmp_path: Path) -> Path:
    for example in EXAMPLES.glob("*.yaml"):
        (tmp_path / example.name).write_text(example.read_text())
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    return tmp_path


def test_validate_accepts_the_examples(capsys):
    assert main(["validate", str(EXAMPLES)]) == 0
    out = capsys.readouterr().out
    assert "ok  workflow default/ultrasound-plan: 3 tasks (3 jobs), order preprocess -> simulate -> postprocess" in out
    assert "ok  workflow default/slide-2231: 4 tasks (3 jobs)" in out


def test_validate_names_file_line_and_field_of_every_error(tmp_path: Path, capsys):
    (tmp_path / "bad.yaml").write_text((EXAMPLES / "ultrasound-plan.yaml").read_text()
                                       .replace("time: \"00:10:00\"", "time: soon"))
    assert main(["validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'bad.yaml'}:30: spec.tasks[1].resources.time:" in err, err


def fingerprint_of(source: Path, workflow: str, task: str) -> str:
    """The task's fingerprint as the planner would tag its job, from the manifests themselves."""
    resolution = resolve(load_paths([source]).resources, require_cluster=True)
    [resolved] = [r for r in resolution.workflows if r.workflow.metadata.name == workflow]
    return fingerprints(resolved.graph)[task]


def test_render_prints_the_exact_script_with_every_resource(plans: Path, capsys):
    fingerprint = fingerprint_of(plans, "ultrasound-plan", "simulate")
    assert len(fingerprint) == 16
    assert main(["render", "ultrasound-plan", "simulate", "--source", str(plans), "--after", "41"]) == 0
    script = capsys.readouterr().out
    header = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert header == [
        "#SBATCH --job-name=ultrasound-plan.simulate",
        f"#SBATCH --comment=slurm-reconciler.v1:preview:simulate:1:0:{fingerprint}",
        "#SBATCH --chdir=/scratch/plans/default/ultrasound-plan/simulate",
        "#SBATCH --output=/scratch/plans/default/ultrasound-plan/.reconciler/logs/simulate.a1.%j.out",
        "#SBATCH --error=/scratch/plans/default/ultrasound-plan/.reconciler/logs/simulate.a1.%j.err",
        "#SBATCH --partition=debug",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=100M",
        "#SBATCH --time=00:10:00",
        "#SBATCH --dependency=afterok:41",
        "#SBATCH --kill-on-invalid-dep=yes",
    ]
    assert "export PLAN_ID=p-0042" in script


def test_render_of_an_array_uses_slurms_array_and_parallelism(plans: Path, capsys):
    example = (plans / "tile-mosaic.yaml").read_text()
    static = example.replace("itemsFrom: {task: tile, file: tiles.txt}", 'count: "{{ params.tiles }}"')
    assert static != example
    (plans / "tile-mosaic.yaml").write_text(static)
    assert main(["render", "slide-2231", "process-tiles", "--source", str(plans)]) == 0
    assert "#SBATCH --array=0-99%25" in capsys.readouterr().out


def test_render_of_an_array_sized_at_run_time_says_when_its_script_exists(plans: Path, capsys):
    assert main(["render", "slide-2231", "process-tiles", "--source", str(plans)]) == 1
    assert "is sized at run time by tiles.txt of task tile" in capsys.readouterr().err


def test_render_refuses_an_approval_step(plans: Path, capsys):
    assert main(["render", "slide-2231", "review", "--source", str(plans)]) == 1
    assert "its jobs: tile, process-tiles, compose" in capsys.readouterr().err


def test_render_of_a_task_with_auto_resources_uses_the_declared_defaults_and_says_so(plans: Path, capsys):
    second = CLUSTER.replace("name: hpc", "name: hpc2").replace("/scratch/plans", "/scratch/two")
    (plans / "cluster2.yaml").write_text(second)
    sweep = (plans / "kwave-sweep.yaml").read_text().replace("spec:\n", "spec:\n  cluster: [hpc, hpc2]\n", 1)
    (plans / "kwave-sweep.yaml").write_text(sweep)
    assert main(["render", "kwave-sweep", "simulate", "--source", str(plans)]) == 0
    captured = capsys.readouterr()
    header = [line for line in captured.out.splitlines() if line.startswith("#SBATCH")]
    assert "#SBATCH --time=00:05:00" in header and not any("cpus-per-task" in line for line in header)
    assert "#SBATCH --chdir=/scratch/plans/default/kwave-sweep/simulate" in header
    assert "cpus, time of simulate are auto" in captured.err
    assert "names candidate clusters; using the first, hpc" in captured.err
