"""Outside programs some tests run (Prometheus' ``promtool`` and ``prometheus``): found, or the test says why not."""

from __future__ import annotations

import os
import shutil

import pytest

PROMETHEUS_HINT = "make test-tools installs Debian's prometheus"


def require_tool(name: str, hint: str = PROMETHEUS_HINT) -> str:
    """The path of program ``name``; when it is missing, skip the test, or fail it under ``CI=true``, in one line."""
    path = shutil.which(name)
    if path is None:
        why = f"{name} not installed: {hint}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    return path
