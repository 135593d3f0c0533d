"""Compile the per-event feature code with mypyc (:mod:`stream.native`): ``python -m stream.native_build``."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from stream.native import GROUP, MANIFEST, MODULES, PACKAGE_DIR, compiled_path, source_hash

log = logging.getLogger(__name__)

_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify
setup(name="churn-stream-native", py_modules=[], packages=[],
      ext_modules=mypycify(sys.argv.pop(1).split(","), group_name=sys.argv.pop(1)))
"""


def build(root: Path = PACKAGE_DIR.parent, log_path: Path | None = None) -> bool:
    """Compile the group beside its sources; True when it was compiled, False (and a warning) when not.

    The build's output goes to ``log_path`` (default ``build/native.log``); its
    intermediate files to ``build/``.
    """
    log_path = log_path or root / "build" / "native.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sources = [f"stream/{name}.py" for name in MODULES]
    hashes = {name: source_hash(root / "stream" / f"{name}.py") for name in MODULES}
    MANIFEST.unlink(missing_ok=True)  # no manifest while the extension modules are being replaced
    started = time.perf_counter()
    with log_path.open("w") as out:
        try:
            done = subprocess.run(
                [sys.executable, "-c", _SETUP, ",".join(sources), GROUP, "build_ext", "--inplace",
                 "--build-temp", str(root / "build" / "native")],
                cwd=root, stdout=out, stderr=subprocess.STDOUT, check=False)
        except OSError as exc:
            log.warning("feature code not compiled (%s): it runs as Python", exc)
            return False
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        log.warning("feature code not compiled (mypyc exited %d; %s): it runs as Python. Last lines:\n%s",
                    done.returncode, log_path, "\n".join(tail))
        return False
    missing = [name for name in MODULES if compiled_path(name, root / "stream") is None]
    if missing:
        log.warning("feature code not compiled: no extension module for %s after the build (%s)",
                    ", ".join(missing), log_path)
        return False
    MANIFEST.write_text(json.dumps({"python": sys.version.split()[0], "sources": hashes}, indent=1) + "\n")
    log.info("compiled stream/%s.py in %.0f s", ".py, stream/".join(MODULES), time.perf_counter() - started)
    return True


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build()
    return 0  # the modules run as Python without a compiled build: never a reason to stop `make`


if __name__ == "__main__":
    sys.exit(main())
