"""Passwords and tokens the settings load never appear in an error's message."""

import logging

import pytest

from stream.errors import BrokerError, RegistryError
from stream.settings import Settings

pytestmark = pytest.mark.unit


def test_every_secret_setting_reads_as_stars_in_an_error(caplog):
    Settings(
        sasl_username="ci",
        sasl_password="kafka-pw-1",
        mlflow_username="ci",
        mlflow_password="mlflow-pw-2",
        mlflow_tracking_uri="https://ci:uri-pw-4@mlflow.internal:5000",
    )
    Settings(mlflow_token="tok-3")
    quoted = "http://ci:uri-pw-4@mlflow.internal:5000 said no to kafka-pw-1, mlflow-pw-2 and tok-3"
    for error in (RegistryError(quoted), BrokerError(quoted)):
        assert str(error) == "http://ci:***@mlflow.internal:5000 said no to ***, *** and ***"
    with caplog.at_level(logging.ERROR):
        logging.getLogger("churn.test").error("failed: %s", RegistryError(quoted))
    assert "pw" not in caplog.text and "tok-3" not in caplog.text


def test_the_shown_tracking_uri_keeps_the_user_and_hides_the_password():
    shown = Settings(mlflow_tracking_uri="https://reader:p%40ss@mlflow.internal/prefix").shown_tracking_uri()
    assert shown == "https://reader:***@mlflow.internal/prefix"
    assert Settings(mlflow_tracking_uri="https://mlflow.internal").shown_tracking_uri() == "https://mlflow.internal"
