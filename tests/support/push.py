"""Pushing to the real write endpoints in-process, and committing what they recorded the way a
collector does."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from importlib import import_module
from typing import Any

import msgpack
from django.apps import apps
from django.test import Client

from api.models import ApiToken
from ingest import collector
from ingest.collector import CollectResult
from ingest.models import PushChunk
from tests.support.workers import Worker, WorkerFactory

PROTOBUF = "application/x-protobuf"
WRITE = "/api/v1/write"
IMPORT_CSV = "/api/v1/import/csv"
IMPORT_PAGE = "/api/v1/import/prometheus"


def writing_client(name: str = "prometheus") -> tuple[Client, ApiToken]:
    """A test client presenting a new token that may write (the status is the answer: a view's
    exception shows up as a 500)."""
    token = ApiToken.issue(name, can_write=True)
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {token.new_key}")
    return client, token


def remote_write(client: Client, body: bytes, **headers: str) -> Any:
    headers.setdefault("content-encoding", "snappy")
    headers.setdefault("x-prometheus-remote-write-version", "0.1.0")
    return client.post(WRITE, body, content_type=PROTOBUF, headers=headers)


def stored_payloads() -> list[dict[str, Any]]:
    """The collect messages of the parts waiting in the push table, in id order."""
    return [
        msgpack.unpackb(bytes(payload), raw=False)
        for payload in PushChunk.objects.order_by("chunk_id").values_list("payload", flat=True)
    ]


def collect_stored() -> list[CollectResult]:
    """Commit every stored part as a collector would on receiving it."""
    return [collector.collect(payload) for payload in stored_payloads()]


def start_web(workers: WorkerFactory, port: int, extra_env: dict[str, str] | None = None) -> Worker:
    """The project under gunicorn (the image's web server) on ``port``, one worker process,
    started like the pipeline's workers (the test database and broker), once it listens."""
    command = [
        sys.executable, "-m", "gunicorn", "telemetry_project.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", "1", "--graceful-timeout", "5",
    ]  # fmt: skip
    return workers.start_process("web", command, ready="Booting worker", extra_env=extra_env)


REPUBLISHING_MIGRATION = "ingest.migrations.0009_push_chunks_and_their_republishing"


def start_beat(workers: WorkerFactory) -> Worker:
    """Celery beat with the database scheduler, which sends the re-publishing task.

    Its schedule row is made by a migration, which a transactional test's flush deletes: it is
    made again here the migration's way.
    """
    import_module(REPUBLISHING_MIGRATION).schedule(apps, None)
    command = [sys.executable, "-m", "celery", "-A", "telemetry_project", "beat", "--loglevel=INFO"]
    return workers.start_process("beat", command, ready="beat: Starting")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Message


def post_remote_write(port: int, key: str, body: bytes) -> Answer:
    """Send a remote write body to a server on ``port`` over HTTP, as Prometheus does."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{WRITE}",
        data=body,
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": PROTOBUF,
            "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310  (a local URL)
            return Answer(response.status, response.headers)
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers)
