"""Attach every change the worker makes to Faust and aiokafka, after checking the libraries are the tested ones."""

from __future__ import annotations

from collections.abc import Mapping

from stream.runtime import drain, end_offsets, fetch_wait, inline_delivery, seek_guard, undecodable
from stream.runtime.versions import check_versions


def install(app, *, quirks: bool, kafka_config: Mapping[str, str], fetch_max_wait_ms: int, dead_letters) -> None:
    """Check the versions, then attach every change to ``app`` (and aiokafka's fetcher) in their order.

    ``quirks`` adds the two changes only the embedded broker needs (exact end offsets, the
    fetch wait). The changes to a consumer run when Faust creates it; a missing name
    raises there.
    """
    check_versions()
    if quirks:
        end_offsets.install(app, kafka_config)
        fetch_wait.install(app, fetch_max_wait_ms)
    inline_delivery.install(app)
    seek_guard.install(app)
    drain.install(app)  # after the seek guard, whose flag it keeps
    undecodable.install(dead_letters)
