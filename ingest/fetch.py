"""Outbound HTTP for sources: the host resolved once, each address checked, that address used.

A source URL is data an admin user (or anyone who can write the database) controls, and the
streamer fetches it from inside the cluster: pointed at ``127.0.0.1:6379`` it would talk to
the broker, at ``169.254.169.254`` to the cloud's metadata service. So before connecting,
``open_url`` resolves the host itself, checks every address against the policy and connects
to an address it checked, by number: a name cannot answer one address to the check and
another to the connection (DNS rebinding). The request still names the host (the Host header,
and for https the TLS server name and the certificate check), so virtual hosts and
certificates work as with any client. Every redirect is a new URL, checked the same way.

The policy: loopback, link-local, multicast and unspecified addresses are refused unless
``SOURCE_URL_ALLOW`` lists them (by range or host name); ``SOURCE_URL_DENY`` refuses any it
lists and wins over everything; everything else, private ranges included, is allowed.
Environment proxies (``HTTP_PROXY``) are not used: a proxy would resolve and connect on its
own, beyond the check.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import socket
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from django.conf import settings
from yarl import URL

from telemetry_project.env import IPAddress

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

SCHEMES: Final = ("http", "https")
# As many as urllib follows.
MAX_REDIRECTS: Final = 10
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
# "This network" (RFC 791): Linux connects 0.0.0.0 to the local host itself.
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


class FetchError(OSError):
    """The URL cannot be fetched: refused, unreachable, or answered with an error status."""


class AddressRefusedError(FetchError):
    """The URL's host is, or resolves only to, addresses sources may not reach."""


class TooLargeError(FetchError):
    """The response body is larger than the caller allows."""

    def __init__(self, message: str, announced: int | None = None) -> None:
        super().__init__(message)
        self.announced = announced  # the Content-Length, when that is what said so


def refused_kind(address: IPAddress) -> str | None:
    """The kind of address sources never reach by default, or None for any other."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1 to the kernel
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified or address in _THIS_NETWORK:
        return "unspecified"
    return None


def refusal(host: str, address: IPAddress) -> str | None:
    """Why ``address``, reached for the URL host ``host``, is refused; None when allowed."""
    shown = str(address) if host == str(address) else f"{host} ({address})"
    if settings.SOURCE_URL_DENY.matches(host, address):
        return f"{shown} is refused by SOURCE_URL_DENY"
    if settings.SOURCE_URL_ALLOW.matches(host, address):
        return None
    kind = refused_kind(address)
    if kind is None:
        return None
    article = "an" if kind[0] in "aeiou" else "a"
    return (
        f"{shown} is {article} {kind} address, which sources may not reach; to allow it, add "
        "it (or its range, or the host name) to SOURCE_URL_ALLOW"
    )


def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses ``host`` resolves to, in the resolver's order (an IP literal: itself)."""
    addresses: list[IPAddress] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def allowed_addresses(url: str) -> tuple[URL, list[IPAddress]]:
    """The parsed URL and the addresses of its host that may be connected to.

    Raises ``AddressRefusedError`` when there are none, naming the first refusal, and
    ``socket.gaierror`` when the host does not resolve.
    """
    parsed = _parse(url)
    host, port = parsed.raw_host or "", parsed.port or 0
    refusals = []
    allowed = []
    for address in resolve(host, port):
        reason = refusal(host, address)
        if reason is None:
            allowed.append(address)
        else:
            refusals.append(reason)
    if not allowed:
        raise AddressRefusedError(f"{url}: {refusals[0] if refusals else 'no address'}")
    return parsed, allowed


def _parse(url: str) -> URL:
    try:
        parsed = URL(url)
    except ValueError as error:
        raise FetchError(f"{url!r} is not a valid URL: {error}") from None
    if parsed.scheme not in SCHEMES or not parsed.raw_host:
        raise FetchError(f"{url!r} is not an http(s) URL with a host")
    return parsed


class Response(io.RawIOBase):
    """A response's status and headers, and its body as a raw stream.

    Reading more than ``max_bytes`` of body raises ``TooLargeError`` (None: no cap); a
    caller may narrow the cap once it knows what the body holds.
    """

    def __init__(
        self,
        response: http.client.HTTPResponse,
        connection: http.client.HTTPConnection,
        url: str,
        max_bytes: int | None,
    ) -> None:
        super().__init__()
        self._response = response
        self._connection = connection
        self.url = url  # the final URL, after redirects
        self.status = response.status
        self.reason = response.reason
        self.headers = response.headers
        self.max_bytes = max_bytes
        self.received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        count = self._response.readinto(buffer)
        self.received += count
        if self.max_bytes is not None and self.received > self.max_bytes:
            raise TooLargeError(f"{self.url} sent more than {self.max_bytes} bytes")
        return count

    def close(self) -> None:
        self._response.close()
        self._connection.close()
        super().close()


def open_url(
    url: str,
    *,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    max_bytes: int | None = None,
) -> Response:
    """GET ``url`` (http or https) from an address the policy allows; the caller closes it.

    ``timeout`` bounds the connection and every read. Redirects are followed (at most
    ``MAX_REDIRECTS``), each checked like the first URL; a status of 400 or more raises
    ``FetchError``. A body announced (Content-Length) or received beyond ``max_bytes``
    raises ``TooLargeError``.
    """
    for _ in range(MAX_REDIRECTS + 1):
        response = _get(url, timeout, headers or {})
        location = response.headers.get("Location")
        if response.status in REDIRECT_STATUSES and location:
            response.close()
            try:
                url = str(URL(url).join(URL(location)))
            except ValueError as error:
                raise FetchError(f"{url}: redirect to {location!r}: {error}") from None
            continue
        if response.status >= 400:
            response.close()
            raise FetchError(f"{url}: HTTP {response.status} {response.reason}")
        length = response.headers.get("Content-Length", "").strip()
        if max_bytes is not None and length.isdigit() and int(length) > max_bytes:
            response.close()
            raise TooLargeError(
                f"{url} announces {length} bytes, more than {max_bytes}", int(length)
            )
        response.max_bytes = max_bytes
        return response
    raise FetchError(f"{url}: more than {MAX_REDIRECTS} redirects")


def _get(url: str, timeout: float, headers: Mapping[str, str]) -> Response:
    """One GET, without following redirects, from the first allowed address that answers."""
    parsed, addresses = allowed_addresses(url)
    host, port = parsed.raw_host or "", parsed.port or 0
    failure: OSError = FetchError(f"{url}: no address to connect to")
    for address in addresses:
        connection: http.client.HTTPConnection
        if parsed.scheme == "https":
            connection = _PinnedHTTPSConnection(host, port, address, timeout)
        else:
            connection = _PinnedHTTPConnection(host, port, address, timeout)
        try:
            connection.request(
                "GET", parsed.raw_path_qs, headers={"Connection": "close", **headers}
            )
            return Response(connection.getresponse(), connection, url, None)
        except OSError as error:  # refused, unreachable, timed out, a TLS failure
            connection.close()
            failure = error  # try the host's next address, if it has one
        except BaseException:
            connection.close()
            raise
    raise failure


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Names ``host`` in the request, but connects to the checked ``address``."""

    def __init__(self, host: str, port: int, address: IPAddress, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self.address), self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """https to the checked ``address``, with ``host`` as the TLS server name and the name
    the certificate must carry."""

    def __init__(self, host: str, port: int, address: IPAddress, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((str(self.address), self.port), self.timeout)
        try:
            self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
