"""The pure core must stay pure: no process, network, Kubernetes, Git or filesystem watching."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "reconciler"
PURE_MODULES = [
    "api", "dag.py", "templates.py", "resolve.py", "manifests.py",
    "slurm/commands.py", "slurm/states.py", "slurm/tags.py", "slurm/script.py", "slurm/observation.py",
]
FORBIDDEN = {"subprocess", "paramiko", "kubernetes", "git", "watchfiles", "socket", "reconciler.slurm.transport"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def pure_files() -> list[Path]:
    files = []
    for entry in PURE_MODULES:
        target = PACKAGE / entry
        files.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    return files


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_core_imports_no_io_library(path: Path):
    bad = {name for name in imported_modules(path) if name.split(".")[0] in FORBIDDEN or name in FORBIDDEN}
    assert not bad, f"{path.name} imports {sorted(bad)}"
