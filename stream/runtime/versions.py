"""The library versions the runtime changes are tested with, and the checks that fail loudly outside them.

The changes rely on private names of faust-streaming, mode-streaming, aiokafka and river
(docs/runtime.md lists them). :func:`check_versions` refuses a version outside
:data:`TESTED` in one line, at start, before any of them is touched; each change then
calls :func:`require`, which raises :class:`~stream.errors.RuntimeMismatch` when an
object lacks a name it needs, so an upgrade that renames one fails the worker's start
instead of silently switching the change off.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from stream.errors import RuntimeMismatch

#: The versions the changes are written and tested against (pyproject.toml pins the same ranges).
TESTED: dict[str, str] = {
    "faust-streaming": ">=0.15.3,<0.16",
    "mode-streaming": ">=0.7.1,<0.8",
    "aiokafka": ">=0.14.0,<0.15",
    "river": ">=0.26.1,<0.27",
}


def installed_versions() -> dict[str, str]:
    """The installed version of each library in :data:`TESTED`, as its package metadata says."""
    out = {}
    for name in TESTED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def check_versions(versions: Mapping[str, str] | None = None) -> dict[str, str]:
    """Raise :class:`RuntimeMismatch` in one line naming the first library outside its tested range."""
    versions = dict(versions or installed_versions())
    for name, spec in TESTED.items():
        found = versions.get(name, "not installed")
        if found == "not installed" or Version(found) not in SpecifierSet(spec):
            raise RuntimeMismatch(
                f"{name} {found} is outside the range the worker is tested with ({spec}): "
                f'install "{name}{spec}" (docs/runtime.md)'
            )
    return versions


def require(obj, names: tuple[str, ...] | list[str], change: str) -> None:
    """Raise :class:`RuntimeMismatch` when ``obj`` lacks any of ``names``, which ``change`` needs."""
    missing = [n for n in names if not hasattr(obj, n)]
    if missing:
        raise RuntimeMismatch(
            f"{change} cannot be attached: {type(obj).__module__}.{type(obj).__name__} has no "
            f"{', '.join(missing)} (installed: {', '.join(f'{k} {v}' for k, v in installed_versions().items())}; "
            "docs/runtime.md)"
        )
