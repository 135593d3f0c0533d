"""What the launcher remembers across restarts (jobs, decisions, handled alerts) and its atomic JSON file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stream.errors import ChurnError
from stream.settings import Settings

HANDLED_MEMORY = 1000  # alert ids remembered across restarts


@dataclass(frozen=True)
class RunningJob:
    """A launched job: ``handle`` is a pid or a Kubernetes Job name."""

    handle: str
    run: int
    trigger: str
    alert_id: str
    started_at: float
    result_file: str = ""


@dataclass(frozen=True)
class JobEnd:
    """How a job ended; ``exit_code`` is None when the launcher could not observe it; ``reason``
    says why a job failed when the backend knows (a Kubernetes Job's ``DeadlineExceeded``)."""

    exit_code: int | None
    outcome: str
    reason: str = ""


@dataclass(frozen=True)
class ShadowWatch:
    """A challenger the launcher judges: its version and since when it is in shadow (epoch seconds), kept
    so that a restarted launcher counts the deadline from the same moment."""

    version: str
    since: float


@dataclass(frozen=True)
class ShadowEnd:
    """How the launcher's last challenger left shadow: ``action`` promote or drop, why, and when."""

    version: str
    action: str
    reason: str
    at: float


@dataclass
class LauncherState:
    """What the launcher remembers across restarts. Times are epoch seconds."""

    launches: int = 0
    running: RunningJob | None = None
    last_launch_at: float | None = None
    last_end_at: float | None = None
    last_alert_id: str = ""
    last_outcome: str = ""
    last_exit_code: int | None = None
    last_job: RunningJob | None = None
    handled: list[str] = field(default_factory=list)
    shadow: ShadowWatch | None = None
    last_shadow: ShadowEnd | None = None

    def record_alert(self, alert_id: str) -> None:
        self.last_alert_id = alert_id
        if alert_id not in self.handled:
            self.handled.append(alert_id)
            del self.handled[:-HANDLED_MEMORY]

    def record_launch(self, job: RunningJob) -> None:
        self.running = job
        self.launches += 1
        self.last_launch_at = job.started_at

    def record_end(self, end: JobEnd, now: float) -> None:
        self.last_job, self.running = self.running, None
        self.last_end_at = now
        self.last_outcome = end.outcome
        self.last_exit_code = end.exit_code

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping) -> LauncherState:
        data = dict(raw)
        for key, kind in (("running", RunningJob), ("last_job", RunningJob), ("shadow", ShadowWatch)):
            if data.get(key) is not None:
                data[key] = kind(**data[key])
        if data.get("last_shadow") is not None:
            data["last_shadow"] = ShadowEnd(**data["last_shadow"])
        return cls(**data)


def state_dir(settings: Settings) -> Path:
    return settings.data_dir / "launcher"


def load_state(path: Path) -> LauncherState:
    """The saved state, or a fresh one when there is no file yet."""
    try:
        raw = json.loads(path.read_text())
        return LauncherState.from_dict(raw)
    except FileNotFoundError:
        return LauncherState()
    except (OSError, ValueError, TypeError) as exc:
        raise ChurnError(
            f"launcher state {path} is unreadable ({exc}); fix or remove it "
            "(removing it forgets the running job and the alerts already handled)"
        ) from exc


def save_state(path: Path, state: LauncherState) -> None:
    """Write ``state`` atomically: a temporary file in the same folder, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state.to_dict(), f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with suppress(OSError):  # make the rename durable where the platform allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
