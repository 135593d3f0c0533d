"""JSON Schema export of the contracts, for producers and consumers written in other languages.

Each file is a standalone JSON Schema (draft 2020-12) with a ``$id`` URN that
names the contract and its major version (``urn:churn-stream:schema:<name>:v<N>``),
a title, a description, a description of every field and examples. The schemas
accept exactly what the pydantic models accept (see :mod:`schemas.fields`), so
validating against them before producing is validating as the worker will.

The account event schema is a ``oneOf`` over the event types, each of which
requires its own ``event_type`` constant. pydantic's OpenAPI ``discriminator``
keyword is left out: it is not JSON Schema, strict validators (ajv) refuse the
unknown keyword, and the ``oneOf`` already decides.

>>> schema = json_schemas()["account_event"]
>>> schema["$id"], schema["required"]
('urn:churn-stream:schema:account-event:v1', ['event_type'])
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.events import ACCOUNT_EVENT_DESCRIPTION, EVENT_TYPES, SCHEMA_VERSION, AccountEvent
from schemas.features import FEATURE_SET_VERSION, FeatureVector
from schemas.outputs import ChurnLabel, ChurnScore, DriftAlert, ModelEvent

DRAFT = "https://json-schema.org/draft/2020-12/schema"
COMMITTED_DIR = Path(__file__).parent / "json"


@dataclass(frozen=True)
class Contract:
    """One exported schema: the file stem, the pydantic type and the major version in its ``$id``."""

    name: str
    adapter: TypeAdapter
    version: int = 1

    @property
    def urn(self) -> str:
        return f"urn:churn-stream:schema:{self.name.replace('_', '-')}:v{self.version}"


CONTRACTS: tuple[Contract, ...] = (
    Contract("account_event", TypeAdapter(AccountEvent), SCHEMA_VERSION),
    Contract("feature_vector", TypeAdapter(FeatureVector), FEATURE_SET_VERSION),
    Contract("churn_score", TypeAdapter(ChurnScore)),
    Contract("churn_label", TypeAdapter(ChurnLabel)),
    Contract("drift_alert", TypeAdapter(DriftAlert)),
    Contract("model_event", TypeAdapter(ModelEvent)),
)


def _account_event_top(schema: dict[str, Any]) -> None:
    """The union's own title, description and the ``event_type`` it requires."""
    schema.pop("discriminator", None)
    schema["title"] = "AccountEvent"
    schema["description"] = ACCOUNT_EVENT_DESCRIPTION
    schema["type"] = "object"
    schema["required"] = ["event_type"]
    schema["properties"] = {
        "event_type": {"description": "Kind of event; selects the other fields.", "enum": list(EVENT_TYPES)}
    }


def json_schema(contract: Contract) -> dict[str, Any]:
    """The standalone JSON Schema of one contract."""
    schema = contract.adapter.json_schema()
    if contract.name == "account_event":
        _account_event_top(schema)
    return {"$schema": DRAFT, "$id": contract.urn, **schema}


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every contract, keyed by file stem."""
    return {contract.name: json_schema(contract) for contract in CONTRACTS}


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
