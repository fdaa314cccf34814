"""Typed readers for configuration taken from the environment.

Every reader fails loudly (``ImproperlyConfigured``) on a value it cannot use, so a typo in a
deployment stops the process at start-up instead of surfacing as odd behaviour later. Secrets
may also be given as ``NAME_FILE`` naming a file (Docker and Kubernetes secrets); setting both
is refused, since two sources for one secret is a deployment mistake.

A variable the environment does not set may come from a settings file instead
(``use_file_values``: the development checkout's ``var/dev.env``, ``telemetry_project.dev_env``);
the environment always wins over it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from django.core.exceptions import ImproperlyConfigured

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_HOST_NAME = re.compile(
    r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*", re.ASCII
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_Number = TypeVar("_Number", int, float)

# The settings (each also as NAME_FILE) that choose the database and the broker a process
# talks to.
CONNECTION_VARIABLES: Final = (
    "DATABASE_URL",
    "DB_HOST",
    "DB_PORT",
    "DB_USER",
    "DB_PASSWORD",
    "DB_NAME",
    "DB_SSL_MODE",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "REDIS_PASSWORD",
)

# Values from a settings file, for the names the environment does not set.
_file_values: dict[str, str] = {}


def use_file_values(values: Mapping[str, str]) -> None:
    """Read ``values`` for every name the environment leaves unset (replacing earlier ones)."""
    _file_values.clear()
    _file_values.update(values)


def _get(name: str) -> str | None:
    value = os.environ.get(name)
    return _file_values.get(name) if value is None else value


def env_str(name: str, default: str = "") -> str:
    """Return the variable, or ``default`` when it is unset."""
    value = _get(name)
    return default if value is None else value


def env_secret(name: str, default: str = "") -> str:
    """Return a secret from ``NAME`` or from the file named by ``NAME_FILE``."""
    # A secret the environment gives in either form is taken from there alone, so a settings
    # file's NAME never clashes with the environment's NAME_FILE.
    in_environment = name in os.environ or f"{name}_FILE" in os.environ
    values: Mapping[str, str] = os.environ if in_environment else _file_values
    file_name = values.get(f"{name}_FILE")
    if file_name is None:
        return values.get(name, default)
    if name in values:
        raise ImproperlyConfigured(f"set either {name} or {name}_FILE, not both")
    try:
        return Path(file_name).read_text().strip()
    except OSError as error:
        raise ImproperlyConfigured(f"{name}_FILE={file_name!r} cannot be read: {error}") from error


def env_bool(name: str, default: bool) -> bool:
    raw = _get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    return _env_number(name, default, int, "an integer", minimum)


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    return _env_number(name, default, float, "a number", minimum)


def _env_number(
    name: str, default: _Number, parse: Callable[[str], _Number], kind: str, minimum: _Number | None
) -> _Number:
    raw = _get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not {kind}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below its minimum of {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; blank items are dropped."""
    raw = _get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


@dataclass(frozen=True)
class HostRules:
    """Address ranges (CIDR) and exact host names, as a comma-separated setting lists them."""

    networks: tuple[IPNetwork, ...] = ()
    names: frozenset[str] = frozenset()

    def matches(self, host: str, address: IPAddress) -> bool:
        """Whether the URL's ``host`` is listed by name, or ``address`` lies in a range."""
        if normal_host_name(host) in self.names:
            return True
        return any(
            address.version == network.version and address in network for network in self.networks
        )


def normal_host_name(host: str) -> str:
    """A host name as rules compare it: lower case, without a final dot."""
    return host.lower().removesuffix(".")


def env_host_rules(name: str) -> HostRules:
    """CIDR ranges (``10.0.0.0/8``, ``fd00::/8``, a single ``192.0.2.7``) and host names
    (``exporter.example.com``, matched exactly), comma-separated."""
    networks: list[IPNetwork] = []
    names: set[str] = set()
    for item in env_list(name, []):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
            continue
        except ValueError:
            pass
        host = normal_host_name(item)
        if not _HOST_NAME.fullmatch(host):
            raise ImproperlyConfigured(
                f"{name}: {item!r} is neither a CIDR range (10.0.0.0/8, fd00::/8) nor a host name"
            )
        names.add(host)
    return HostRules(tuple(networks), frozenset(names))
