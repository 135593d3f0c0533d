"""Compile the per-event code with mypyc (:mod:`stream.native`): ``python -m stream.native_build``.

Does nothing when every module is compiled from its current source for this Python. Never fails:
without a compiler (or with any build error) it warns, says where the build's output
is, and the modules run as Python.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from stream.native import GROUP, MANIFEST, MODULES, ROOT, compiled_path, source_hash, source_path, stale

log = logging.getLogger(__name__)

# mypy follows no imports out of the group (``skip``): what the group uses from other
# modules is typed Any, checked where Python checks it. Following them read all of
# mlflow and pandas, and took minutes instead of seconds.
MYPY_OPTIONS = ("--follow-imports=skip",)

_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify
setup(name="churn-stream-native", py_modules=[], packages=[],
      ext_modules=mypycify(sys.argv.pop(1).split(","), group_name=sys.argv.pop(1)))
"""


def up_to_date(root: Path = ROOT) -> bool:
    """Every module compiled, from its current source, for this Python."""
    if any(compiled_path(module, root) is None for module in MODULES) or stale(root):
        return False
    try:
        return json.loads((root / MANIFEST).read_text()).get("python") == sys.version.split()[0]
    except (OSError, ValueError):
        return False


def build(root: Path = ROOT) -> bool:
    """Compile the group beside its sources; True when it is compiled, False (and a warning) when not."""
    if up_to_date(root):
        log.info("the per-event code is compiled from its current sources")
        return True
    log_path = root / "build" / "native.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sources = [str(source_path(module, root).relative_to(root)) for module in MODULES]
    hashes = {module: source_hash(source_path(module, root)) for module in MODULES}
    (root / MANIFEST).unlink(missing_ok=True)  # no manifest while the extension modules are being replaced
    started = time.perf_counter()
    log.info("compiling %d modules with mypyc (output in %s)", len(MODULES), log_path)
    with log_path.open("w") as out:
        try:
            done = subprocess.run(
                [sys.executable, "-c", _SETUP, ",".join([*MYPY_OPTIONS, *sources]), GROUP, "build_ext", "--inplace",
                 "--build-temp", str(root / "build" / "native")],
                cwd=root, stdout=out, stderr=subprocess.STDOUT, check=False)
        except OSError as exc:
            log.warning("the per-event code was not compiled (%s): it runs as Python", exc)
            return False
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        log.warning("the per-event code was not compiled (mypyc exited %d; %s): it runs as Python. Last lines:\n%s",
                    done.returncode, log_path, "\n".join(tail))
        return False
    missing = [module for module in MODULES if compiled_path(module, root) is None]
    if missing:
        log.warning("the per-event code was not compiled: no extension module for %s after the build (%s)",
                    ", ".join(missing), log_path)
        return False
    (root / MANIFEST).write_text(json.dumps({"python": sys.version.split()[0], "sources": hashes}, indent=1) + "\n")
    log.info("compiled in %.0f s", time.perf_counter() - started)
    return True


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build()
    return 0  # the modules run as Python without a compiled build: never a reason to stop `make`


if __name__ == "__main__":
    sys.exit(main())
