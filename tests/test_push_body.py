"""Push bodies over HTTP: the size limit (413), the media types and content codings each
endpoint takes (415), a required Content-Length (411), gzip within the limit (a gzip bomb is
refused having cost at most the limit). Bodies that do not decode, and never a 500 whatever
the body, are tested on the real write endpoint (test_push_write.py)."""

from __future__ import annotations

import gzip
import hashlib
import tracemalloc
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client
from pytest_django.fixtures import Settings

from api.models import ApiToken
from tests.support.remote_write import NOW_MS, REFERENCE_BODY, body_of

pytestmark = [pytest.mark.urls("tests.support.write_views"), pytest.mark.django_db]

PROTOBUF = "application/x-protobuf"
SMALL_LIMIT = 100_000
GZIPPED_CSV = gzip.compress(b"".join(b"%d,%d\n" % (i, i * i) for i in range(5000)))


@pytest.fixture
def writer(client: Client) -> Client:
    """The test client, presenting a token that may write."""
    key = ApiToken.issue("pusher", can_write=True).new_key
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def push(client: Client, body: bytes, content_type: str = "text/csv", **headers: str) -> Any:
    return client.post("/push", body, content_type=content_type, headers=headers)


def remote_write(client: Client, body: bytes, content_type: str = PROTOBUF, **headers: str) -> Any:
    headers.setdefault("content-encoding", "snappy")
    return client.post("/write", body, content_type=content_type, headers=headers)


# --- Size ---------------------------------------------------------------------------------


def test_django_reads_bodies_up_to_the_push_limit() -> None:
    assert django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE == django_settings.PUSH_MAX_BODY_BYTES


def test_a_body_over_djangos_default_cap_but_under_the_push_limit_is_read(writer: Client) -> None:
    body = b"x" * (3 * 1024 * 1024)  # Django's own default cap is 2.5 MB
    response = push(writer, body)
    assert response.status_code == 200, response.content
    assert response.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


@pytest.mark.parametrize("path", ["/push", "/write"])
def test_a_body_over_the_limit_is_413_in_the_apis_error_shape(
    writer: Client, settings: Settings, path: str
) -> None:
    settings.PUSH_MAX_BODY_BYTES = SMALL_LIMIT
    content_type = PROTOBUF if path == "/write" else "text/plain"
    response = writer.post(
        path, b"x" * (SMALL_LIMIT + 1), content_type=content_type,
        headers={"content-encoding": "snappy"} if path == "/write" else {},
    )  # fmt: skip
    assert response.status_code == 413
    assert response.json() == {
        "detail": f"The body is {SMALL_LIMIT + 1} bytes, over the limit of {SMALL_LIMIT}."
    }


def test_a_body_without_a_content_length_is_411(writer: Client) -> None:
    response = writer.post("/push", b"abc", content_type="text/plain", CONTENT_LENGTH="")
    assert response.status_code == 411
    assert response.json() == {"detail": "Send the body with a Content-Length header."}


# --- gzip -----------------------------------------------------------------------------------


def test_a_gzip_body_is_read_decompressed(writer: Client) -> None:
    csv = b'timestamp,metric_name\n"2025-07-18T20:42:34Z","DCGM_FI_DEV_GPU_UTIL"\n' * 1000
    response = push(writer, gzip.compress(csv), **{"content-encoding": "gzip"})
    assert response.status_code == 200, response.content
    assert response.json() == {"bytes": len(csv), "sha256": hashlib.sha256(csv).hexdigest()}


def test_a_gzip_bomb_is_413_having_cost_at_most_the_limit(
    writer: Client, settings: Settings
) -> None:
    settings.PUSH_MAX_BODY_BYTES = SMALL_LIMIT
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))  # 50 MiB of zeros in ~50 KB
    assert len(bomb) < SMALL_LIMIT
    tracemalloc.start()
    try:
        response = push(writer, bomb, **{"content-encoding": "gzip"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413
    assert response.json()["detail"] == (
        f"The body is over the limit of {SMALL_LIMIT} bytes once decompressed."
    )
    assert peak < 10 * SMALL_LIMIT, f"reading the bomb peaked at {peak} bytes"


@pytest.mark.parametrize(
    "body",
    [b"not gzip at all", GZIPPED_CSV[: len(GZIPPED_CSV) // 2], gzip.compress(b"x") + b"junk"],
    ids=["not-gzip", "cut-short", "trailing-junk"],
)
def test_a_broken_gzip_body_is_400(writer: Client, body: bytes) -> None:
    response = push(writer, body, **{"content-encoding": "gzip"})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("The body is not valid gzip")


# --- Media types and codings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type", "encoding", "detail"),
    [
        ("/push", "application/json", "", "Content-Type 'application/json' is not taken here"),
        ("/push", "text/csv", "br", "Content-Encoding 'br' is not taken here"),
        ("/push", "text/csv", "snappy", "Content-Encoding 'snappy' is not taken here"),
        ("/write", "text/plain", "snappy", "Content-Type 'text/plain' is not taken here"),
        ("/write", PROTOBUF, "", "Content-Encoding 'identity' is not taken here: send snappy"),
        ("/write", PROTOBUF, "gzip", "Content-Encoding 'gzip' is not taken here"),
        (
            "/write", f"{PROTOBUF};proto=io.prometheus.write.v2.Request", "snappy",
            "Remote write message 'io.prometheus.write.v2.Request' is not taken here",
        ),
    ],
)  # fmt: skip
def test_a_media_type_or_coding_the_endpoint_does_not_take_is_415(
    writer: Client, path: str, content_type: str, encoding: str, detail: str
) -> None:
    headers = {"content-encoding": encoding} if encoding else {}
    response = writer.post(path, REFERENCE_BODY, content_type=content_type, headers=headers)
    assert response.status_code == 415, response.content
    assert response.json()["detail"].startswith(detail)


# --- Remote write over HTTP -----------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [PROTOBUF, f"{PROTOBUF}; proto=prometheus.WriteRequest", "Application/X-Protobuf"],
)
def test_a_remote_write_request_is_read(writer: Client, content_type: str) -> None:
    response = remote_write(
        writer, REFERENCE_BODY, content_type, **{"x-prometheus-remote-write-version": "0.1.0"}
    )
    assert response.status_code == 200, response.content
    assert response.json()["samples"] == 50


def test_samples_ahead_of_the_clock_are_counted_over_http(writer: Client) -> None:
    far_ahead = NOW_MS * 2
    body = body_of(([("__name__", "DCGM_FI_DEV_GPU_TEMP")], [(NOW_MS, 1.0), (far_ahead, 2.0)]))
    response = remote_write(writer, body)
    assert response.json()["too_far_ahead"] == 1
