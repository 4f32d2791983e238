"""SASL_SSL mode of the local broker (``KAFKA_SECURITY=sasl_ssl``), used by local_kafka.py.

Everything lives in the broker's state folder (``<cache>/broker-<port>-sasl_ssl``, 0700), made on first use:
  tls/ca.crt            a throw-away CA (PEM; what clients trust: SSL_CA_LOCATION); its key tls/ca.key
  tls/broker.pem        the broker's key and certificate chain signed by that CA (SAN 127.0.0.1, localhost);
                        tls/broker.p12 instead when made with keytool
  tls/<user>.crt, .key  client certificates CN=producer, CN=consumer (mutual TLS; openssl only)
  secrets/<user>.password  random passwords of the SCRAM-SHA-512 users admin, producer, consumer
Folders 0700, keys, key stores, passwords and server.properties (the admin's JAAS line) 0600. The users
are created when the storage is formatted (``kafka-storage format --add-scram``, run by ``storage_format``
from a 0600 argument file: no password on any command line; keytool reads its store password from the
environment). The broker runs KRaft's StandardAuthorizer with ``admin`` (and the broker's own
certificate, on the mutual-TLS controller listener) as super users, ``allow.everyone.if.no.acl.found=false``,
no topic auto-creation, a mutual-TLS client listener on KAFKA_PORT+2 (CN=producer/consumer are those users)
and, after start-up, the pipeline's topics created as admin and the least-privilege ACLs of
login_common.acls for the producer and consumer users (topic names from INPUT_TOPIC, OUTPUT_TOPIC,
DLQ_TOPIC, GROUP_ID, else the defaults). Certificates come from ``openssl`` (EC P-256, milliseconds), or
from ``keytool`` (shipped with every JDK; a JVM start per step) where openssl is missing.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Final

from login_devtools import ROOT

MODES: Final = ("plaintext", "sasl_ssl")
USERS: Final = ("admin", "producer", "consumer")
CERT_USERS: Final = ("producer", "consumer")  # client certificates for the mutual-TLS listener
MTLS_PORT_OFFSET: Final = 2  # the mutual-TLS listener: KAFKA_PORT+2
MECHANISM: Final = "SCRAM-SHA-512"
BROKER_CN: Final = "login-stream-broker"
CERT_DAYS: Final = 30
SAN: Final = "SAN=dns:localhost,ip:127.0.0.1"
SAN_OPENSSL: Final = "DNS:localhost,IP:127.0.0.1"


class SecuritySetupError(Exception):
    pass


def mode() -> str:
    raw = os.environ.get("KAFKA_SECURITY", "plaintext").strip().lower() or "plaintext"
    if raw not in MODES:
        raise SecuritySetupError(f"KAFKA_SECURITY={raw!r}: must be one of {', '.join(MODES)}")
    return raw


def enabled() -> bool:
    return mode() == "sasl_ssl"


class SecureBroker:
    """Files, server properties, client settings and ACLs of one SASL_SSL broker."""

    def __init__(self, state: Path, port: int) -> None:
        self.state = state
        self.port = port
        self.tls = state / "tls"
        self.secrets = state / "secrets"
        self.ca_cert = self.tls / "ca.crt"
        self.pem_keystore = self.tls / "broker.pem"
        self.keystore = self.tls / "broker.p12"

    # ---------------------------------------------------------------- files

    def password_file(self, user: str) -> Path:
        return self.secrets / f"{user}.password"

    def password(self, user: str) -> str:
        return self.password_file(user).read_text(encoding="utf-8")

    def prepare(self, java: str) -> None:
        """Create passwords, CA and broker certificate unless they exist (idempotent)."""
        private_dir(self.state)
        private_dir(self.secrets)
        for user in (*USERS, "keystore"):
            path = self.password_file(user)
            if not path.exists():
                private_file(path, secrets.token_urlsafe(24))
            path.chmod(0o600)
        if self.ca_cert.exists() and (self.pem_keystore.exists() or self.keystore.exists()):
            self._client_certificates()
            return
        shutil.rmtree(self.tls, ignore_errors=True)
        private_dir(self.tls)
        make_ca(java, self.tls, "login-stream-local-ca", self.password("keystore"))
        if shutil.which("openssl"):
            self._broker_certificate_openssl()
        else:
            self._broker_certificate_keytool(java)
        self._client_certificates()
        for path in self.tls.iterdir():  # keys and key stores: the owner's only (ca.crt stays readable)
            path.chmod(0o644 if path == self.ca_cert else 0o600)

    def client_certificate(self, user: str) -> tuple[Path, Path]:
        """(certificate, key) PEM files of ``user``'s client certificate (CN=<user>), for mutual TLS."""
        return self.tls / f"{user}.crt", self.tls / f"{user}.key"

    def _client_certificates(self) -> None:
        """A client certificate per service user, signed by the local CA (openssl only: librdkafka needs
        the key as PEM, which keytool cannot write). Without openssl there is no mutual-TLS listener."""
        ca_key = self.tls / "ca.key"
        if not shutil.which("openssl") or not ca_key.exists():
            return
        for user in CERT_USERS:
            cert, key = self.client_certificate(user)
            if cert.exists() and key.exists():
                continue
            csr = self.tls / f"{user}.csr"
            key.touch(mode=0o600)
            openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={user}")  # fmt: skip
            openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey", str(ca_key),
                    "-CAcreateserial", "-out", str(cert), "-days", str(CERT_DAYS))  # fmt: skip
            csr.unlink()
            key.chmod(0o600)

    @property
    def mtls(self) -> bool:
        """True when the client certificates exist: the broker then opens its mutual-TLS listener."""
        return all(path.exists() for user in CERT_USERS for path in self.client_certificate(user))

    @property
    def mtls_port(self) -> int:
        return self.port + MTLS_PORT_OFFSET

    def _broker_certificate_openssl(self) -> None:
        key, csr, signed, ext = (self.tls / n for n in ("broker.key", "broker.csr", "broker.crt", "san.cnf"))
        ext.write_text(f"subjectAltName={SAN_OPENSSL}\n")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={BROKER_CN}")  # fmt: skip
        openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey", str(self.tls / "ca.key"),
                "-CAcreateserial", "-out", str(signed), "-days", str(CERT_DAYS),
                "-extfile", str(ext))  # fmt: skip
        # Kafka's PEM key store: the (unencrypted PKCS#8) key, then the chain
        self.pem_keystore.touch(mode=0o600)
        self.pem_keystore.write_text(key.read_text() + signed.read_text() + self.ca_cert.read_text())
        for path in (key, csr, ext):
            path.unlink()

    def _broker_certificate_keytool(self, java: str) -> None:
        ca_store = self.tls / "ca.p12"
        csr = self.tls / "broker.csr"
        signed = self.tls / "broker.crt"
        common = ["-storetype", "PKCS12", "-storepass:env", STORE_ENV]
        store = {STORE_ENV: self.password("keystore")}
        keytool(java, "-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048",
                "-dname", f"CN={BROKER_CN}", "-ext", SAN, "-validity", str(CERT_DAYS),
                "-keystore", str(self.keystore), *common, env=store)  # fmt: skip
        keytool(java, "-certreq", "-alias", "broker", "-file", str(csr), "-keystore", str(self.keystore),
                *common, env=store)  # fmt: skip
        keytool(java, "-gencert", "-alias", "ca", "-infile", str(csr), "-outfile", str(signed), "-rfc",
                "-ext", SAN, "-validity", str(CERT_DAYS), "-keystore", str(ca_store), *common,
                env=store)  # fmt: skip
        keytool(java, "-importcert", "-noprompt", "-alias", "ca", "-file", str(self.ca_cert),
                "-keystore", str(self.keystore), *common, env=store)  # fmt: skip
        keytool(java, "-importcert", "-noprompt", "-alias", "broker", "-file", str(signed),
                "-keystore", str(self.keystore), *common, env=store)  # fmt: skip
        csr.unlink()

    # ---------------------------------------------------------------- broker

    def properties(self) -> list[str]:
        """server.properties lines; written after the plaintext ones, so these win."""
        p = self.port
        admin_jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="admin" password="{self.password("admin")}";'
        )
        if self.pem_keystore.exists():
            keystore = ["ssl.keystore.type=PEM", f"ssl.keystore.location={self.pem_keystore}"]
        else:
            store = self.password("keystore")
            keystore = [
                "ssl.keystore.type=PKCS12",
                f"ssl.keystore.location={self.keystore}",
                f"ssl.keystore.password={store}",
                f"ssl.key.password={store}",
            ]
        mtls = f",MTLS://127.0.0.1:{self.mtls_port}" if self.mtls else ""
        return [
            f"listeners=SASL_SSL://127.0.0.1:{p},CONTROLLER://127.0.0.1:{p + 1}{mtls}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{p},CONTROLLER://127.0.0.1:{p + 1}{mtls}",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL,MTLS:SSL",
            "inter.broker.listener.name=SASL_SSL",
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config={admin_jaas}",
            *keystore,
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.ca_cert}",
            # the controller listener: mutual TLS, only the broker's own certificate gets in
            "listener.name.controller.ssl.client.auth=required",
            # the MTLS listener: clients authenticate with a certificate of the local CA; CN=producer and
            # CN=consumer are the users producer and consumer (the same ACLs as over SCRAM); any other
            # subject keeps its whole DN (the broker's own: CN=login-stream-broker, a super user)
            "listener.name.mtls.ssl.client.auth=required",
            f"ssl.principal.mapping.rules=RULE:^CN=({'|'.join(CERT_USERS)})$/$1/,DEFAULT",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users=User:admin;User:CN={BROKER_CN}",
            "allow.everyone.if.no.acl.found=false",
            # topics are created by admin (the pipeline's at start-up, local_kafka.py), never by a
            # producer's metadata request: a missing topic is reported as missing, not created
            "auto.create.topics.enable=false",
        ]

    def format_args(self) -> list[str]:
        """``kafka-storage format`` arguments creating the SCRAM users (secrets: pass them through
        ``storage_format``'s argument file, never on a command line)."""
        out: list[str] = []
        for user in USERS:
            out += ["--add-scram", f"{MECHANISM}=[name={user},password={self.password(user)}]"]
        return out

    # ---------------------------------------------------------------- clients

    def client_env(self, user: str) -> dict[str, str]:
        """The services' environment variables for ``user`` (a password file, never the password)."""
        return {
            "SECURITY_PROTOCOL": "SASL_SSL",
            "SASL_MECHANISM": MECHANISM,
            "SASL_USERNAME": user,
            "SASL_PASSWORD_FILE": str(self.password_file(user)),
            "SSL_CA_LOCATION": str(self.ca_cert),
        }

    def client_env_mtls(self, user: str) -> dict[str, str]:
        """The services' environment for ``user`` on the mutual-TLS listener (a client certificate)."""
        cert, key = self.client_certificate(user)
        return {
            "SECURITY_PROTOCOL": "SSL",
            "SSL_CA_LOCATION": str(self.ca_cert),
            "SSL_CERTIFICATE_LOCATION": str(cert),
            "SSL_KEY_LOCATION": str(key),
        }

    def client_config_mtls(self, user: str) -> dict[str, Any]:
        """librdkafka properties for ``user`` on the mutual-TLS listener."""
        cert, key = self.client_certificate(user)
        return {
            "bootstrap.servers": f"127.0.0.1:{self.mtls_port}",
            "security.protocol": "ssl",
            "ssl.ca.location": str(self.ca_cert),
            "ssl.certificate.location": str(cert),
            "ssl.key.location": str(key),
        }

    def client_config(self, user: str) -> dict[str, Any]:
        """librdkafka properties for ``user`` (password included)."""
        return {
            "bootstrap.servers": f"127.0.0.1:{self.port}",
            "security.protocol": "sasl_ssl",
            "sasl.mechanism": MECHANISM,
            "sasl.username": user,
            "sasl.password": self.password(user),
            "ssl.ca.location": str(self.ca_cert),
        }

    def describe(self) -> str:
        lines = [
            f"security:  SASL_SSL, {MECHANISM}, CA {self.ca_cert}",
            "client settings (passwords in the files):",
        ]
        for user in USERS:
            env = self.client_env(user)
            lines.append(
                f"  {user:<9} SECURITY_PROTOCOL=SASL_SSL SASL_USERNAME={user} "
                f"SASL_PASSWORD_FILE={env['SASL_PASSWORD_FILE']} SSL_CA_LOCATION={env['SSL_CA_LOCATION']}"
            )
        if self.mtls:
            lines.append(f"mutual TLS (client certificates) at 127.0.0.1:{self.mtls_port}:")
            for user in CERT_USERS:
                env = self.client_env_mtls(user)
                lines.append(
                    f"  {user:<9} BOOTSTRAP_SERVERS=127.0.0.1:{self.mtls_port} SECURITY_PROTOCOL=SSL "
                    f"SSL_CERTIFICATE_LOCATION={env['SSL_CERTIFICATE_LOCATION']} "
                    f"SSL_KEY_LOCATION={env['SSL_KEY_LOCATION']} SSL_CA_LOCATION={env['SSL_CA_LOCATION']}"
                )
        return "\n".join(lines)

    # ---------------------------------------------------------------- ACLs

    def grant(self, acls_by_user: dict[str, list[Any]], timeout: float = 30.0) -> int:
        """Create the ACLs (Acl lists by user name) as admin; existing ones stay. Returns their count once
        the broker enforces them all.

        KRaft: CreateAcls answers once the controller has committed the records; the broker's authorizer
        applies them when its metadata publisher reaches them, a moment later (seconds on a loaded
        machine). A client let in before that is refused (TOPIC_AUTHORIZATION_FAILED for a right it has:
        seen here). DescribeAcls is answered from the broker's authorizer, so it is asked until every
        binding is there."""
        from confluent_kafka.admin import AdminClient

        bindings = [acl_binding(user, rule) for user, acls in acls_by_user.items() for rule in _rules(acls)]
        client = AdminClient({**self.client_config("admin"), "log_level": 3})
        for future in client.create_acls(bindings, request_timeout=timeout).values():
            future.result(timeout=timeout)
        deadline = time.monotonic() + timeout
        missing = set(bindings)
        while True:
            missing -= set(client.describe_acls(_any_acl(), request_timeout=timeout).result(timeout=timeout))
            if not missing:
                return len(bindings)
            if time.monotonic() > deadline:
                raise SecuritySetupError(
                    f"{len(missing)} of {len(bindings)} ACLs created but not in effect on the broker "
                    f"within {timeout:.0f}s"
                )
            time.sleep(0.2)

    def create_topics(self, topics: dict[str, int], timeout: float = 30.0) -> list[str]:
        """Create the topics that do not exist yet, as admin (the services' users may not); their names."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

        client = AdminClient({**self.client_config("admin"), "log_level": 3})
        existing = set(client.list_topics(timeout=timeout).topics)
        wanted = [NewTopic(name, num_partitions=n) for name, n in topics.items() if name not in existing]
        created: list[str] = []
        for name, future in client.create_topics(wanted, request_timeout=timeout).items() if wanted else ():
            try:
                future.result(timeout=timeout)
                created.append(name)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise SecuritySetupError(f"could not create topic {name} as admin: {exc}") from exc
        return created


def _any_acl() -> Any:
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    # None matches any name, principal and host (confluent-kafka's AclBindingFilter; its stubs say str)
    return AclBindingFilter(
        ResourceType.ANY,
        None,  # type: ignore[arg-type]
        ResourcePatternType.ANY,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        AclOperation.ANY,
        AclPermissionType.ANY,
    )


def _rules(acls: list[Any]) -> list[tuple[str, str, str, str]]:
    return sorted(rule for acl in acls for rule in acl.rules())


def acl_binding(user: str, rule: tuple[str, str, str, str]) -> Any:
    """A confluent-kafka AclBinding allowing ``User:<user>`` one (resource, name, pattern, operation)."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    resource, name, pattern, operation = rule
    types = {
        "topic": ResourceType.TOPIC,
        "group": ResourceType.GROUP,
        "transactionalId": ResourceType.TRANSACTIONAL_ID,
        "cluster": ResourceType.BROKER,  # librdkafka's name of Kafka's CLUSTER resource
    }
    op = AclOperation[_snake(operation).upper()]
    patterns = {"literal": ResourcePatternType.LITERAL, "prefix": ResourcePatternType.PREFIXED}
    return AclBinding(
        types[resource], name, patterns[pattern], f"User:{user}", "*", op, AclPermissionType.ALLOW
    )


def _snake(pascal: str) -> str:
    return "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(pascal))


def service_acls() -> dict[str, list[Any]]:
    """The producer's and consumer's ACLs for the topic names in the environment (or the defaults)."""
    sys.path.insert(0, str(ROOT / "libs" / "common" / "src"))  # works without the package installed
    from login_common.acls import consumer_acls, producer_acls

    env = os.environ
    topic_in = env.get("INPUT_TOPIC") or "user-login"
    return {
        "producer": producer_acls(topic_in),
        "consumer": consumer_acls(
            topic_in,
            env.get("OUTPUT_TOPIC") or "processed-logins",
            env.get("DLQ_TOPIC") or "user-login-dlq",
            env.get("GROUP_ID") or "login-consumer",
        ),
    }


def private_dir(path: Path) -> Path:
    """A folder only its owner may enter (0700), created if needed."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def private_file(path: Path, text: str) -> Path:
    """Write ``text`` to a file only its owner may read (0600), never readable by others meanwhile."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text, encoding="utf-8")
    return path


def _argfile_quote(arg: str) -> str:
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def storage_format(java: str, classpath: str, folder: Path, args: list[str]) -> None:
    """Run ``kafka.tools.StorageTool format <args>`` with every argument in a 0600 argument file.

    The java launcher expands ``@file`` in place of the main class and its arguments, so the SCRAM
    passwords of ``--add-scram`` (Kafka 4.3's StorageTool takes them nowhere else: no option reads them
    from a file or stdin) never appear in the process's command line (``ps``, /proc/<pid>/cmdline).
    """
    argfile = folder / ".storage-format.args"
    private_file(argfile, "\n".join(map(_argfile_quote, ["kafka.tools.StorageTool", "format", *args])) + "\n")
    try:
        subprocess.run([java, "-cp", classpath, f"@{argfile}"], check=True, stdout=subprocess.DEVNULL)
    finally:
        argfile.unlink(missing_ok=True)


STORE_ENV: Final = "LOGIN_STREAM_KEYSTORE_PASSWORD"  # keytool -storepass:env: not on the command line


def service_topics() -> dict[str, int]:
    """The pipeline's topics (names from the environment, else the defaults) and their partitions, as
    `make run` and the demo create them; the consumer creates its own internal topics (its Create ACL)."""
    env = os.environ
    return {
        env.get("INPUT_TOPIC") or "user-login": 6,
        env.get("OUTPUT_TOPIC") or "processed-logins": 6,
        env.get("DLQ_TOPIC") or "user-login-dlq": 1,
    }


def keytool(java: str, *args: str, env: dict[str, str] | None = None) -> None:
    tool = Path(java).resolve().parent / "keytool"
    exe = str(tool) if tool.exists() else shutil.which("keytool")
    if not exe:
        raise SecuritySetupError("`keytool` (part of every JDK) was not found next to java nor on PATH")
    done = subprocess.run(
        [exe, *args], capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}
    )
    if done.returncode != 0:
        raise SecuritySetupError(f"keytool {args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")


def openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SecuritySetupError(f"openssl {args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")


def make_ca(java: str, folder: Path, name: str, store_password: str) -> Path:
    """A self-signed CA: its certificate in ``folder/ca.crt`` (PEM), its key in ``ca.key`` (openssl) or
    ``ca.p12`` (keytool)."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("openssl"):
        key = folder / "ca.key"
        key.touch(mode=0o600)
        openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(key), "-out", str(folder / "ca.crt"), "-days", str(CERT_DAYS),
                "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
        return folder / "ca.crt"
    store = ["-storetype", "PKCS12", "-storepass:env", STORE_ENV, "-keystore", str(folder / "ca.p12")]
    env = {STORE_ENV: store_password}
    keytool(java, "-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048", "-dname", f"CN={name}",
            "-ext", "bc:c", "-validity", str(CERT_DAYS), *store, env=env)  # fmt: skip
    keytool(java, "-exportcert", "-rfc", "-alias", "ca", "-file", str(folder / "ca.crt"), *store, env=env)
    return folder / "ca.crt"


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID, base64url without padding, never starting with "-" (as Kafka's
    own ``Uuid.randomUuid`` draws again then): one in 64 would otherwise start with "-", which
    kafka-storage's option parser takes for an option after ``-t``."""
    while True:
        found = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not found.startswith("-"):
            return found
