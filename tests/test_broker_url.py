"""REDIS_PASSWORD joins the broker URL without disturbing any other part of it.

Each URL built here is read back with redis-py's and kombu's own URL parsers, the ones the
workers use, so what is checked is what a worker would connect with. A real server with a
user name on its IPv6 address is in ``test_broker_and_database_tls.py``.
"""

from __future__ import annotations

import pytest
from kombu.utils.url import parse_url as kombu_parse_url
from redis.connection import parse_url as redis_parse_url

from telemetry_project.settings import broker_url_with_password

PASSWORD = "s3cret"  # noqa: S105  (a made-up password)
AWKWARD_PASSWORD = "p@ss:w/rd#50%?"  # noqa: S105  (every character a URL gives meaning to)


def connection_of(url: str) -> dict[str, object]:
    """What redis-py would connect with, and kombu's reading of the same URL."""
    redis_view: dict[str, object] = redis_parse_url(url)  # type: ignore[no-untyped-call]
    kombu_view = kombu_parse_url(url)
    assert kombu_view["hostname"] == redis_view["host"]
    assert kombu_view["password"] == redis_view.get("password")
    assert kombu_view["userid"] == redis_view.get("username")
    return redis_view


def test_a_user_name_is_kept_beside_the_added_password() -> None:
    url = broker_url_with_password("redis://alice@10.0.0.5:6379/0", PASSWORD)

    assert url == "redis://alice:s3cret@10.0.0.5:6379/0"
    assert connection_of(url) == {
        "username": "alice", "password": PASSWORD, "host": "10.0.0.5", "port": 6379, "db": 0,
    }  # fmt: skip


def test_an_ipv6_literal_keeps_its_brackets() -> None:
    url = broker_url_with_password("redis://[::1]:6379/0", PASSWORD)

    assert url == "redis://:s3cret@[::1]:6379/0"
    assert connection_of(url) == {"password": PASSWORD, "host": "::1", "port": 6379, "db": 0}


def test_a_user_name_on_an_ipv6_address_with_a_zone_is_kept() -> None:
    url = broker_url_with_password("redis://alice@[fe80::1%25eth0]:6379/2", PASSWORD)

    assert url == "redis://alice:s3cret@[fe80::1%25eth0]:6379/2"
    assert connection_of(url)["username"] == "alice"


def test_a_password_with_reserved_characters_is_percent_encoded_and_read_back_whole() -> None:
    url = broker_url_with_password("redis://redis.example.com:6379/0", AWKWARD_PASSWORD)

    assert url == "redis://:p%40ss%3Aw%2Frd%2350%25%3F@redis.example.com:6379/0"
    assert connection_of(url)["password"] == AWKWARD_PASSWORD


def test_a_percent_encoded_user_name_stays_as_it_was_written() -> None:
    url = broker_url_with_password("redis://ops%40team@redis.example.com/0", PASSWORD)

    assert url == "redis://ops%40team:s3cret@redis.example.com/0"
    assert connection_of(url)["username"] == "ops@team"


def test_rediss_keeps_its_scheme_port_and_query() -> None:
    url = broker_url_with_password(
        "rediss://alice@redis.example.com:6380/1?ssl_cert_reqs=required", PASSWORD
    )

    assert url == "rediss://alice:s3cret@redis.example.com:6380/1?ssl_cert_reqs=required"
    assert connection_of(url)["ssl_cert_reqs"] == "required"


@pytest.mark.parametrize(
    "url",
    [
        "redis://:already@10.0.0.5:6379/0",
        "redis://alice:already@[::1]:6379/0",
        "rediss://:alre%40dy@redis.example.com:6380/0",
    ],
)
def test_a_url_that_already_has_a_password_is_kept_as_it_is(url: str) -> None:
    assert broker_url_with_password(url, PASSWORD) == url


def test_without_a_password_the_url_is_returned_untouched() -> None:
    url = "redis://alice@[::1]:6379/0"
    assert broker_url_with_password(url, "") == url
