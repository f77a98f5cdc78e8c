"""The pure core must stay pure: no process, network, Kubernetes, Git or filesystem watching."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "reconciler"
PURE_MODULES = [
    "api", "dag.py", "templates.py", "resolve.py", "manifests.py",
    "slurm/commands.py", "slurm/states.py", "slurm/tags.py", "slurm/script.py", "slurm/observation.py",
    "reconcile.py", "taskruns.py", "retry.py", "status.py", "fingerprint.py", "conditions.py", "indexranges.py",
    "desired.py", "plan.py", "observed.py", "views.py", "arrayoutcomes.py", "storedtext.py",
]
FORBIDDEN = {"subprocess", "paramiko", "kubernetes", "git", "watchfiles", "socket", "sqlite3",
             "reconciler.slurm.transport", "reconciler.slurm.ssh", "reconciler.slurm.client", "reconciler.store",
             "reconciler.controller", "reconciler.sources", "reconciler.kube"}


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved to absolute names."""
    package = ["reconciler", *path.relative_to(PACKAGE).parent.parts]
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join(filter(None, [*parent, base]))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def pure_files() -> list[Path]:
    files = []
    for entry in PURE_MODULES:
        target = PACKAGE / entry
        files.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    return files


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_core_imports_no_io_library(path: Path):
    bad = {name for name in imported_modules(path)
           if name.split(".")[0] in FORBIDDEN or any(name == f or name.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{path.name} imports {sorted(bad)}"
