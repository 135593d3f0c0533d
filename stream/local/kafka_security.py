"""TLS and SASL/SCRAM for the Kafka launcher: a throwaway PKI and the broker settings that use it.

:func:`make_pki` writes, with ``openssl``, a CA, a broker certificate for the loopback
address (IP and DNS subject names, so clients verify the host), a client certificate
for mutual TLS, and a second CA that signed nothing the broker holds (a client that
trusts only it must fail). :class:`BrokerSecurity` turns that PKI and a set of SCRAM
users into what :class:`~stream.local.kafka_cluster.KafkaCluster` needs: the
``SASL_SSL`` listener's settings (PEM key and trust stores, SCRAM-SHA-512, optional
client certificates), the ``--add-scram`` arguments with which Kafka's storage tool
creates the users when it formats a node, and the standard authorizer that refuses
whatever no ACL allows.

The cluster keeps a ``PLAINTEXT`` listener for its own inter-broker and controller
traffic (principal ``User:ANONYMOUS``, a super user) on loopback; clients are given the
``SASL_SSL`` address only. ``admin`` is the other super user: it creates topics and
applies ACLs (:mod:`stream.kafka.acls`).

>>> sec = BrokerSecurity(pki=Pki(Path("/p")), users={"admin": "a", "churn-worker": "w"})
>>> sec.format_args()[:2]
['--add-scram', 'SCRAM-SHA-512=[name=admin,password=a]']
>>> sec.listener_config()["super.users"]
'User:ANONYMOUS;User:admin'
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from stream.errors import BrokerError, ConfigError

SCRAM_MECHANISM = "SCRAM-SHA-512"
SECURE_LISTENER = "SASL_SSL"
ADMIN_USER = "admin"
_DAYS = "2"
_USER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True)
class Pki:
    """The files :func:`make_pki` writes in ``directory``."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def broker_pem(self) -> Path:
        """The broker's private key (unencrypted PKCS#8) and certificate: a PEM key store."""
        return self.directory / "broker.pem"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.directory / "client.key"

    @property
    def other_ca_cert(self) -> Path:
        """A CA that signed nothing the broker holds."""
        return self.directory / "other-ca.pem"


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise BrokerError("openssl is not installed; it makes the certificates of a TLS test cluster")
    done = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise BrokerError(f"openssl {args[0]} failed: {' '.join(done.stderr.split())[:300]}")


def _ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", _DAYS, "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory)  # fmt: skip


def _signed(directory: Path, name: str, ca: str, extensions: str) -> None:
    """``name.key`` and ``name.crt``, signed by ``ca``, with the given X.509 v3 extensions."""
    (directory / f"{name}.ext").write_text(extensions + "\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory)  # fmt: skip
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-days", _DAYS, "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=directory)  # fmt: skip


def make_pki(directory: str | Path, host: str = "127.0.0.1") -> Pki:
    """A CA, a broker certificate for ``host`` and ``localhost``, a client certificate and a foreign CA."""
    pki = Pki(Path(directory))
    pki.directory.mkdir(parents=True, exist_ok=True)
    _ca(pki.directory, "ca")
    _ca(pki.directory, "other-ca")
    _signed(pki.directory, "broker", "ca", f"subjectAltName=IP:{host},DNS:localhost\nextendedKeyUsage=serverAuth")
    _signed(pki.directory, "client", "ca", "extendedKeyUsage=clientAuth")
    # Kafka reads an unencrypted PKCS#8 key followed by its certificate from one PEM key store.
    pki.broker_pem.write_text((pki.directory / "broker.key").read_text() + (pki.directory / "broker.crt").read_text())
    for secret in pki.directory.glob("*.key"):
        secret.chmod(0o600)
    return pki


@dataclass(frozen=True)
class BrokerSecurity:
    """A ``SASL_SSL`` listener with SCRAM users, TLS from ``pki``, and ACLs enforced when ``acls`` is true.

    ``users`` maps each SCRAM-SHA-512 user name to its password and must hold
    :data:`ADMIN_USER`. ``client_auth`` ``required`` asks every client for a certificate
    signed by the PKI's CA as well (mutual TLS).
    """

    pki: Pki
    users: Mapping[str, str] = field(default_factory=dict)
    acls: bool = True
    client_auth: Literal["none", "required"] = "none"

    def __post_init__(self) -> None:
        if ADMIN_USER not in self.users:
            raise ConfigError(f"a secure test cluster needs the SCRAM user {ADMIN_USER!r}")
        for name in self.users:
            if not name or set(name) - _USER_CHARS:
                raise ConfigError(f"SCRAM user name {name!r}: use letters, digits, '-', '_' and '.'")

    def format_args(self) -> list[str]:
        """Arguments of ``kafka-storage format`` that create every SCRAM user with its password."""
        args: list[str] = []
        for name, password in self.users.items():
            if any(c in password for c in ",[]="):
                raise ConfigError(f"the password of SCRAM user {name!r} must not contain ',', '[', ']' or '='")
            args += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]"]
        return args

    def listener_config(self) -> dict[str, str]:
        """Broker settings for the ``SASL_SSL`` listener (its address is set per node by the cluster)."""
        prefix = f"listener.name.{SECURE_LISTENER.lower()}"
        config = {
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            f"{prefix}.sasl.enabled.mechanisms": SCRAM_MECHANISM,
            f"{prefix}.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.pki.broker_pem),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.pki.ca_cert),
            f"{prefix}.ssl.client.auth": self.client_auth,
            "super.users": f"User:ANONYMOUS;User:{ADMIN_USER}",
        }
        if self.acls:
            config["authorizer.class.name"] = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
            config["allow.everyone.if.no.acl.found"] = "false"
        return config

    def client_config(self, bootstrap: str, user: str, password: str | None = None) -> dict[str, str]:
        """A librdkafka configuration for ``user`` (its own password unless given) on ``bootstrap``."""
        config = {
            "bootstrap.servers": bootstrap,
            "security.protocol": SECURE_LISTENER,
            "sasl.mechanism": SCRAM_MECHANISM,
            "sasl.username": user,
            "sasl.password": self.users.get(user, "") if password is None else password,
            "ssl.ca.location": str(self.pki.ca_cert),
        }
        if self.client_auth == "required":
            config["ssl.certificate.location"] = str(self.pki.client_cert)
            config["ssl.key.location"] = str(self.pki.client_key)
        return config

    def client_env(self, bootstrap: str, user: str, password: str | None = None) -> dict[str, str]:
        """The ``CHURN_*`` variables that make a churn-stream process connect as ``user``."""
        config = self.client_config(bootstrap, user, password)
        env = {
            "CHURN_BOOTSTRAP_SERVERS": bootstrap,
            "CHURN_SECURITY_PROTOCOL": SECURE_LISTENER,
            "CHURN_SASL_MECHANISM": SCRAM_MECHANISM,
            "CHURN_SASL_USERNAME": user,
            "CHURN_SASL_PASSWORD": config["sasl.password"],
            "CHURN_SSL_CAFILE": str(self.pki.ca_cert),
        }
        if self.client_auth == "required":
            env["CHURN_SSL_CERTFILE"] = str(self.pki.client_cert)
            env["CHURN_SSL_KEYFILE"] = str(self.pki.client_key)
        return env
