"""Whether a worker is ready to serve: a verified model loaded and its tables recovered.

``/ready`` (:mod:`stream.app.views`) answers from :func:`readiness`, a pure decision on two
inputs: the serving model's version (``None`` while the holder has none) and
:class:`TablesState`, read from Faust's public state by :func:`tables_state`:

- ``app.tables.actives_ready``: Faust clears it when a rebalance starts and sets it once the
  tables of the partitions now assigned are recovered (an empty assignment included), just
  before the worker resumes its streams;
- ``app.in_recovery``: the changelogs are being read into the tables;
- ``app.rebalancing``: a rebalance is under way (from the revocation to the streams resuming);
- ``app.tables.recovery.active_remaining_total()``: changelog records still to read.

A worker that owns no partition (more workers than partitions) is ready once its (empty)
recovery has completed: it answers lookups by forwarding them.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

NO_MODEL = "no model loaded"
RECOVERING = "recovering tables"
REBALANCING = "rebalancing"
UNASSIGNED = "waiting for partition assignment"


@dataclass(frozen=True)
class TablesState:
    """Faust's table state for the current assignment."""

    actives_ready: bool
    in_recovery: bool = False
    rebalancing: bool = False
    remaining: int = 0  # changelog records left to read for the active partitions


def tables_state(app: faust.App) -> TablesState:
    """The app's table state now (public Faust attributes only)."""
    tables = app.tables
    in_recovery = bool(app.in_recovery)
    return TablesState(
        actives_ready=bool(tables.actives_ready),
        in_recovery=in_recovery,
        rebalancing=bool(app.rebalancing),
        remaining=int(tables.recovery.active_remaining_total()) if in_recovery else 0,
    )


def readiness(model_version: str | None, tables: TablesState) -> tuple[int, dict]:
    """The HTTP status and JSON body of ``/ready``: 200 when ready, else 503 naming every reason."""
    reasons = []
    if model_version is None:
        reasons.append(NO_MODEL)
    if tables.in_recovery:
        reasons.append(RECOVERING)
    elif tables.rebalancing:
        reasons.append(REBALANCING)
    elif not tables.actives_ready:
        reasons.append(UNASSIGNED)
    body: dict = {
        "ready": not reasons,
        "model_version": model_version,
        "tables": {
            "actives_ready": tables.actives_ready,
            "in_recovery": tables.in_recovery,
            "rebalancing": tables.rebalancing,
            "recovery_remaining": tables.remaining,
        },
    }
    if reasons:
        body["reasons"] = reasons
    return (200 if not reasons else 503), body
