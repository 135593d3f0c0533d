"""The worker's per-event code compiled to C with mypyc, when it can be.

The modules of :data:`MODULES` run for every event: validation aside, the feature code
alone was about a third of a busy worker's time. mypyc compiles them, as they are,
into extension modules that sit beside the sources and that Python imports instead of
them (``Featurizer.process`` then takes 15 instead of 20 µs per event). Nothing else
changes: the modules keep their names, functions and classes, and run as Python
wherever no compiled build is present (another Python version, no C compiler). A
compiled class cannot be subclassed by Python code, and compiled code checks the
annotated types of what it is given: both are why only these small, typed modules are
compiled, and not the modules that drive Faust.

``python -m stream.native_build`` (``make native``, opt-in) builds them and records the hash of
each source it compiled in ``stream/native.json``. A compiled module is only used
while its source is the one it was built from: once any source has changed, every
module of the group is imported as Python again (compiled modules call each other
directly, so the group is fresh or not as a whole) and a warning says to rebuild.
``CHURN_PURE_PYTHON=1`` imports them as Python regardless (full tracebacks, a
debugger's breakpoints).
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

ROOT = Path(__file__).resolve().parent.parent  # the folder that holds the stream package
#: Compiled together, as one mypyc group.
MODULES = (
    "stream.features",
    "stream.featurize",
    "stream.scoring",
    "stream.json_bytes",
    "stream.messages",
    "stream.state_cache",
    "stream.drift.windows",
)
GROUP = "stream.native_rt"  # mypyc's shared runtime library: stream/native_rt__mypyc.*.so
MANIFEST = "stream/native.json"
PURE_ENV = "CHURN_PURE_PYTHON"


def source_path(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compiled_path(module: str, root: Path = ROOT) -> Path | None:
    """The extension module that Python would import for ``module``, if there is one."""
    source = source_path(module, root)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = source.with_suffix(suffix)
        if path.exists():
            return path
    return None


def stale(root: Path = ROOT) -> list[str]:
    """The compiled modules that must not be used: their source differs from the one compiled.

    Empty when every module is compiled and fresh, or none is compiled. A compiled module
    missing from the manifest, or a manifest that cannot be read, counts as stale.
    """
    present = [module for module in MODULES if compiled_path(module, root) is not None]
    if not present:
        return []
    try:
        recorded = json.loads((root / MANIFEST).read_text())["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        return present
    return [module for module in present if recorded.get(module) != source_hash(source_path(module, root))]


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
                    log.warning("%s changed since compiled: the per-event code runs as Python "
                                "(`make` or `python -m stream.native_build` compiles it again)", ", ".join(changed))
                self._decided = bool(changed)
        return self._decided

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MODULES or not self._use_sources():
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname))


def compiled_present(root: Path = ROOT) -> bool:
    """True when any module of the group has a compiled build beside its source."""
    return any(compiled_path(module, root) is not None for module in MODULES)


def install_finder() -> None:
    """Put the source finder first on ``sys.meta_path`` (once); called when ``stream`` is imported."""
    if not any(isinstance(finder, _SourceFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder())


def compiled_modules() -> list[str]:
    """The group's modules that this process runs compiled (importing them if need be)."""
    out = []
    for name in MODULES:
        module = importlib.import_module(name)
        if not str(getattr(module, "__file__", "")).endswith(".py"):
            out.append(name)
    return out
