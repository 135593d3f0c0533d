"""What a retraining job checks before its work, in this order: its arguments, then its broker and registry.

Both come before anything heavy is imported (the job's own modules take seconds to
import), so a wrong argument or an address with nothing behind it fails within seconds,
in one line.

>>> check_retrain_arguments("drift", None, 0.0)
'drift'
>>> check_retrain_arguments("bogus", None, 0.0)
Traceback (most recent call last):
...
stream.errors.ConfigError: trigger 'bogus' is not one of ['manual', 'drift', 'schedule']
"""

from __future__ import annotations

import enum

from stream.errors import ConfigError
from stream.kafka.acls import require_role
from stream.kafka.topics import CHURN_FEATURES, CHURN_LABELS
from stream.settings import Settings


class Trigger(enum.StrEnum):
    """Why a retraining run started."""

    manual = "manual"
    drift = "drift"
    schedule = "schedule"


def check_retrain_arguments(trigger: str, window_days: float | None, wait_labels_s: float) -> str:
    """The trigger's value; ``ConfigError`` naming the argument that is wrong."""
    try:
        value = Trigger(trigger).value
    except ValueError as exc:
        raise ConfigError(f"trigger {trigger!r} is not one of {[t.value for t in Trigger]}") from exc
    if window_days is not None and window_days <= 0:
        raise ConfigError(f"--window-days must be positive, got {window_days}")
    if wait_labels_s < 0:
        raise ConfigError(f"--wait-labels must be >= 0 seconds, got {wait_labels_s}")
    return value


def check_reachable(settings: Settings) -> None:
    """The broker (with the feature log and labels) and the registry answer, and the registry accepts the
    credentials; one-line errors otherwise."""
    from training.registry import connect

    require_role(settings, "retrain", (CHURN_FEATURES, CHURN_LABELS))
    connect(settings)  # it answers, and accepts the credentials (one line naming them otherwise)
