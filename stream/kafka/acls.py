"""Kafka ACLs per role, from one file: applied by a super user, checked by each process at start.

``deploy/kafka/acls.yaml`` lists, for each role (producer, worker, launcher, retrain,
scores-consumer), its principal and the operations it may perform on which topics and
consumer groups, as templates of ``CHURN_TOPIC_PREFIX`` and ``CHURN_APP_ID``.
:meth:`Role.render` fills them in and :func:`bindings` makes Kafka ``AclBinding`` objects of them; :func:`apply_acls`
creates them (``churn acls apply``); :func:`missing_rights` asks the broker which of
a role's rights the connected principal lacks, so a process can stop with one line
naming the right instead of retrying an authorization error forever.

>>> roles = load_roles()
>>> sorted(roles)
['launcher', 'producer', 'retrain', 'scores-consumer', 'worker']
>>> [(r.name, r.pattern, r.operations) for r in roles["producer"].render(Settings(topic_prefix="t-"))]
[('t-account-events', 'LITERAL', ('WRITE', 'DESCRIBE'))]
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from stream.errors import BrokerError, ConfigError
from stream.kafka.config import confluent_config
from stream.kafka.topics import require_broker, require_topics
from stream.settings import Settings

log = logging.getLogger(__name__)

# deploy/kafka/acls.yaml in a checkout; an installed package (the image) carries the same file beside
# this module (pyproject.toml's force-include).
_PACKAGED = Path(__file__).with_name("acls.yaml")
ACLS_FILE = _PACKAGED if _PACKAGED.is_file() else Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "acls.yaml"
ROLES = ("producer", "worker", "launcher", "retrain", "scores-consumer")
_KINDS: dict[str, Literal["TOPIC", "GROUP"]] = {"topics": "TOPIC", "groups": "GROUP"}
# Read and Write (and the others) imply Describe; Kafka reports the implied right too.
_IMPLIED = {"DESCRIBE": {"READ", "WRITE", "DELETE", "ALTER"}, "DESCRIBE_CONFIGS": {"ALTER_CONFIGS"}}
_TIMEOUT_S = 10.0
_COORDINATOR_PENDING = frozenset(
    {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.COORDINATOR_LOAD_IN_PROGRESS}
)


def _operation(name: str, where: str) -> str:
    upper = "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(name)).upper()
    if upper not in AclOperation.__members__ or upper in ("ANY", "UNKNOWN", "ALL"):
        raise ConfigError(f"{where}: {name!r} is not a Kafka ACL operation")
    return upper


@dataclass(frozen=True)
class Grant:
    """Operations on one resource: a topic or group name, or a name prefix (``PREFIXED``)."""

    kind: Literal["TOPIC", "GROUP"]
    name: str
    pattern: Literal["LITERAL", "PREFIXED"]
    operations: tuple[str, ...]


@dataclass(frozen=True)
class Role:
    """One role of the ACL file: its default SCRAM user and its grants, as templates."""

    name: str
    user: str
    grants: tuple[Grant, ...]

    def render(self, settings: Settings) -> list[Grant]:
        """The grants with ``{prefix}`` and ``{app}`` filled in from ``settings``."""
        values = {"prefix": settings.topic_prefix, "app": settings.app_id}
        return [Grant(g.kind, g.name.format(**values), g.pattern, g.operations) for g in self.grants]


def _grants(kind: str, entries: object, where: str) -> list[Grant]:
    if not isinstance(entries, Mapping):
        raise ConfigError(f"{where}.{kind}: expected a mapping of name to operations")
    grants = []
    for raw, operations in entries.items():
        if not isinstance(operations, list) or not operations:
            raise ConfigError(f"{where}.{kind}.{raw}: expected a list of operations")
        name, prefixed = (raw[:-1], True) if str(raw).endswith("*") else (str(raw), False)
        ops = tuple(_operation(str(op), f"{where}.{kind}.{raw}") for op in operations)
        grants.append(Grant(_KINDS[kind], name, "PREFIXED" if prefixed else "LITERAL", ops))
    return grants


def load_roles(path: Path = ACLS_FILE) -> dict[str, Role]:
    """The roles of the ACL file; :class:`ConfigError` naming the file and the entry when it is malformed."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the ACL file {path}: {exc}") from exc
    roles_doc = document.get("roles") if isinstance(document, Mapping) else None
    if not isinstance(roles_doc, Mapping):
        raise ConfigError(f"{path}: expected a top-level 'roles' mapping")
    roles = {}
    for name, body in roles_doc.items():
        where = f"{path.name}: roles.{name}"
        if not isinstance(body, Mapping) or not isinstance(body.get("user"), str):
            raise ConfigError(f"{where}: expected 'user' and 'topics' / 'groups'")
        grants = [g for kind in _KINDS if kind in body for g in _grants(kind, body[kind], where)]
        roles[str(name)] = Role(str(name), body["user"], tuple(grants))
    return roles


def parse_users(pairs: Iterable[str]) -> dict[str, str]:
    """``ROLE=NAME`` pairs as a dict; :class:`ConfigError` for a malformed pair or an unknown role.

    >>> parse_users(["worker=svc-worker"])
    {'worker': 'svc-worker'}
    """
    users = {}
    for pair in pairs:
        role, sep, name = pair.partition("=")
        if not sep or not name or role not in ROLES:
            raise ConfigError(f"--user {pair!r}: expected ROLE=NAME with ROLE one of {', '.join(ROLES)}")
        users[role] = name
    return users


def bindings(grants: Iterable[Grant], principal: str) -> list[AclBinding]:
    """Kafka ALLOW bindings for ``principal`` (``User:<name>``) on any host."""
    return [
        AclBinding(
            ResourceType[g.kind],
            g.name,
            ResourcePatternType[g.pattern],
            principal,
            "*",
            AclOperation[op],
            AclPermissionType.ALLOW,
        )
        for g in grants
        for op in g.operations
    ]


def _wait(futures: Mapping[Any, concurrent.futures.Future[Any]], what: str) -> list[Any]:
    results = []
    for key, future in futures.items():
        try:
            results.append(future.result(timeout=_TIMEOUT_S))
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED:
                raise ConfigError(
                    f"{what}: the principal is not allowed to change ACLs; run it as a super user (CHURN_SASL_USERNAME)"
                ) from exc
            if error.code() == KafkaError.SECURITY_DISABLED:
                raise ConfigError(f"{what}: the broker has no authorizer (authorizer.class.name is not set)") from exc
            raise BrokerError(f"{what} ({key}): {error.str()}") from exc
        except concurrent.futures.TimeoutError as exc:
            raise BrokerError(f"{what} did not finish within {_TIMEOUT_S:.0f}s") from exc
    return results


def apply_acls(
    admin: AdminClient, settings: Settings, users: Mapping[str, str] | None = None, path: Path = ACLS_FILE
) -> dict[str, int]:
    """Create every role's bindings (idempotent: Kafka keeps one copy of a binding); per role, how many.

    ``users`` overrides a role's user name (role -> user).
    """
    applied = {}
    for name, role in load_roles(path).items():
        principal = f"User:{(users or {}).get(name, role.user)}"
        wanted = bindings(role.render(settings), principal)
        _wait(admin.create_acls(wanted, request_timeout=_TIMEOUT_S), f"creating the ACLs of role {name}")
        applied[name] = len(wanted)
        log.info("ACLs of role %s for %s: %d bindings", name, principal, len(wanted))
    return applied


def remove_acls(admin: AdminClient, principal: str) -> int:
    """Delete every binding of ``principal``; how many were deleted."""
    match = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, principal, None, AclOperation.ANY, AclPermissionType.ANY
    )
    deleted = _wait(admin.delete_acls([match], request_timeout=_TIMEOUT_S), f"deleting the ACLs of {principal}")
    return sum(len(found) for found in deleted)


def _lacking(wanted: Iterable[str], allowed: Iterable[Any] | None) -> list[str]:
    if allowed is None:  # a broker that does not report authorized operations: nothing can be said
        return []
    have = {op.name for op in allowed}
    return [op for op in wanted if op not in have and not (_IMPLIED.get(op, set()) & have)]


def missing_rights(admin: AdminClient, settings: Settings, role: str, path: Path = ACLS_FILE) -> list[str]:
    """The rights of ``role`` the connected principal lacks, each as ``OPERATION on topic|group NAME``.

    Asks the broker for the principal's authorized operations on each literal topic and
    group of the role (prefixed grants cannot be asked for before their resources exist).
    A broker without an authorizer reports every operation, so nothing is missing; one
    that cannot answer (an absent topic, a broker without the API) is given the benefit
    of the doubt: the client's own requests report what is wrong there.
    """
    roles = load_roles(path)
    if role not in roles:
        raise ConfigError(f"no role {role!r} in {path} (roles: {', '.join(sorted(roles))})")
    grants = [g for g in roles[role].render(settings) if g.pattern == "LITERAL"]
    missing: list[str] = []
    topics = [g for g in grants if g.kind == "TOPIC"]
    if topics:
        futures = admin.describe_topics(
            TopicCollection([g.name for g in topics]), include_authorized_operations=True, request_timeout=_TIMEOUT_S
        )
        for grant in topics:
            missing += [f"{op} on topic {grant.name}" for op in _topic_lacks(futures[grant.name], grant)]
    for grant in (g for g in grants if g.kind == "GROUP"):
        missing += [f"{op} on group {grant.name}" for op in _group_lacks(admin, grant)]
    return missing


def _topic_lacks(future: concurrent.futures.Future[Any], grant: Grant) -> list[str]:
    try:
        described = future.result(timeout=_TIMEOUT_S)
    except KafkaException as exc:
        code = exc.args[0].code()
        if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            return list(grant.operations)
        if code != KafkaError.UNKNOWN_TOPIC_OR_PART:  # an absent topic is reported by the topic checks
            log.debug("cannot ask for the rights on topic %s: %s", grant.name, exc.args[0].str())
        return []
    return _lacking(grant.operations, described.authorized_operations)


def _group_lacks(admin: AdminClient, grant: Grant) -> list[str]:
    """Retries while the group coordinator is not there yet (a new cluster creates its offsets topic then)."""
    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        future = admin.describe_consumer_groups(
            [grant.name], include_authorized_operations=True, request_timeout=_TIMEOUT_S
        )[grant.name]
        try:
            described = future.result(timeout=_TIMEOUT_S)
        except KafkaException as exc:
            code = exc.args[0].code()
            if code == KafkaError.GROUP_AUTHORIZATION_FAILED:
                return list(grant.operations)
            if code not in _COORDINATOR_PENDING or time.monotonic() >= deadline:
                log.debug("cannot ask for the rights on group %s: %s", grant.name, exc.args[0].str())
                return []  # the group's own requests will say more, if it matters
            time.sleep(0.2)
            continue
        return _lacking(grant.operations, described.authorized_operations)


def require_role(settings: Settings, role: str, topics: Iterable[str] = ()) -> AdminClient:
    """An admin client for a process of ``role``: the broker answers (:func:`require_broker`), the
    principal has the role's rights and ``topics`` (unprefixed names) exist; one-line errors otherwise."""
    admin = require_broker(confluent_config(settings, settings.resolved_bootstrap()))
    require_rights(admin, settings, role)
    require_topics(admin, [settings.topic(t) for t in topics])
    return admin


def require_rights(admin: AdminClient, settings: Settings, role: str) -> None:
    """Raise :class:`ConfigError` in one line when the connected principal lacks a right ``role`` needs."""
    missing = missing_rights(admin, settings, role)
    if missing:
        who = settings.sasl_username or "the connecting principal"
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ConfigError(
            f"Kafka user {who} (CHURN_SASL_USERNAME) lacks {missing[0]}{more}, which the {role} role needs; "
            "grant the role's ACLs with `churn acls apply` (deploy/kafka/acls.yaml)"
        )
