"""The agents and timers of the control topics: matured labels and the serving model.

``labels``  churn-labels -> the drift monitor's label window (the featurize agent
            labels the closes it sees itself; this covers labels from elsewhere).
``models``  model-events -> hot swap of the serving model and of the challenger scored
            in shadow; the ``load_model`` and ``load_challenger`` tasks load the first
            ones and the alias poll backs the events up.

They are apart from the featurize agent because they only read its drift monitor and
swap the model it scores with; records that do not validate are logged and skipped.
"""

from __future__ import annotations

import logging

import faust
from pydantic import ValidationError

from schemas.outputs import ChurnLabel, ModelEvent
from stream.app.featurize import FeaturizeState
from stream.errors import RegistryAuthError
from stream.serving.model_holder import ModelHolder
from stream.serving.shadow import ChallengerHolder
from stream.settings import Settings

log = logging.getLogger(__name__)


def parse(contract, raw: bytes):
    """A control-topic record as ``contract``, or None (logged) when it does not validate."""
    try:
        return contract.model_validate_json(raw)
    except ValidationError as exc:
        log.warning("ignoring malformed %s record: %s", contract.__name__, exc)
        return None


def register_labels(app: faust.App, state: FeaturizeState, labels_topic) -> None:
    """Register the ``labels`` agent: churn labels into the serving model's drift monitor."""

    @app.agent(labels_topic, name="labels")
    async def labels(stream):
        async for raw in stream:
            label = parse(ChurnLabel, raw)
            if label is None:
                continue
            home = state.featurizer.home(label.customer_id.encode())
            monitor = state.drift_monitor()
            if monitor is not None:
                monitor.label(label.customer_id, label.closed_at.timestamp(), home)
            if state.comparison is not None:
                state.comparison.label(label.customer_id, label.closed_at.timestamp(), home)


def register_models(
    app: faust.App, settings: Settings, holder: ModelHolder, model_topic, challenger: ChallengerHolder | None = None
) -> None:
    """Register the ``models`` agent, the ``load_model`` (and ``load_challenger``) task and the alias poll timer.

    ``promoted`` and ``rolled_back`` swap the serving model; ``shadowed`` loads the challenger,
    ``dropped`` stops scoring it. A promotion also asks the registry where the challenger alias
    is now (a challenger promoted has left it). The challenger has its own lock, so its load
    never waits on production's, nor production's on it.
    """

    @app.agent(model_topic, name="models")
    async def model_events(stream):
        async for raw in stream:
            event = parse(ModelEvent, raw)
            if event is None or event.model_name != settings.model_name:
                continue
            if event.action in ("promoted", "rolled_back"):
                log.info("model event: %s version %s %s", event.model_name, event.version, event.action)
                await holder.refresh(event.version, event.checksum or None)
                if challenger is not None and challenger.current is not None:
                    await challenger.refresh()
            elif challenger is not None and event.action == "shadowed":
                log.info("model event: %s version %s shadowed", event.model_name, event.version)
                await challenger.refresh(event.version, event.checksum or None)
            elif challenger is not None and event.action == "dropped":
                log.info("model event: %s version %s dropped from shadow", event.model_name, event.version)
                challenger.clear(event.version)

    @app.task
    async def load_model():
        try:
            await holder.wait_ready(lambda: app.should_stop)
        except RegistryAuthError as exc:
            log.error("stopping: %s", exc)
            raise  # Faust crashes the app on a task's exception: the worker exits non-zero

    if challenger is not None:

        @app.task
        async def load_challenger():
            await challenger.refresh()

    @app.timer(settings.model_poll_s)
    async def poll_alias():
        if holder.current is not None:
            await holder.refresh()
        if challenger is not None:
            await challenger.refresh()
