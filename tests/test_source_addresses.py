"""Which addresses a URL source may reach, checked on the address actually connected to.

Real HTTP and HTTPS servers listen on 127.0.0.1; a resolver stand-in (``socket.getaddrinfo``
patched) answers that address, or another, for public-looking names, as a hostile or
rebinding DNS server would. The suite's environment allows 127.0.0.0/8 (local servers are
what later tests fetch from); the tests here set the policy they are about. A refusal must
come before any connection: the servers record every request they receive.
"""

from __future__ import annotations

import io
import ipaddress
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.test import Client
from pytest_django.fixtures import Settings

from ingest import fetch
from ingest.models import OutstandingChunk, StreamSource
from ingest.reader import SourceError, open_at
from ingest.streamer import stream_tick
from telemetry_project.env import HostRules, env_host_rules
from tests.support.admin_forms import add_source_in_the_admin
from tests.support.tls import openssl

PUBLIC_NAME = "telemetry.example.com"
OTHER_NAME = "other.example.com"
PUBLIC_ADDRESS = "203.0.113.10"  # TEST-NET-3: public-looking, and nothing answers there
BODY = b'timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,value\n"x"\n'
NOTHING = HostRules()
LOOPBACK = HostRules(networks=(ipaddress.ip_network("127.0.0.0/8"),))
LOOPBACK_REFUSED = re.escape("127.0.0.1 is a loopback address")


# --- the policy itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.45.6.7", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104  (an address under test, not a bind)
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", None),
        ("172.16.5.4", None),
        ("192.168.1.20", None),
        ("fd00:ec2::254", None),
        ("203.0.113.10", None),
        ("2001:db8::1", None),
    ],
)
def test_loopback_link_local_multicast_and_unspecified_addresses_are_refused_by_default(
    address: str, kind: str | None
) -> None:
    assert fetch.refused_kind(ipaddress.ip_address(address)) == kind


def test_the_rules_read_ranges_and_host_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_URL_DENY", " 10.0.0.0/8, Exporter.Example.COM., 192.0.2.7,fd00::/8,")
    rules = env_host_rules("SOURCE_URL_DENY")

    assert [str(network) for network in rules.networks] == [
        "10.0.0.0/8", "192.0.2.7/32", "fd00::/8",
    ]  # fmt: skip
    assert rules.names == {"exporter.example.com"}
    assert rules.matches("EXPORTER.example.com", ipaddress.ip_address("198.51.100.1"))
    assert rules.matches("x", ipaddress.ip_address("10.9.9.9"))
    assert not rules.matches("x", ipaddress.ip_address("192.0.2.8"))


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "http://exporter", "exporter:9400", "a b"])
def test_an_entry_that_is_neither_a_range_nor_a_host_name_stops_the_process(
    monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    monkeypatch.setenv("SOURCE_URL_ALLOW", entry)
    with pytest.raises(ImproperlyConfigured, match="SOURCE_URL_ALLOW"):
        env_host_rules("SOURCE_URL_ALLOW")


# --- real servers behind a resolver that lies ------------------------------------------------


@dataclass
class Server:
    """A local server's port and what it received: (Host header, path) per request."""

    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)  # TLS SNI, per handshake


def serve(tls: ssl.SSLContext | None = None, redirect_to: str = "") -> Iterator[Server]:
    received = Server(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.requests.append((self.headers.get("Host", ""), self.path))
            if redirect_to:
                self.send_response(302)
                self.send_header("Location", redirect_to.format(port=received.port))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        tls.sni_callback = lambda _socket, name, _context: received.server_names.append(name)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    received.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield received
    server.shutdown()
    server.server_close()


@pytest.fixture
def http_server() -> Iterator[Server]:
    yield from serve()


Answers = dict[str, list[str]]


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Answers:
    """Names the test maps to answers; each lookup takes the next answer (the last repeats),
    an answer being comma-separated addresses.

    Both public-looking names answer 127.0.0.1 (where the test servers listen) unless a test
    says otherwise. Every lookup is recorded under ``"lookups"``; other names resolve as usual.
    """
    answers: Answers = {"lookups": [], PUBLIC_NAME: ["127.0.0.1"], OTHER_NAME: ["127.0.0.1"]}
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in answers:
            return list(real(host, port, *args, **kwargs))
        answers["lookups"].append(host)
        queue = answers[host]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return [
            (socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM, 6, "",
             (address, port))
            for address in answer.split(",")
        ]  # fmt: skip

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def read_all(url: str) -> bytes:
    with open_at(url, 0) as stream:
        return stream.read()


def assert_refused_before_any_request(server: Server, url: str, reason: str) -> None:
    """Reading ``url`` fails with ``reason`` (a pattern), and ``server`` received nothing."""
    with pytest.raises(SourceError, match=reason):
        read_all(url)
    assert server.requests == []


def test_a_public_looking_name_resolving_to_loopback_is_refused_before_connecting(
    http_server: Server, resolver: Answers, settings: Settings
) -> None:
    settings.SOURCE_URL_ALLOW = NOTHING

    assert_refused_before_any_request(
        http_server,
        f"http://{PUBLIC_NAME}:{http_server.port}/dcgm.csv",
        re.escape(f"{PUBLIC_NAME} (127.0.0.1) is a loopback address"),
    )


def test_an_allowed_address_is_connected_to_by_number_and_asked_by_name(
    http_server: Server, resolver: Answers, settings: Settings
) -> None:
    settings.SOURCE_URL_ALLOW = LOOPBACK

    body = read_all(f"http://{PUBLIC_NAME}:{http_server.port}/dcgm.csv")

    assert body == BODY
    assert http_server.requests == [(f"{PUBLIC_NAME}:{http_server.port}", "/dcgm.csv")]
    assert resolver["lookups"] == [PUBLIC_NAME]  # resolved once, that answer connected to


@pytest.mark.django_db
def test_a_name_that_rebinds_to_loopback_after_registration_is_refused_at_fetch_time(
    http_server: Server, resolver: Answers, settings: Settings
) -> None:
    settings.SOURCE_URL_ALLOW = NOTHING
    resolver[PUBLIC_NAME] = [PUBLIC_ADDRESS, "127.0.0.1"]
    url = f"http://{PUBLIC_NAME}:{http_server.port}/dcgm.csv"

    call_command("add_source", "rebinding", url, stdout=io.StringIO())  # sees the public one
    report = stream_tick(StreamSource.objects.get(name="rebinding").pk)

    assert "source error" in report.notes
    source = StreamSource.objects.get(name="rebinding")
    assert "(127.0.0.1) is a loopback address" in source.last_error
    assert "SOURCE_URL_ALLOW" in source.last_error
    assert http_server.requests == []
    assert not OutstandingChunk.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://127.0.0.1:6379/", "127.0.0.1 is a loopback address"),
        ("http://[::1]:6379/", "::1 is a loopback address"),
        ("http://0.0.0.0:8000/", "0.0.0.0 is an unspecified address"),
        ("http://[::ffff:127.0.0.1]/", "is a loopback address"),
    ],
)
def test_metadata_and_broker_addresses_are_refused_at_registration_and_at_every_read(
    settings: Settings, url: str, expected: str
) -> None:
    settings.SOURCE_URL_ALLOW = NOTHING
    with pytest.raises(CommandError, match=re.escape(expected)):
        call_command("add_source", "hostile", url, stdout=io.StringIO())
    assert not StreamSource.objects.exists()

    # Written straight into the database, as a direct edit would, skipping registration.
    source = StreamSource.objects.create(name="hostile", location=url, scheduled=False)
    stream_tick(source.pk)
    source.refresh_from_db()
    assert expected in source.last_error


@pytest.mark.django_db
def test_the_admin_form_says_why_a_metadata_url_is_refused(
    admin_client: Client, settings: Settings
) -> None:
    settings.SOURCE_URL_ALLOW = NOTHING
    shown = add_source_in_the_admin(admin_client, "http://169.254.169.254/latest/meta-data/")
    assert "is a link-local address, which sources may not reach" in shown
    assert not StreamSource.objects.exists()


@pytest.mark.django_db
def test_a_name_that_does_not_resolve_here_is_registered_for_the_streamers_to_judge(
    settings: Settings,
) -> None:
    settings.SOURCE_URL_ALLOW = NOTHING
    # The reserved .invalid top-level domain never resolves (RFC 6761).
    call_command("add_source", "edge", "http://exporter.edge.invalid/m", stdout=io.StringIO())
    assert StreamSource.objects.filter(name="edge").exists()


def test_private_ranges_stay_allowed(resolver: Answers, settings: Settings) -> None:
    settings.SOURCE_URL_ALLOW = NOTHING
    resolver["exporter.cluster.local"] = ["10.4.5.6"]

    parsed, addresses = fetch.allowed_addresses("http://exporter.cluster.local:9400/metrics")

    assert (parsed.port, [str(address) for address in addresses]) == (9400, ["10.4.5.6"])


def test_of_a_name_with_several_addresses_only_the_allowed_ones_are_connected_to(
    resolver: Answers, settings: Settings
) -> None:
    settings.SOURCE_URL_ALLOW = NOTHING
    resolver["mixed.example.com"] = ["127.0.0.1,10.4.5.6,169.254.169.254"]

    _, addresses = fetch.allowed_addresses("http://mixed.example.com/")

    assert [str(address) for address in addresses] == ["10.4.5.6"]


def test_deny_wins_over_allow_by_name_and_by_range(
    http_server: Server, resolver: Answers, settings: Settings
) -> None:
    settings.SOURCE_URL_ALLOW = LOOPBACK
    resolver["exporter.cluster.local"] = ["10.4.5.6"]
    settings.SOURCE_URL_DENY = HostRules(
        networks=(ipaddress.ip_network("10.0.0.0/8"),), names=frozenset({PUBLIC_NAME})
    )

    with pytest.raises(SourceError, match="refused by SOURCE_URL_DENY"):
        read_all(f"http://{PUBLIC_NAME}:{http_server.port}/dcgm.csv")
    with pytest.raises(fetch.AddressRefusedError, match="refused by SOURCE_URL_DENY"):
        fetch.allowed_addresses("http://exporter.cluster.local/metrics")
    assert http_server.requests == []


def test_allowing_a_host_name_allows_only_that_name(
    http_server: Server, resolver: Answers, settings: Settings
) -> None:
    settings.SOURCE_URL_ALLOW = HostRules(names=frozenset({PUBLIC_NAME}))

    assert read_all(f"http://{PUBLIC_NAME}:{http_server.port}/a.csv") == BODY
    with pytest.raises(SourceError, match=LOOPBACK_REFUSED):
        read_all(f"http://127.0.0.1:{http_server.port}/a.csv")
    assert len(http_server.requests) == 1


@pytest.fixture
def redirecting_server() -> Iterator[Server]:
    yield from serve(redirect_to="http://127.0.0.1:{port}/elsewhere.csv")


def test_a_redirect_to_a_refused_address_is_refused(
    redirecting_server: Server, resolver: Answers, settings: Settings
) -> None:
    settings.SOURCE_URL_ALLOW = HostRules(names=frozenset({PUBLIC_NAME}))

    with pytest.raises(SourceError, match=LOOPBACK_REFUSED):
        read_all(f"http://{PUBLIC_NAME}:{redirecting_server.port}/dcgm.csv")
    assert [path for _, path in redirecting_server.requests] == ["/dcgm.csv"]


# --- https: the TLS server name and the certificate are the URL's host -----------------------


@dataclass(frozen=True)
class Authority:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    """A throwaway CA and a certificate for ``PUBLIC_NAME`` only, signed by it."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key, ca, key, csr, cert = (
        folder / name for name in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=source test CA", "-keyout", ca_key, "-out", ca)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={PUBLIC_NAME}",
            "-keyout", key, "-out", csr)  # fmt: skip
    extensions = folder / "server.ext"
    extensions.write_text(f"subjectAltName = DNS:{PUBLIC_NAME}\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-days", "2", "-extfile", extensions, "-out", cert)  # fmt: skip
    return Authority(ca, cert, key)


@pytest.fixture
def https_server(authority: Authority, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """An https server with the certificate for ``PUBLIC_NAME``; the client trusts its CA."""
    monkeypatch.setenv("SSL_CERT_FILE", str(authority.ca))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(authority.cert, authority.key)
    yield from serve(tls)


def test_https_names_the_host_in_sni_and_checks_its_certificate_while_connecting_by_number(
    https_server: Server, resolver: Answers, settings: Settings
) -> None:
    settings.SOURCE_URL_ALLOW = LOOPBACK

    body = read_all(f"https://{PUBLIC_NAME}:{https_server.port}/dcgm.csv")

    assert body == BODY
    assert https_server.server_names == [PUBLIC_NAME]
    assert https_server.requests == [(f"{PUBLIC_NAME}:{https_server.port}", "/dcgm.csv")]


def test_https_to_a_name_the_certificate_does_not_carry_fails_verification(
    https_server: Server, resolver: Answers, settings: Settings
) -> None:
    settings.SOURCE_URL_ALLOW = LOOPBACK

    assert_refused_before_any_request(
        https_server,
        f"https://{OTHER_NAME}:{https_server.port}/dcgm.csv",
        "certificate verify failed",
    )


def test_fetching_is_one_function_other_clients_can_reuse(
    http_server: Server, resolver: Answers, settings: Settings
) -> None:
    settings.SOURCE_URL_ALLOW = LOOPBACK
    url = f"http://{PUBLIC_NAME}:{http_server.port}/metrics"

    with fetch.open_url(url, timeout=5, headers={"Accept": "text/plain"}) as response:
        assert (response.status, response.read()) == (200, BODY)
    with pytest.raises(fetch.TooLargeError, match="announces"):
        fetch.open_url(url, timeout=5, max_bytes=len(BODY) - 1)
