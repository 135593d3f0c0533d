"""The worker's per-event feature code compiled to C with mypyc, when it can be.

``stream/features.py`` and ``stream/featurize.py`` run for every event: validation
aside, they were about a third of a busy worker's time. mypyc compiles them, as they
are, into extension modules that sit beside the sources and that Python imports
instead of them; the same code then takes about three quarters of the time
(Featurizer.process: 15 µs per event against 20 µs). Nothing else changes:
the modules keep their names, functions and classes, and run as Python wherever no
compiled build is present (another Python version, no C compiler).

``python -m stream.native_build`` (run by ``make``) builds them and records the hash of
each source it compiled in ``stream/native.json``. A compiled module is only used
while its source is the one it was built from: once either source has changed, both
are imported as Python again (the compiled modules call each other directly, so the
group is fresh or not as a whole) and a warning says to rebuild. ``CHURN_PURE_PYTHON=1``
imports them as Python regardless (full tracebacks, a debugger's breakpoints).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
MODULES = ("features", "featurize")  # compiled together, in one mypyc group
GROUP = "stream.native_rt"  # mypyc's shared runtime library: stream/native_rt__mypyc.*.so
MANIFEST = PACKAGE_DIR / "native.json"
PURE_ENV = "CHURN_PURE_PYTHON"

def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compiled_path(name: str, folder: Path = PACKAGE_DIR) -> Path | None:
    """The extension module that Python would import for ``stream.<name>``, if there is one."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = folder / f"{name}{suffix}"
        if path.exists():
            return path
    return None


def stale(folder: Path = PACKAGE_DIR, manifest: Path | None = None) -> list[str]:
    """The compiled modules that must not be used: their source differs from the one compiled.

    Empty when every module is compiled and fresh, or none is compiled. A compiled module
    missing from the manifest, or a manifest that cannot be read, counts as stale.
    """
    present = [name for name in MODULES if compiled_path(name, folder) is not None]
    if not present:
        return []
    try:
        recorded = json.loads((manifest or folder / MANIFEST.name).read_text())["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        return present
    return [name for name in present if recorded.get(name) != source_hash(folder / f"{name}.py")]


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Imports the group's modules from their ``.py`` files when the compiled ones must not be used."""

    def __init__(self) -> None:
        self._decided: bool | None = None

    def _use_sources(self) -> bool:
        if self._decided is None:
            if os.environ.get(PURE_ENV, "") not in ("", "0"):
                self._decided = True
            else:
                changed = stale()
                if changed:
                    log.warning("stream/%s.py changed since it was compiled: running the feature code as Python "
                                "(`make` or `python -m stream.native_build` compiles it again)",
                                ".py, stream/".join(changed))
                self._decided = bool(changed)
        return self._decided

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != "stream" or name not in MODULES or not self._use_sources():
            return None
        return importlib.util.spec_from_file_location(fullname, PACKAGE_DIR / f"{name}.py")


def install_finder() -> None:
    """Put the source finder first on ``sys.meta_path`` (once); called when ``stream`` is imported."""
    if not any(isinstance(finder, _SourceFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder())


def status() -> dict[str, bool]:
    """Whether each module of the group was imported compiled (only modules already imported)."""
    out = {}
    for name in MODULES:
        module = sys.modules.get(f"stream.{name}")
        if module is not None:
            out[name] = not str(getattr(module, "__file__", "")).endswith(".py")
    return out


def compiled_modules() -> list[str]:
    """The group's modules as this process runs them compiled (importing them if need be)."""
    for name in MODULES:
        importlib.import_module(f"stream.{name}")
    return [name for name, compiled in status().items() if compiled]
