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

from stream import native, native_build

pytestmark = pytest.mark.unit

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A copy of the group's sources, with stand-ins for their extension modules and a fresh manifest."""
    for module in native.MODULES:
        source = native.source_path(module, tmp_path)
        source.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(native.source_path(module), source)
        source.with_suffix(SUFFIX).write_bytes(b"")
    hashes = {module: native.source_hash(native.source_path(module, tmp_path)) for module in native.MODULES}
    (tmp_path / native.MANIFEST).write_text(json.dumps({"python": "3", "sources": hashes}))
    return tmp_path


def test_a_group_built_from_its_sources_is_fresh(root):
    assert native.stale(root) == []


def test_a_changed_source_is_stale(root):
    with native.source_path("stream.drift.windows", root).open("a") as f:
        f.write("\n# changed\n")
    assert native.stale(root) == ["stream.drift.windows"]


@pytest.mark.parametrize("manifest", [None, "not json", '{"python": "3"}'])
def test_without_a_readable_manifest_every_compiled_module_is_stale(root, manifest):
    path = root / native.MANIFEST
    if manifest is None:
        path.unlink()
    else:
        path.write_text(manifest)
    assert native.stale(root) == list(native.MODULES)


def test_sources_alone_are_never_stale(root):
    for module in native.MODULES:
        native.compiled_path(module, root).unlink()
    (root / native.MANIFEST).unlink()
    assert native.stale(root) == []


def test_the_build_is_a_no_op_only_when_compiled_from_the_current_sources_for_this_python(root):
    manifest = json.loads((root / native.MANIFEST).read_text())
    (root / native.MANIFEST).write_text(json.dumps({**manifest, "python": sys.version.split()[0]}))
    assert native_build.up_to_date(root)
    (root / native.MANIFEST).write_text(json.dumps(manifest))  # built for another Python
    assert not native_build.up_to_date(root)


# Runs the per-event code over simulated events (with duplicates and invalid payloads) in
# batches: the featurize step, reading each state back from its table bytes, scoring with
# a model fitted on the first batches' vectors, and a drift window over the scores. Prints
# a digest of every output, with the modules this process ran compiled.
_RUN = """
import hashlib, json, random
import numpy as np
from prometheus_client import CollectorRegistry
from producers.simulator import SimConfig, Simulator
from schemas.events import dump_event
from schemas.features import FEATURE_NAMES
from stream.drift.windows import FeatureWindow
from stream.features import CustomerState, features
from stream.featurize import Featurizer
from stream.messages import Inbound
from stream.metrics import StreamMetrics
from stream.model_holder import LoadedModel, columns_to_frame
from stream.native import compiled_modules
from stream.scoring import Scorer
from training.config import ModelConfig
from training.model import build_pipeline
from training.reference import reference_distributions

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
metrics = StreamMetrics.create(CollectorRegistry())
featurizer, scorer = Featurizer(metrics, 100_000), Scorer(metrics)
table, model, window = {}, None, None
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
    if model is None:
        frame = columns_to_frame({name: [item.row[name] for item in result.scorable] for name in FEATURE_NAMES})
        labels = np.array(frame["support_calls_30d"] + frame["failed_payments_90d"] > 0, dtype=int)
        labels[:2] = [0, 1]
        model = LoadedModel("churn", "1", build_pipeline(ModelConfig(max_iter=200), 3).fit(frame, labels))
        window = FeatureWindow(reference_distributions(frame, scores=np.linspace(0.01, 0.99, len(frame))),
                               every_n=700)
    scored = scorer.score(result.scorable, model, now=1_800_000_000.0)
    digest.update(b"".join(out.value for out in scored.out) + repr(scored.latencies_ms).encode())
    for _, report in window.update_many(scored.rows, scored.probabilities, scored.event_s):
        digest.update(repr((report.start_ts, report.end_ts, sorted(report.psi.items()))).encode())
for key in sorted(table):
    state = CustomerState.from_bytes(table[key])
    digest.update(table[key] + features(state, state.last_ts + 86_400.0).model_dump_json().encode())
print(json.dumps({"digest": digest.hexdigest(), "states": len(table), "compiled": compiled_modules()}))
"""


def _run(pure: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    if pure:
        env[native.PURE_ENV] = "1"
    done = subprocess.run([sys.executable, "-c", _RUN], cwd=native.ROOT, env=env, capture_output=True, text=True,
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


@pytest.mark.parametrize("fresh", [False, True])
def test_a_stale_build_is_imported_from_its_source_and_a_fresh_one_is_not(tmp_path, fresh):
    """In a copy of the packages, an unloadable stand-in for the features extension: imported
    only when the manifest says it was built from the current source."""
    for package in ("stream", "schemas"):
        shutil.copytree(native.ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("*.so", "native.json", "__pycache__"))
    native.source_path("stream.features", tmp_path).with_suffix(SUFFIX).write_bytes(b"not an extension module")
    digest = native.source_hash(native.source_path("stream.features", tmp_path)) if fresh else "0" * 64
    (tmp_path / native.MANIFEST).write_text(json.dumps({"python": "3", "sources": {"stream.features": digest}}))
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    env["PYTHONPATH"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", "import stream.features as f; print(f.__file__)"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    if fresh:  # the stand-in is what Python tries to load
        assert done.returncode != 0 and "ImportError" in done.stderr
    else:
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == str(native.source_path("stream.features", tmp_path))
        assert "stream.features changed since compiled" in done.stderr
