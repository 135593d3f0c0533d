"""The ACL file and its rendering: roles, templates, bindings, and a malformed file in one line."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from stream.errors import ConfigError
from stream.kafka.acls import ROLES, bindings, load_roles, parse_users
from stream.kafka.topics import ALL_TOPICS
from stream.settings import Settings

pytestmark = pytest.mark.unit


def test_every_role_of_the_design_has_a_user_and_the_file_has_no_other():
    roles = load_roles()
    assert sorted(roles) == sorted(ROLES)
    assert len({role.user for role in roles.values()}) == len(ROLES)  # one principal per role


def test_templates_take_the_prefix_and_the_app_id():
    settings = Settings(topic_prefix="p-", app_id="app7")
    worker = {(g.kind, g.name, g.pattern) for g in load_roles()["worker"].render(settings)}
    assert ("TOPIC", "p-churn-scores", "LITERAL") in worker
    assert ("TOPIC", "app7-", "PREFIXED") in worker
    assert ("GROUP", "app7", "LITERAL") in worker


def test_every_named_topic_is_one_of_the_service_topics():
    settings = Settings(topic_prefix="p-")
    names = {settings.topic(t) for t in ALL_TOPICS}
    for role in load_roles().values():
        for grant in role.render(settings):
            if grant.kind == "TOPIC" and grant.pattern == "LITERAL":
                assert grant.name in names, (role.name, grant.name)


def test_no_role_gets_more_than_read_write_create_describe():
    allowed = {"READ", "WRITE", "CREATE", "DESCRIBE"}
    for role in load_roles().values():
        for grant in role.grants:
            assert set(grant.operations) <= allowed, (role.name, grant)
            if grant.kind == "TOPIC" and "CREATE" in grant.operations:
                assert grant.pattern == "PREFIXED" and grant.name == "{app}-", (role.name, grant)


def test_bindings_are_allow_rules_for_the_principal():
    grants = load_roles()["producer"].render(Settings())
    made = bindings(grants, "User:svc-producer")
    assert {(b.restype, b.name, b.resource_pattern_type, b.operation) for b in made} == {
        (ResourceType.TOPIC, "account-events", ResourcePatternType.LITERAL, AclOperation.WRITE),
        (ResourceType.TOPIC, "account-events", ResourcePatternType.LITERAL, AclOperation.DESCRIBE),
    }
    assert {b.principal for b in made} == {"User:svc-producer"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("roles: [1, 2]", "top-level 'roles' mapping"),
        ("roles:\n  x:\n    topics: {}\n", "roles.x: expected 'user'"),
        ("roles:\n  x:\n    user: u\n    topics:\n      t: [Fly]\n", "'Fly' is not a Kafka ACL operation"),
        ("roles:\n  x:\n    user: u\n    topics:\n      t: []\n", "expected a list of operations"),
        ("roles: {a: [", "cannot read the ACL file"),
    ],
)
def test_a_malformed_file_is_one_line_naming_the_entry(tmp_path, text, expected):
    path = tmp_path / "acls.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("(", r"\(")):
        load_roles(path)


@pytest.mark.parametrize("pair", ["worker", "nobody=x", "worker="])
def test_user_overrides_must_name_a_role(pair):
    with pytest.raises(ConfigError, match="ROLE=NAME"):
        parse_users([pair])


def test_client_certificate_settings_come_in_pairs():
    with pytest.raises(ValueError, match="CHURN_SSL_KEYFILE"):
        Settings(ssl_certfile="/c.pem")
    with pytest.raises(ValueError, match="CHURN_SSL_CERTFILE"):
        Settings(ssl_keyfile="/k.pem")
    with pytest.raises(ValueError, match="CHURN_LAUNCHER_JOB_SASL"):
        Settings(launcher_job_sasl_username="churn-retrain")


def test_secrets_are_hidden_when_settings_are_printed():
    settings = Settings(
        ssl_certfile="/c", ssl_keyfile="/k", ssl_key_password="key-pw-1", sasl_password="sasl-pw-2",
        launcher_job_sasl_username="j", launcher_job_sasl_password="job-pw-3",
    )  # fmt: skip
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in ("key-pw-1", "sasl-pw-2", "job-pw-3"):
        assert secret not in shown
