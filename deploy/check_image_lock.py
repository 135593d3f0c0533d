"""Check that ``deploy/Dockerfile`` installs the project from the committed ``uv.lock`` only.

The image must contain exactly the versions the tests ran against. The rules:

- one stage runs ``uv sync``, and every ``uv sync`` has ``--frozen`` (install the lock
  as it is, never re-resolve) and ``--no-dev``;
- that stage COPYs ``uv.lock`` before its first ``uv sync``;
- nothing else installs packages: ``pip install`` may install only ``uv`` itself,
  pinned (``uv==X.Y.Z``); ``uv pip install``, ``uv add``, ``uv lock``, ``pip install -r``,
  poetry and pipenv are refused;
- the last stage copies the virtualenv (``UV_PROJECT_ENVIRONMENT``) from that stage.

Usage: ``python deploy/check_image_lock.py [DOCKERFILE]``; prints each problem and exits
with 1, or prints ``ok`` and exits with 0. Tests call :func:`check`.

>>> check_text('''FROM python:3.11.13-slim AS b
... ENV UV_PROJECT_ENVIRONMENT=/opt/venv
... RUN pip install uv==0.13.9
... COPY pyproject.toml uv.lock ./
... RUN uv sync --frozen --no-dev
... FROM python:3.11.13-slim
... COPY --from=b /opt/venv /opt/venv''')
[]
>>> check_text('FROM python:3.11.13-slim\\nRUN pip install churn-stream')
['pip install of anything but a pinned uv: pip install churn-stream', 'no `uv sync` in any stage']
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DOCKERFILE = Path(__file__).with_name("Dockerfile")
PINNED_UV = re.compile(r"^uv==\d+(\.\d+)*$")
# Shell operators that separate commands inside one RUN.
_SEPARATORS = re.compile(r"&&|\|\||;|\|")
_REFUSED = (
    (("uv", "pip", "install"), "`uv pip install` bypasses the lock"),
    (("uv", "add"), "`uv add` changes the lock at build time"),
    (("uv", "lock"), "`uv lock` re-resolves at build time"),
    (("poetry",), "poetry is not this project's installer"),
    (("pipenv",), "pipenv is not this project's installer"),
)


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse(text: str) -> list[Stage]:
    """The stages of a Dockerfile, with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            continue  # Docker drops comment lines, also inside continuations
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            logical.append(pending.strip())
        pending = ""
    if pending.strip():
        logical.append(pending.strip())

    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0] if words else "", name))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, args.strip()))
    return stages


def _exec_or_shell(args: str) -> list[list[str]]:
    """A RUN's commands as word lists (exec form is one command)."""
    if args.startswith("["):
        try:
            return [list(json.loads(args))]
        except json.JSONDecodeError:
            pass
    words = args.split()
    while words and words[0].startswith("--"):  # RUN --mount=... --network=...
        words.pop(0)
    commands = []
    for part in _SEPARATORS.split(" ".join(words)):
        try:
            tokens = shlex.split(part)
        except ValueError:
            tokens = part.split()
        if tokens:
            commands.append(tokens)
    return commands


def _contains(tokens: list[str], sequence: tuple[str, ...]) -> bool:
    n = len(sequence)
    return any(tuple(tokens[i : i + n]) == sequence for i in range(len(tokens) - n + 1))


def _copy_sources(args: str) -> tuple[str | None, list[str]]:
    """``(--from stage or None, source paths)`` of a COPY/ADD, shell or JSON form."""
    words = args.split()
    flags = []
    while words and words[0].startswith("--"):
        flags.append(words.pop(0))
    rest = " ".join(words)
    paths = list(json.loads(rest)) if rest.startswith("[") else shlex.split(rest)
    source_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
    return source_stage, paths[:-1]


def stage_env(stage: Stage) -> dict[str, str]:
    """The variables a stage sets with ENV (``KEY=value`` or ``KEY value`` form)."""
    env: dict[str, str] = {}
    for ins in stage.instructions:
        if ins.keyword != "ENV":
            continue
        words = shlex.split(ins.args)
        if words and "=" not in words[0]:
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            env[key] = value
    return env


def check_text(text: str) -> list[str]:
    """The problems of a Dockerfile's text; an empty list means it installs from the lock."""
    stages = parse(text)
    problems: list[str] = []
    sync_stage: Stage | None = None
    for stage in stages:
        lock_copied = False
        for ins in stage.instructions:
            if ins.keyword in ("COPY", "ADD"):
                source_stage, sources = _copy_sources(ins.args)
                if source_stage is None and any(Path(s).name == "uv.lock" or s in (".", "./") for s in sources):
                    lock_copied = True
                continue
            if ins.keyword != "RUN":
                continue
            for tokens in _exec_or_shell(ins.args):
                for sequence, why in _REFUSED:
                    if _contains(tokens, sequence):
                        problems.append(f"{why}: {' '.join(tokens)}")
                if _contains(tokens, ("pip", "install")) and not _contains(tokens, ("uv", "pip", "install")):
                    start = max(i for i in range(len(tokens) - 1) if tokens[i : i + 2] == ["pip", "install"]) + 2
                    rest = tokens[start:]
                    if "-r" in rest or "--requirement" in rest or any(t.startswith("--requirement=") for t in rest):
                        problems.append(f"pip install from a requirements file: {' '.join(tokens)}")
                        continue
                    packages = [t for t in rest if not t.startswith("-")]
                    if not packages or not all(PINNED_UV.match(p) for p in packages):
                        problems.append(f"pip install of anything but a pinned uv: {' '.join(tokens)}")
                if _contains(tokens, ("uv", "sync")):
                    if sync_stage is None:
                        sync_stage = stage
                    if "--frozen" not in tokens:
                        problems.append(f"`uv sync` without --frozen may re-resolve: {' '.join(tokens)}")
                    if "--no-dev" not in tokens:
                        problems.append(f"`uv sync` without --no-dev installs test tools: {' '.join(tokens)}")
                    if not lock_copied:
                        problems.append(f"`uv sync` runs before uv.lock is copied: {' '.join(tokens)}")
    if sync_stage is None:
        problems.append("no `uv sync` in any stage")
        return problems
    venv = stage_env(sync_stage).get("UV_PROJECT_ENVIRONMENT", "/src/.venv")
    final = stages[-1]
    if final is sync_stage:
        return problems
    copies_venv = False
    for ins in final.instructions:
        if ins.keyword == "COPY":
            source_stage, sources = _copy_sources(ins.args)
            if source_stage in (sync_stage.name, str(stages.index(sync_stage))) and venv.rstrip("/") in [
                s.rstrip("/") for s in sources
            ]:
                copies_venv = True
    if not copies_venv:
        problems.append(f"the last stage does not copy the virtualenv {venv} from the stage that ran `uv sync`")
    return problems


def check(path: Path = DEFAULT_DOCKERFILE) -> list[str]:
    """The problems of the Dockerfile at ``path``."""
    return check_text(Path(path).read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_DOCKERFILE
    problems = check(path)
    for problem in problems:
        pass
    if not problems:
        pass
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
