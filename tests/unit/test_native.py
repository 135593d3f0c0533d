"""The compiled feature code: used only while fresh, and the same outputs as the Python it was built from."""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stream import native

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the group's sources, with stand-ins for their extension modules and a fresh manifest."""
    for name in native.MODULES:
        shutil.copy(ROOT / "stream" / f"{name}.py", tmp_path / f"{name}.py")
        (tmp_path / f"{name}{SUFFIX}").write_bytes(b"")
    hashes = {name: native.source_hash(tmp_path / f"{name}.py") for name in native.MODULES}
    (tmp_path / native.MANIFEST.name).write_text(json.dumps({"python": "3", "sources": hashes}))
    return tmp_path


def test_a_group_built_from_its_sources_is_fresh(folder):
    assert native.stale(folder) == []


def test_a_changed_source_is_stale(folder):
    with (folder / "featurize.py").open("a") as f:
        f.write("\n# changed\n")
    assert native.stale(folder) == ["featurize"]


@pytest.mark.parametrize("manifest", [None, "not json", '{"python": "3"}'])
def test_without_a_readable_manifest_every_compiled_module_is_stale(folder, manifest):
    path = folder / native.MANIFEST.name
    if manifest is None:
        path.unlink()
    else:
        path.write_text(manifest)
    assert native.stale(folder) == list(native.MODULES)


def test_sources_alone_are_never_stale(folder):
    for name in native.MODULES:
        (folder / f"{name}{SUFFIX}").unlink()
    (folder / native.MANIFEST.name).unlink()
    assert native.stale(folder) == []


# Runs the featurize step over simulated events (with duplicates and invalid payloads) in
# batches, reading each state back from its table bytes, and prints a digest of every
# output with the modules this process ran compiled.
_RUN = """
import hashlib, json, random, sys
from producers.simulator import SimConfig, Simulator
from schemas.events import dump_event
from stream.features import CustomerState, features
from stream.featurize import Featurizer
from stream.messages import Inbound
from stream.metrics import StreamMetrics
from stream.native import compiled_modules
from prometheus_client import CollectorRegistry

rng = random.Random(5)
sim = Simulator(SimConfig(n_customers=300, days=200, seed=11))
raw = []
for i, event in enumerate(sim.events()):
    raw.append((event.customer_id.encode(), dump_event(event)))
    if rng.random() < 0.03:
        raw.append(raw[rng.randrange(len(raw))])  # a duplicate, maybe much later
    if rng.random() < 0.01:
        raw.append((event.customer_id.encode(), b'{"event_type": "usage", "amount": -1}'))
    if len(raw) >= 12000:
        break
messages = [Inbound(k, v, "account-events", 0, i, 1_700_000_000_000 + i, []) for i, (k, v) in enumerate(raw)]
featurizer = Featurizer(StreamMetrics.create(CollectorRegistry()), 100_000)
table = {}
digest = hashlib.sha256()
for start in range(0, len(messages), 250):
    result = featurizer.process(messages[start:start + 250],
                                lambda key: CustomerState.from_bytes(table[key]) if key in table else None)
    for out in result.out:
        headers = [(k, v) for k, v in (out.headers or []) if k != "time"]
        digest.update(repr((out.topic, out.key, out.value, headers)).encode())
    for item in result.scorable:
        digest.update(repr((item.key, sorted(item.row.items()), item.start_ms, item.event_s)).encode())
    table.update(result.encoded)
for key in sorted(table):
    state = CustomerState.from_bytes(table[key])
    digest.update(table[key] + features(state, state.last_ts + 86_400.0).model_dump_json().encode())
print(json.dumps({"digest": digest.hexdigest(), "states": len(table), "compiled": compiled_modules()}))
"""


def _run(pure: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    if pure:
        env[native.PURE_ENV] = "1"
    done = subprocess.run([sys.executable, "-c", _RUN], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_compiled_and_python_feature_code_give_the_same_outputs():
    compiled = _run(pure=False)
    if not compiled["compiled"]:
        pytest.skip("the feature code is not compiled here (make builds it; see build/native.log)")
    python = _run(pure=True)
    assert python["compiled"] == []
    assert compiled["compiled"] == list(native.MODULES)
    assert compiled["states"] == python["states"] > 250
    assert compiled["digest"] == python["digest"]
