"""Kafka client security settings: librdkafka properties, bad combinations named, secrets never shown."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from login_common.errors import ConfigError
from login_common.settings import env_help, load_settings
from login_consumer.config import ConsumerSettings
from login_producer.config import ProducerSettings

SECURITY_VARS = (
    "SECURITY_PROTOCOL",
    "SASL_MECHANISM",
    "SASL_USERNAME",
    "SASL_PASSWORD",
    "SASL_PASSWORD_FILE",
    "SSL_CA_LOCATION",
    "SSL_CERTIFICATE_LOCATION",
    "SSL_KEY_LOCATION",
    "SSL_KEY_PASSWORD",
    "SSL_KEY_PASSWORD_FILE",
)
ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-Pa55w0rd"  # noqa: S105 - a test value, checked never to leak


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in SECURITY_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def pems(tmp_path: Path) -> dict[str, str]:
    """Files as a Kubernetes Secret volume mounts them: one file per key."""
    files = {
        "ca.crt": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
        "user.crt": "-----BEGIN CERTIFICATE-----\ny\n-----END CERTIFICATE-----\n",
        "user.key": "-----BEGIN PRIVATE KEY-----\nz\n-----END PRIVATE KEY-----\n",
        "password": SECRET,  # Strimzi's user Secret: the bare password, no newline
        "password-nl": SECRET + "\n",  # written by hand with echo
        "empty": "",
    }
    out = {}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        out[name] = str(tmp_path / name)
    return out


def test_plaintext_default_adds_nothing() -> None:
    for model in (ConsumerSettings, ProducerSettings):
        settings = load_settings(model)
        assert settings.security_protocol == "PLAINTEXT"
        assert settings.kafka_common() == {"bootstrap.servers": settings.bootstrap_servers}


@pytest.mark.parametrize("model", [ConsumerSettings, ProducerSettings])
@pytest.mark.parametrize("password_key", ["password", "password-nl"])
def test_sasl_ssl_with_a_password_file(
    monkeypatch: pytest.MonkeyPatch, pems: dict[str, str], model: type, password_key: str
) -> None:
    monkeypatch.setenv("SECURITY_PROTOCOL", "sasl_ssl")  # case does not matter
    monkeypatch.setenv("SASL_USERNAME", "login-consumer")
    monkeypatch.setenv("SASL_PASSWORD_FILE", pems[password_key])
    monkeypatch.setenv("SSL_CA_LOCATION", pems["ca.crt"])
    config = load_settings(model).kafka_common()
    assert config == {
        "bootstrap.servers": os.environ.get("BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "login-consumer",
        "sasl.password": SECRET,
        "ssl.ca.location": pems["ca.crt"],
    }


def test_mutual_tls(monkeypatch: pytest.MonkeyPatch, pems: dict[str, str]) -> None:
    monkeypatch.setenv("SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("SSL_CA_LOCATION", pems["ca.crt"])
    monkeypatch.setenv("SSL_CERTIFICATE_LOCATION", pems["user.crt"])
    monkeypatch.setenv("SSL_KEY_LOCATION", pems["user.key"])
    settings = load_settings(ConsumerSettings)
    assert settings.mutual_tls
    assert settings.kafka_common() == {
        "bootstrap.servers": os.environ.get("BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        "security.protocol": "ssl",
        "ssl.ca.location": pems["ca.crt"],
        "ssl.certificate.location": pems["user.crt"],
        "ssl.key.location": pems["user.key"],
    }


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SASL_USERNAME": "u"}, "SASL_USERNAME is set but SECURITY_PROTOCOL=PLAINTEXT"),
        ({"SSL_CA_LOCATION": "ca.crt"}, "SSL_CA_LOCATION is set but SECURITY_PROTOCOL=PLAINTEXT"),
        (
            {"SECURITY_PROTOCOL": "SSL", "SASL_USERNAME": "u"},
            "SASL_USERNAME is set but SECURITY_PROTOCOL=SSL",
        ),
        ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_PASSWORD": SECRET}, "SASL_USERNAME is empty"),
        ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_USERNAME": "u"}, "SASL_PASSWORD (or SASL_PASSWORD_FILE)"),
        (
            {
                "SECURITY_PROTOCOL": "SASL_SSL",
                "SASL_USERNAME": "u",
                "SASL_PASSWORD": SECRET,
                "SASL_PASSWORD_FILE": "password",
            },
            "SASL_PASSWORD and SASL_PASSWORD_FILE are both set",
        ),
        (
            {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_USERNAME": "u", "SASL_PASSWORD_FILE": "missing"},
            "SASL_PASSWORD_FILE='{dir}/missing': cannot read",
        ),
        (
            {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_USERNAME": "u", "SASL_PASSWORD_FILE": "empty"},
            "SASL_PASSWORD_FILE='{dir}/empty': the file is empty",
        ),
        (
            {
                "SECURITY_PROTOCOL": "SASL_SSL",
                "SASL_USERNAME": "u",
                "SASL_PASSWORD": SECRET,
                "SSL_CA_LOCATION": "nope",
            },
            "SSL_CA_LOCATION='{dir}/nope': no such file",
        ),
        (
            {"SECURITY_PROTOCOL": "SSL", "SSL_CERTIFICATE_LOCATION": "user.crt"},
            "SSL_KEY_LOCATION is empty but SSL_CERTIFICATE_LOCATION is set",
        ),
        (
            {"SECURITY_PROTOCOL": "SSL", "SSL_KEY_LOCATION": "user.key"},
            "SSL_CERTIFICATE_LOCATION is empty but SSL_KEY_LOCATION is set",
        ),
        (
            {"SECURITY_PROTOCOL": "SSL", "SSL_KEY_PASSWORD": SECRET},
            "SSL_KEY_PASSWORD is set but SSL_KEY_LOCATION",
        ),
        ({"SECURITY_PROTOCOL": "TLS"}, "SECURITY_PROTOCOL='TLS'"),
        ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "GSSAPI"}, "SASL_MECHANISM='GSSAPI'"),
    ],
)
def test_bad_combinations_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, pems: dict[str, str], env: dict[str, str], named: str
) -> None:
    folder = str(Path(pems["ca.crt"]).parent)
    for var, value in env.items():
        path_like = var.endswith(("_LOCATION", "_FILE"))
        monkeypatch.setenv(var, f"{folder}/{value}" if path_like else value)
    with pytest.raises(ConfigError) as info:
        load_settings(ConsumerSettings)
    message = str(info.value)
    assert named.format(dir=folder) in message
    assert SECRET not in message


def test_secrets_never_shown(monkeypatch: pytest.MonkeyPatch, pems: dict[str, str]) -> None:
    monkeypatch.setenv("SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SASL_USERNAME", "producer")
    monkeypatch.setenv("SASL_PASSWORD", SECRET)
    monkeypatch.setenv("SSL_CA_LOCATION", pems["ca.crt"])
    settings = load_settings(ProducerSettings)
    dumped = settings.safe_dump()
    assert dumped["sasl_password"] == "***"  # noqa: S105
    assert dumped["sasl_username"] == "producer"
    assert dumped["ssl_key_password"] == ""
    for text in (repr(settings), str(settings), str(dumped), env_help(ProducerSettings)):
        assert SECRET not in text
    assert settings.kafka_common()["sasl.password"] == SECRET  # revealed only to the client


def test_a_bad_secret_value_is_masked_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SASL_USERNAME", "producer")
    monkeypatch.setenv("SASL_PASSWORD", SECRET)
    with pytest.raises(ConfigError) as info:
        load_settings(ProducerSettings, sasl_password=["not", "a", "string", SECRET])
    assert "SASL_PASSWORD='***'" in str(info.value)
    assert SECRET not in str(info.value)


# Kafka clients and helpers whose first argument is the client configuration (or a bootstrap address).
_CLIENT_CALLS = {
    "admin",
    "ensure_topics",
    "broker_reachable",
    "wait_for_broker",
    "AdminClient",
    "Consumer",
    "Producer",
}
_SERVICE_SOURCES = [
    ROOT / "libs" / "common" / "src",
    ROOT / "services" / "producer" / "src",
    ROOT / "services" / "consumer" / "src",
]


def _plaintext_clients(path: Path) -> list[str]:
    """Calls in ``path`` building a Kafka client from the bare address, without the security settings."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        first = node.args[0]
        bare = isinstance(first, ast.Attribute) and first.attr == "bootstrap_servers"
        literal = isinstance(first, ast.Dict) and any(
            isinstance(k, ast.Constant) and k.value == "bootstrap.servers" for k in first.keys
        )
        if name in _CLIENT_CALLS and (bare or literal):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}({ast.unparse(first)[:60]})")
    return found


def test_every_kafka_client_of_the_services_gets_the_security_settings() -> None:
    """A client built from ``settings.bootstrap_servers`` alone would connect in PLAINTEXT to a secured
    broker: every client and helper takes ``settings.kafka_common()`` (address + security) instead."""
    helpers = ROOT / "libs" / "common" / "src" / "login_common" / "kafka.py"  # turns an address into a config
    offenders = [
        line
        for root in _SERVICE_SOURCES
        for path in sorted(root.rglob("*.py"))
        if path != helpers
        for line in _plaintext_clients(path)
    ]
    assert not offenders, "use settings.kafka_common():\n" + "\n".join(offenders)
