"""Code health the reviewers would otherwise check by eye: every function of the pure core stays
small enough to follow (radon's cyclomatic complexity), and ruff finds nothing in the tree."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from radon.complexity import cc_visit
from radon.visitors import Class, Function

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "reconciler" / "core"
# A function of the core that needs more branches than this wants to be several named steps.
MAX_COMPLEXITY = 15


def _functions(blocks: Iterable[Function | Class], *, within: str = "") -> Iterator[tuple[str, Function]]:
    """Every function, method, nested function and method of a nested class, with its dotted name."""
    for block in blocks:
        if isinstance(block, Class):
            yield from _functions([*block.methods, *block.inner_classes], within=f"{within}{block.name}.")
        else:
            yield f"{within}{block.name}", block
            yield from _functions(block.closures, within=f"{within}{block.name}.")


def _measure(path: Path) -> dict[tuple[int, int], tuple[str, int]]:
    """(line, column) -> (name, complexity) for each function in ``path``; radon reports a method
    both on its own and inside its class, so keying by position counts it once."""
    blocks = [block for block in cc_visit(path.read_text()) if isinstance(block, Class) or not block.is_method]
    return {(function.lineno, function.col_offset): (name, function.complexity)
            for name, function in _functions(blocks)}


def test_the_measure_sees_methods_nested_functions_and_branches(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "class Budget:\n"
        "    def admit(self, n):\n"
        "        def fits(k):\n"
        "            return k if k > 0 else 0\n"
        "        return fits(n) if n else None\n"
        "def plain():\n"
        "    return 1\n"
    )
    assert sorted(_measure(sample).values()) == [("Budget.admit", 2), ("Budget.admit.fits", 2), ("plain", 1)]


def test_no_function_of_the_pure_core_is_too_complex():
    measured = {path: _measure(path) for path in sorted(CORE.rglob("*.py"))}
    names = {name for functions in measured.values() for name, _ in functions.values()}
    assert {"plan_cluster", "CapacityBudget.admit"} <= names, "the measure missed the planner"
    too_complex = [
        f"{path.relative_to(ROOT)}:{line} {name} has complexity {complexity}"
        for path, functions in measured.items()
        for (line, _), (name, complexity) in sorted(functions.items())
        if complexity > MAX_COMPLEXITY
    ]
    assert not too_complex, f"above {MAX_COMPLEXITY}, split into named steps:\n" + "\n".join(too_complex)


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run([str(ruff), "check", "reconciler", "tests", "benchmarks"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
