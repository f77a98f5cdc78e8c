"""``reconciler run`` on a folder starts without what it does not use: GitPython and the dashboard
are imported only for a Git source or a dashboard (each costs tens of milliseconds of every start)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, sys
from reconciler.cli.main import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "loaded": sorted({m.split(".")[0] for m in sys.modules} & {"git"})
                  + sorted(m for m in sys.modules if m.startswith("reconciler.dashboard"))}))
"""


def loaded_by_run(*args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", PROBE, "run", "--once", *args], capture_output=True, text=True,
                          timeout=60, check=True)
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_a_folder_source_loads_neither_gitpython_nor_the_dashboard(tmp_path: Path):
    (tmp_path / "plans").mkdir()
    result = loaded_by_run("--source", str(tmp_path / "plans"), "--state-dir", str(tmp_path / "state"))
    assert result == {"code": 0, "loaded": []}


def test_a_git_source_loads_gitpython(tmp_path: Path):
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "plans.git")], check=True)
    result = loaded_by_run("--source", f"file://{tmp_path / 'plans.git'}", "--state-dir", str(tmp_path / "state"))
    assert "git" in result["loaded"]  # type: ignore[operator]
