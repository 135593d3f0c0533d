"""JSON Schema export of the contracts, for producers written in other languages."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import TypeAdapter

from schemas.events import AccountEvent
from schemas.features import FeatureVector
from schemas.outputs import ChurnLabel, ChurnScore, DriftAlert, ModelEvent

CONTRACTS: dict[str, object] = {
    "account_event": TypeAdapter(AccountEvent),
    "feature_vector": FeatureVector,
    "churn_score": ChurnScore,
    "churn_label": ChurnLabel,
    "drift_alert": DriftAlert,
    "model_event": ModelEvent,
}
COMMITTED_DIR = Path(__file__).parent / "json"


def json_schemas() -> dict[str, dict]:
    """The JSON Schema of every contract, keyed by file stem."""
    out = {}
    for name, contract in CONTRACTS.items():
        if isinstance(contract, TypeAdapter):
            schema = contract.json_schema()
            schema.setdefault("title", "AccountEvent")
        else:
            schema = contract.model_json_schema()
        out[name] = schema
    return out


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export(directory: str | Path) -> list[Path]:
    """Write ``<name>.schema.json`` files into ``directory``; returns the paths."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in json_schemas().items():
        path = target / f"{name}.schema.json"
        path.write_text(render(schema))
        paths.append(path)
    return paths
