"""Behind gunicorn, a request line over its limit gets gunicorn's own 414, and the spec says so.

gunicorn refuses a request line (method, path, query string, protocol) longer than its
``limit_request_line``, 4094 bytes by default, with an HTML page, before Django sees the
request. The committed spec documents that answer on every operation; here each operation
is sent an over-long request through a real gunicorn, and schemathesis's own checks (status
code, content type, response schema) judge the answer against the committed spec. Just under
the limit the API itself answers, in JSON.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err

from tests.support.reference import REPO
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

SPEC = schemathesis.openapi.from_path(REPO / "openapi.yaml")
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
GUNICORN_LIMIT = 4094  # gunicorn's default limit_request_line, which the image keeps
UUID = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gunicorn serving the project on a free port; yields its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "telemetry_project.wsgi", "--bind",
             f"127.0.0.1:{port}", "--workers", "1"],
            cwd=REPO, env={**os.environ, "DJANGO_ALLOWED_HOSTS": "127.0.0.1"},
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"gunicorn did not start: {log.read_text()}")
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


Operation = schemathesis.APIOperation[Any, Any, Any, Any]


def operations() -> list[Operation]:
    """Every operation of the committed spec (which a test elsewhere keeps current)."""
    found = []
    for result in SPEC.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        found.append(result.ok())
    return found


@pytest.mark.parametrize("operation", operations(), ids=lambda operation: operation.label)
def test_an_over_long_request_line_gets_the_414_the_spec_documents(
    gunicorn: str, operation: Operation
) -> None:
    path_parameters = {parameter.name: UUID for parameter in operation.path_parameters}
    case = operation.Case(path_parameters=path_parameters, query={"pad": "x" * GUNICORN_LIMIT})

    response = case.call(base_url=gunicorn, timeout=30)

    assert response.status_code == 414, response.text[:300]
    assert response.headers["content-type"] == ["text/html"]
    case.validate_response(response, checks=CHECKS)


def test_just_under_the_limit_the_api_answers_in_json(gunicorn: str) -> None:
    # The request line: "GET /api/v1/gpus?limit=<digits> HTTP/1.1".
    digits = "9" * (GUNICORN_LIMIT - len("GET /api/v1/gpus?limit= HTTP/1.1"))
    case = SPEC["/api/v1/gpus"]["GET"].Case(query={"limit": digits})

    response = case.call(base_url=gunicorn, timeout=30)

    assert response.status_code == 400, response.text[:300]
    assert list(response.json()) == ["limit"]
    case.validate_response(response, checks=CHECKS)
