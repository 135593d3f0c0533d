"""Kafka client configuration built from Settings."""

from __future__ import annotations

import ssl

import certifi
import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr

from stream.errors import ConfigError
from stream.kafka_config import bootstrap_hosts, confluent_config, faust_broker_kwargs, faust_broker_url
from stream.settings import Settings

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
    assert confluent_config(Settings(bootstrap_servers=" k1:9092 , k2:9092 ")) == {
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
    assert config == {"bootstrap.servers": "k1:9093", "security.protocol": "SSL", "ssl.ca.location": "/ca.pem"}


def test_sasl_without_username_fails_naming_the_variable() -> None:
    settings = Settings(bootstrap_servers="k1:9092", security_protocol="SASL_SSL")
    with pytest.raises(ConfigError, match="CHURN_SASL_USERNAME"):
        confluent_config(settings)
    with pytest.raises(ConfigError, match="CHURN_SASL_USERNAME"):
        faust_broker_kwargs(settings)


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
