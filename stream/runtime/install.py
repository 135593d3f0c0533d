"""Attach every change the worker makes to Faust and aiokafka, after checking the libraries are the tested ones."""

from __future__ import annotations

from collections.abc import Mapping

from stream.errors import RuntimeMismatch
from stream.runtime import undecodable
from stream.runtime.transport import Transport
from stream.runtime.versions import check_versions, require


def install(app, *, quirks: bool, kafka_config: Mapping[str, str], fetch_max_wait_ms: int, dead_letters) -> None:
    """Check the versions, give ``app`` the worker's transport, and make aiokafka's fetcher skip undecodable batches.

    Call it right after building the app, before anything asks for its transport or
    consumer. ``quirks`` adds what only the embedded broker needs: exact end offsets
    (read with ``kafka_config``) and the fetch max wait.
    """
    check_versions()
    require(app, ("_transport",), "the worker's transport (stream.runtime.transport)")
    require(type(app), ("transport",), "the worker's transport (stream.runtime.transport)")
    if app._transport is not None:
        raise RuntimeMismatch(
            "the worker's transport must be set before the app makes its own (stream.runtime.install)"
        )
    app.transport = Transport(
        app.conf.broker_consumer,
        app,
        end_offsets_config=kafka_config if quirks else None,
        fetch_max_wait_ms=fetch_max_wait_ms if quirks else None,
    )
    undecodable.install(dead_letters)
