"""Redis passwords and TLS, PostgreSQL sslmode and secrets from files, against real servers.

Each test starts its own redis-server or PostgreSQL cluster on a free port (never the shared
ones), with a throwaway CA and server certificate made by openssl, and stops it afterwards.
The project's settings are read in a fresh interpreter from the environment under test, so
what is checked is what a deployment given that environment would do.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.reference import REPO
from tests.support.servers import free_port
from tests.support.tls import openssl

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "s3cret/with:odd@chars#"  # noqa: S105  (a throwaway server's password)
SERVICE_VARIABLES = ("DATABASE_URL", "DB_", "REDIS_", "CELERY_BROKER")

pytestmark = pytest.mark.integration


def project_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The test environment with the service variables replaced by ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SERVICE_VARIABLES)}
    env.update(DJANGO_SETTINGS_MODULE="telemetry_project.settings")
    env.update(TELEMETRY_VAR_DIR=str(tmp_path / "var"), **variables)
    return env


def run_python(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


BROKER_CHECK = """
import django
django.setup()
from telemetry_project.celery import app
with app.connection_for_write() as connection:
    connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0.1)
    connection.default_channel.client.set("probe", "ok")
    print("connected", connection.default_channel.client.get("probe"))
"""


def broker_connects(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_python(env, BROKER_CHECK)


# --- Certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


def make_certificates(folder: Path) -> Certificates:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost, signed by it."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        folder / name for name in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=telemetry test CA", "-keyout", ca_key, "-out", ca)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", key, "-out", csr)  # fmt: skip
    extensions = folder / "server.ext"
    extensions.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-days", "2", "-extfile", extensions, "-out", cert)  # fmt: skip
    key.chmod(0o600)
    return Certificates(ca=ca, cert=cert, key=key)


# --- Redis ----------------------------------------------------------------------------------


def redis_supports_tls() -> bool:
    """Debian's redis-server is linked against OpenSSL; a build without it lacks --tls-port."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        return False
    libraries = subprocess.run(
        ["ldd", redis_server], capture_output=True, text=True, check=False, timeout=30
    ).stdout
    return "libssl" in libraries


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listens on {port}: {log.read_text()}")


def start_redis(folder: Path, *options: str) -> RedisServer:
    """A redis-server on a free port: ``{port}`` in ``options`` stands for it (TLS setups)."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "redis.log"
    arguments = [str(port) if option == "{port}" else option for option in options]
    if "--port" not in arguments:
        arguments = ["--port", str(port), *arguments]
    process = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder), "--logfile", str(log), *arguments],
    )  # fmt: skip
    wait_for_port(port, process, log)
    return RedisServer(port=port, process=process)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path / "redis", "--requirepass", PASSWORD)
    yield server
    stop(server.process)


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path / "certs")


@pytest.fixture
def redis_with_tls(tmp_path: Path, certificates: Certificates) -> Iterator[RedisServer]:
    if not redis_supports_tls():
        pytest.fail("this redis-server has no TLS support (--tls-port)")
    server = start_redis(
        tmp_path / "redis-tls",
        "--port", "0", "--tls-port", "{port}",
        "--tls-cert-file", str(certificates.cert), "--tls-key-file", str(certificates.key),
        "--tls-ca-cert-file", str(certificates.ca), "--tls-auth-clients", "no",
        "--requirepass", PASSWORD,
    )  # fmt: skip
    yield server
    stop(server.process)


def test_the_broker_password_is_added_to_the_url_and_connects(
    tmp_path: Path, redis_with_password: RedisServer
) -> None:
    url = f"redis://127.0.0.1:{redis_with_password.port}/0"

    with_password = broker_connects(project_env(tmp_path, REDIS_URL=url, REDIS_PASSWORD=PASSWORD))
    without = broker_connects(project_env(tmp_path, REDIS_URL=url))
    wrong = broker_connects(project_env(tmp_path, REDIS_URL=url, REDIS_PASSWORD=PASSWORD[::-1]))

    assert with_password.returncode == 0, with_password.stderr
    assert "connected b'ok'" in with_password.stdout
    assert without.returncode != 0
    assert "Authentication required" in without.stderr or "NOAUTH" in without.stderr
    assert wrong.returncode != 0


def test_a_user_name_and_the_password_reach_a_server_on_its_ipv6_address(
    tmp_path: Path,
) -> None:
    # An ACL user with its own password; the default user is switched off, so only "alice"
    # with the password from REDIS_PASSWORD gets in.
    server = start_redis(
        tmp_path / "redis-acl",
        "--bind", "127.0.0.1", "::1",
        "--user", "default", "off",
        "--user", "alice", "on", f">{PASSWORD}", "~*", "&*", "+@all",
    )  # fmt: skip
    try:
        url = f"redis://alice@[::1]:{server.port}/0"
        as_alice = broker_connects(project_env(tmp_path, REDIS_URL=url, REDIS_PASSWORD=PASSWORD))
        anonymous = f"redis://[::1]:{server.port}/0"
        as_default = broker_connects(
            project_env(tmp_path, REDIS_URL=anonymous, REDIS_PASSWORD=PASSWORD)
        )
    finally:
        stop(server.process)

    assert as_alice.returncode == 0, as_alice.stderr
    assert "connected b'ok'" in as_alice.stdout
    assert as_default.returncode != 0  # the password alone names the disabled default user


def test_the_broker_password_is_read_from_a_file(
    tmp_path: Path, redis_with_password: RedisServer
) -> None:
    secret = tmp_path / "redis_password"
    secret.write_text(PASSWORD + "\n")
    env = project_env(
        tmp_path,
        REDIS_URL=f"redis://127.0.0.1:{redis_with_password.port}/0",
        REDIS_PASSWORD_FILE=str(secret),
    )
    result = broker_connects(env)
    assert result.returncode == 0, result.stderr
    assert "connected b'ok'" in result.stdout


def test_the_broker_connects_over_tls_with_the_configured_ca(
    tmp_path: Path, redis_with_tls: RedisServer, certificates: Certificates
) -> None:
    port = redis_with_tls.port
    tls = project_env(
        tmp_path,
        REDIS_URL=f"rediss://127.0.0.1:{port}/0",
        REDIS_PASSWORD=PASSWORD,
        REDIS_TLS_CA_FILE=str(certificates.ca),
    )
    plain = project_env(tmp_path, REDIS_URL=f"redis://127.0.0.1:{port}/0", REDIS_PASSWORD=PASSWORD)
    untrusted = {k: v for k, v in tls.items() if k != "REDIS_TLS_CA_FILE"}

    encrypted = broker_connects(tls)
    assert encrypted.returncode == 0, encrypted.stderr
    assert "connected b'ok'" in encrypted.stdout
    assert broker_connects(plain).returncode != 0  # a TLS port does not speak plain Redis
    refused = broker_connects(untrusted)  # the system CAs did not sign this certificate
    assert refused.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr or "certificate" in refused.stderr


# --- PostgreSQL -----------------------------------------------------------------------------

SSL_OF_CONNECTION = """
import django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    print("ssl", cursor.fetchone()[0])
"""


def as_postgres(*command: str | Path) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program as the postgres user (initdb refuses root)."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(
        [*prefix, *map(str, command)], capture_output=True, text=True, timeout=120, check=True
    )


@dataclass
class PostgresServer:
    port: int
    ca: Path


@pytest.fixture
def postgres_with_ssl() -> Iterator[PostgresServer]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL 15 is not installed in {PG_BIN}")
    # The postgres user must reach the directory: pytest's tmp_path is private to root.
    root = Path(tempfile.mkdtemp(prefix="telemetry-pg-ssl-"))
    root.chmod(0o755)
    certificates = make_certificates(root / "certs")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        for path in [root / "certs", *(root / "certs").iterdir()]:
            shutil.chown(path, "postgres")
    data, port = root / "data", free_port()
    try:
        as_postgres(PG_BIN / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
            f"-c ssl=on -c ssl_cert_file={certificates.cert} -c ssl_key_file={certificates.key}"
        )
        as_postgres(PG_BIN / "pg_ctl", "-D", data, "-o", options, "-l", root / "log", "-w", "start")
        yield PostgresServer(port=port, ca=certificates.ca)
    finally:
        if (data / "postmaster.pid").exists():
            as_postgres(PG_BIN / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def database_env(tmp_path: Path, port: int, **variables: str) -> dict[str, str]:
    return project_env(
        tmp_path, DB_HOST="127.0.0.1", DB_PORT=str(port), DB_USER="postgres", DB_NAME="postgres",
        **variables,
    )  # fmt: skip


def test_db_ssl_mode_require_encrypts_the_connection(
    tmp_path: Path, postgres_with_ssl: PostgresServer
) -> None:
    port = postgres_with_ssl.port

    required = run_python(database_env(tmp_path, port, DB_SSL_MODE="require"), SSL_OF_CONNECTION)
    disabled = run_python(database_env(tmp_path, port, DB_SSL_MODE="disable"), SSL_OF_CONNECTION)

    assert required.returncode == 0, required.stderr
    assert "ssl True" in required.stdout
    assert disabled.returncode == 0, disabled.stderr
    assert "ssl False" in disabled.stdout


def test_db_ssl_verify_full_checks_the_certificate_against_db_ssl_root_cert(
    tmp_path: Path, postgres_with_ssl: PostgresServer
) -> None:
    port = postgres_with_ssl.port
    verified = database_env(
        tmp_path, port, DB_SSL_MODE="verify-full", DB_SSL_ROOT_CERT=str(postgres_with_ssl.ca)
    )
    other_ca = make_certificates(tmp_path / "other").ca
    wrong_ca = {**verified, "DB_SSL_ROOT_CERT": str(other_ca)}

    result = run_python(verified, SSL_OF_CONNECTION)
    refused = run_python(wrong_ca, SSL_OF_CONNECTION)

    assert result.returncode == 0, result.stderr
    assert "ssl True" in result.stdout
    assert refused.returncode != 0
    assert "certificate verify failed" in refused.stderr


def test_db_ssl_mode_require_refuses_a_server_without_ssl(tmp_path: Path) -> None:
    """The shared server (ssl off here): a required encryption is never silently dropped."""
    shown = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-Atc", "SHOW ssl"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip()  # fmt: skip
    if shown == "on":
        pytest.skip("the shared PostgreSQL has ssl on; the servers above cover require")
    result = run_python(database_env(tmp_path, 5432, DB_SSL_MODE="require"), SSL_OF_CONNECTION)
    assert result.returncode != 0
    assert "server does not support SSL" in result.stderr


def test_the_database_password_is_read_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "db_password"
    secret.write_text("from-a-file\n")
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.DATABASES['default']['PASSWORD'])"
    )
    result = run_python(database_env(tmp_path, 5432, DB_PASSWORD_FILE=str(secret)), code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from-a-file"
