"""Only stream/runtime/ names a private attribute of Faust, aiokafka, mode or river (tests/private_names.py reads them)."""

from __future__ import annotations

import pytest
from support.private_names import ALLOWED, LIBRARIES, OURS, ROOT, library_private_names, uses

pytestmark = pytest.mark.unit


def test_the_scan_sees_a_private_name_where_it_is_used(tmp_path):
    names = library_private_names()
    assert {"_new_consumer", "_drain_messages", "_current_event", "_reset", "_unpack_records"} <= names
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from faust.streams import _current_event\n"
        "from river import drift\n"
        "class K(drift.KSWIN):\n"
        "    def _reset(self):\n"
        "        self._drift_detected = False\n"
        "def f(app):\n"
        "    return app._new_consumer\n"
    )
    assert [u.split(":")[0] for u in uses(sample, names)] == ["1", "4", "5", "7"]


def test_only_the_runtime_package_names_library_internals():
    names = library_private_names()
    offenders = {}
    for package in OURS:
        for path in sorted((ROOT / package).rglob("*.py")):
            if ALLOWED in path.parents:
                continue
            found = uses(path, names)
            if found:
                offenders[str(path.relative_to(ROOT))] = found
    assert not offenders, f"private names of {', '.join(LIBRARIES)} outside stream/runtime/: {offenders}"
