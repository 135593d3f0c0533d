"""Kafka client configuration built from Settings."""

from __future__ import annotations

import ssl

import certifi
import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr

from stream.errors import ConfigError
from stream.kafka.config import CLIENT_LOG, bootstrap_hosts, confluent_config, faust_broker_kwargs, faust_broker_url
from stream.settings import Settings, load_settings

pytestmark = pytest.mark.unit

PASSWORD = "s3cret-pw"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("CHURN_"):
            monkeypatch.delenv(name)


def sasl(protocol: str = "SASL_SSL", **kw: object) -> Settings:
    return Settings(
        bootstrap_servers="k1:9092,k2:9093",
        security_protocol=protocol,
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc-churn",
        sasl_password=PASSWORD,
        **kw,
    )


def test_plaintext_config_has_only_bootstrap_and_protocol() -> None:
    config = confluent_config(Settings(bootstrap_servers=" k1:9092 , k2:9092 "))
    assert config.pop("logger") is CLIENT_LOG
    assert config == {
        "bootstrap.servers": "k1:9092,k2:9092",
        "security.protocol": "PLAINTEXT",
    }


def test_explicit_bootstrap_is_required_when_setting_is_empty() -> None:
    settings = Settings(bootstrap_servers="")
    with pytest.raises(ConfigError, match="CHURN_BOOTSTRAP_SERVERS"):
        confluent_config(settings)
    assert confluent_config(settings, bootstrap="127.0.0.1:19092")["bootstrap.servers"] == "127.0.0.1:19092"


def test_explicit_bootstrap_wins_over_setting() -> None:
    assert bootstrap_hosts(Settings(bootstrap_servers="k1:9092"), "127.0.0.1:1") == ["127.0.0.1:1"]


@pytest.mark.parametrize("bad", ["k1", "k1:port", "kafka://k1:9092/x", "host name:9092"])
def test_malformed_bootstrap_names_the_variable(bad: str) -> None:
    with pytest.raises(ConfigError, match="CHURN_BOOTSTRAP_SERVERS"):
        confluent_config(Settings(bootstrap_servers=bad))


def test_sasl_ssl_maps_to_librdkafka_properties() -> None:
    config = confluent_config(sasl(ssl_cafile="/etc/ca.pem"))
    assert config.pop("logger") is CLIENT_LOG
    assert config == {
        "bootstrap.servers": "k1:9092,k2:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc-churn",
        "sasl.password": PASSWORD,
        "ssl.ca.location": "/etc/ca.pem",
    }


def test_password_stays_secret_until_the_config_is_built() -> None:
    settings = sasl()
    assert isinstance(settings.sasl_password, SecretStr)
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings.model_dump())
    assert confluent_config(settings)["sasl.password"] == PASSWORD


def test_sasl_plaintext_has_no_tls_properties() -> None:
    config = confluent_config(sasl("SASL_PLAINTEXT", ssl_cafile="/etc/ca.pem"))
    assert config["security.protocol"] == "SASL_PLAINTEXT"
    assert "ssl.ca.location" not in config


def test_ssl_only_has_ca_and_no_sasl() -> None:
    config = confluent_config(Settings(bootstrap_servers="k1:9093", security_protocol="ssl", ssl_cafile="/ca.pem"))
    assert config.pop("logger") is CLIENT_LOG
    assert config == {"bootstrap.servers": "k1:9093", "security.protocol": "SSL", "ssl.ca.location": "/ca.pem"}


@pytest.mark.parametrize("protocol", ["SASL_SSL", "sasl_plaintext"])
def test_sasl_without_username_fails_at_settings_naming_the_variable(protocol: str, monkeypatch) -> None:
    monkeypatch.setenv("CHURN_SECURITY_PROTOCOL", protocol)
    monkeypatch.setenv("CHURN_SASL_PASSWORD", PASSWORD)
    with pytest.raises(ConfigError, match="CHURN_SASL_USERNAME") as info:
        load_settings(bootstrap_servers="k1:9092")
    assert "CHURN_SASL_PASSWORD" not in str(info.value) and PASSWORD not in str(info.value)


def test_sasl_without_password_or_any_credentials_names_each_variable(monkeypatch) -> None:
    monkeypatch.setenv("CHURN_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError, match="CHURN_SASL_USERNAME.*CHURN_SASL_PASSWORD"):
        load_settings()
    monkeypatch.setenv("CHURN_SASL_USERNAME", "svc-churn")
    with pytest.raises(ConfigError, match="CHURN_SASL_PASSWORD") as info:
        load_settings()
    assert "CHURN_SASL_USERNAME" not in str(info.value)
    monkeypatch.setenv("CHURN_SECURITY_PROTOCOL", "SSL")
    assert load_settings().security_protocol == "SSL"  # credentials only matter with SASL


def test_unvalidated_sasl_settings_still_fail_when_building_clients() -> None:
    """``model_copy(update=...)`` skips validation; the client builders check again."""
    settings = Settings(bootstrap_servers="k1:9092").model_copy(update={"security_protocol": "SASL_SSL"})
    with pytest.raises(ConfigError, match="CHURN_SASL_USERNAME"):
        confluent_config(settings)
    with pytest.raises(ConfigError, match="CHURN_SASL_USERNAME"):
        faust_broker_kwargs(settings)
    no_password = sasl().model_copy(update={"sasl_password": SecretStr("")})
    with pytest.raises(ConfigError, match="CHURN_SASL_PASSWORD"):
        confluent_config(no_password)


def test_faust_plaintext_is_just_the_broker_url() -> None:
    settings = Settings(bootstrap_servers="k1:9092,k2:9092")
    assert faust_broker_kwargs(settings) == {"broker": "kafka://k1:9092;k2:9092"}
    assert faust_broker_url(Settings(), bootstrap="127.0.0.1:19092") == "kafka://127.0.0.1:19092"


def test_faust_sasl_plaintext_credentials() -> None:
    creds = faust_broker_kwargs(sasl("SASL_PLAINTEXT"))["broker_credentials"]
    assert isinstance(creds, faust.SASLCredentials)
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("svc-churn", PASSWORD)
    assert auth["ssl_context"] is None
    assert PASSWORD not in repr(creds)


def test_faust_sasl_ssl_credentials_carry_a_tls_context() -> None:
    kwargs = faust_broker_kwargs(sasl("SASL_SSL", ssl_cafile=certifi.where()))
    auth = credentials_to_aiokafka_auth(kwargs["broker_credentials"])
    assert auth["security_protocol"] == "SASL_SSL"
    assert isinstance(auth["ssl_context"], ssl.SSLContext)
    assert auth["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_faust_ssl_credentials() -> None:
    settings = Settings(bootstrap_servers="k1:9093", security_protocol="SSL", ssl_cafile=certifi.where())
    creds = faust_broker_kwargs(settings)["broker_credentials"]
    assert isinstance(creds, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(creds)["security_protocol"] == "SSL"


def test_unreadable_ca_file_names_the_variable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(bootstrap_servers="k1:9093", security_protocol="SSL", ssl_cafile=str(tmp_path / "none.pem"))
    with pytest.raises(ConfigError, match="CHURN_SSL_CAFILE"):
        faust_broker_kwargs(settings)


# --- connection failures name the settings (stream.topics.connect_admin) ----------------------

SASL_CONFIG = {
    "bootstrap.servers": "k1:9092",
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "svc-churn",
    "sasl.password": PASSWORD,
}
# Lines librdkafka 2.x logs (facility FAIL) and reports to error_cb, as seen against a plaintext listener.
AUTH_FAIL = (
    "[thrd:sasl_plaintext://k1:9092/bootstrap]: sasl_plaintext://k1:9092/bootstrap: SASL SCRAM-SHA-512 mechanism "
    "handshake failed: Broker: Unsupported SASL mechanism (after 0ms in state AUTH_HANDSHAKE)"
)
TLS_TIMEOUT = (
    "[thrd:sasl_ssl://k1:9092/bootstrap]: sasl_ssl://k1:9092/bootstrap: Connection setup timed out in state "
    "SSL_HANDSHAKE (after 5004ms in state SSL_HANDSHAKE)"
)


def test_refused_sasl_login_is_a_config_error_naming_the_protocol() -> None:
    from confluent_kafka import KafkaError

    from stream.kafka.topics import _mismatch

    error = _mismatch(SASL_CONFIG, [KafkaError(KafkaError._AUTHENTICATION, "k1:9092/1: auth failed")], [])
    assert isinstance(error, ConfigError)
    assert "CHURN_SECURITY_PROTOCOL=SASL_SSL" in str(error) and "CHURN_SASL_USERNAME=svc-churn" in str(error)
    assert PASSWORD not in str(error)
    logged = _mismatch({**SASL_CONFIG, "security.protocol": "SASL_PLAINTEXT"}, [], [AUTH_FAIL])
    assert str(logged).startswith("the Kafka broker at k1:9092 refused the SASL login (CHURN_SECURITY_PROTOCOL=")
    assert ": SASL SCRAM-SHA-512 mechanism handshake failed" in str(logged) and "[thrd:" not in str(logged)


def test_tls_handshake_that_never_completes_is_a_config_error() -> None:
    from confluent_kafka import KafkaError

    from stream.kafka.topics import _mismatch

    error = _mismatch(SASL_CONFIG, [], [TLS_TIMEOUT])
    assert isinstance(error, ConfigError)
    assert "no TLS session" in str(error) and "plaintext listener" in str(error)
    assert "CHURN_SECURITY_PROTOCOL=SASL_SSL" in str(error) and "\n" not in str(error)
    verify = "sasl_ssl://k1:9092/1: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed"
    untrusted = _mismatch(SASL_CONFIG, [KafkaError(KafkaError._SSL, verify)], [])
    assert "set CHURN_SSL_CAFILE to the CA" in str(untrusted) and "SSL routines" in str(untrusted)


def test_an_unreachable_broker_is_not_a_config_mismatch() -> None:
    from stream.kafka.topics import _mismatch

    refused = "[thrd:k1:9092/bootstrap]: k1:9092/bootstrap: Connect to ipv4#10.0.0.1:9092 failed: Connection refused"
    assert _mismatch({"bootstrap.servers": "k1:9092", "security.protocol": "PLAINTEXT"}, [], [refused]) is None


def test_connect_admin_gives_up_on_a_closed_port_naming_the_bootstrap_setting() -> None:
    import time

    from stream.errors import BrokerError
    from stream.kafka.topics import connect_admin
    from stream.local.broker import free_port

    start = time.monotonic()
    with pytest.raises(BrokerError, match="CHURN_BOOTSTRAP_SERVERS") as info:
        connect_admin({"bootstrap.servers": f"127.0.0.1:{free_port()}", "security.protocol": "PLAINTEXT"}, timeout=1)
    assert time.monotonic() - start < 5
    assert "Connection refused" in str(info.value)
