"""The package stays mypy-clean under the settings in pyproject.toml ([tool.mypy]).

Runs mypy in this process, on reconciler/ only. Its cache (.mypy_cache at the repository root)
makes later runs take well under a second; a cold run takes a few seconds.
"""

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api", reason="mypy is not installed (pip install -e '.[test]')")

ROOT = Path(__file__).resolve().parents[2]


def test_reconciler_package_type_checks():
    stdout, stderr, status = mypy_api.run([
        "--config-file", str(ROOT / "pyproject.toml"),
        "--cache-dir", str(ROOT / ".mypy_cache"),
        "--no-error-summary",
        str(ROOT / "reconciler"),
    ])
    assert status == 0, f"mypy found problems in reconciler/:\n{stdout}{stderr}"
