"""The OpenAPI contract: committed, complete, honest about errors, and true to the running API.

The schemathesis run and the hostile-input tests call the real application over the
reference export (loaded through the collector), so 200 answers carry real rows. They run
with the database in autocommit, as in production, rather than inside a test transaction: a
request that fails in the database then fails alone instead of aborting every later one.

Inputs that once broke the API (offsets PostgreSQL cannot store, ranges past the calendar,
NUL bytes, nested error bodies, empty values) each keep a test of their own below.
"""

from __future__ import annotations

import csv
import difflib
import io
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import hypothesis.strategies as st
import pytest
import schemathesis
import yaml
from django.core.management import call_command
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from pytest_django import DjangoDbBlocker
from schemathesis import Case
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from schemathesis.hooks import HookContext
from schemathesis.transport import SerializationContext
from schemathesis.transport.serialization import Binary

from api.models import ApiToken, hash_key
from telemetry_project.wsgi import application
from tests.support.reference import REFERENCE_CSV, REFERENCE_UUID, REPO

COMMITTED_SPEC = REPO / "openapi.yaml"
STALE = "openapi.yaml is stale: run `make openapi` and commit the result."
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# Every test here may call the API, over the reference export loaded once for the module.
pytestmark = pytest.mark.usefixtures("reference_data")

TELEMETRY = f"/api/v1/gpus/{REFERENCE_UUID}/telemetry"
AGGREGATE = f"/api/v1/gpus/{REFERENCE_UUID}/telemetry/aggregate"


def generated_schema() -> dict[str, Any]:
    """The schema the code documents now, built in this process (PostgreSQL settings)."""
    generator = SchemaGenerator()  # type: ignore[no-untyped-call]
    schema: dict[str, Any] = generator.get_schema(request=None, public=True)  # type: ignore[no-untyped-call]
    return schema


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


# The write operations: their 2xx needs a valid body (a snappy-compressed protobuf, a DCGM
# CSV), which test_push_write.py and test_push_imports.py send; a fuzzed body is refused.
WRITE_STATUSES = {400, 401, 403, 411, 413, 415, 503}


def expected_statuses(path: str, operation: dict[str, Any]) -> set[int]:
    """The 200, a 404 for an unknown GPU or host, a 400 for a bad query parameter; a write
    operation's 400 for a body it cannot read."""
    if "requestBody" in operation:
        return {400}
    expected = {200}
    if "{" in path:  # an unknown GPU or host
        expected.add(404)
    if any(parameter["in"] == "query" for parameter in operation.get("parameters", [])):
        expected.add(400)
    return expected


@pytest.fixture
def live_api(django_db_blocker: DjangoDbBlocker) -> Iterator[Client]:
    """A client of the app over the reference data, the database in autocommit."""
    with django_db_blocker.unblock():
        # The status is the answer: an exception inside a view must show up as a 500.
        yield Client(raise_request_exception=False)


def statuses_of(api: Client, urls: list[str]) -> dict[str, int]:
    return {url: api.get(url).status_code for url in urls}


# The mark tells pytest-django this module uses the database: it creates the test databases
# only for the marked tests it collects, and the module's other tests reach it through
# ``reference_data`` alone, so run by themselves they would meet the project's database.
@pytest.mark.django_db
def test_the_reference_export_went_through_the_collector(live_api: Client) -> None:
    stats = live_api.get("/api/v1/stats").json()

    assert (stats["total_records"], stats["unique_gpus"], stats["unique_hosts"]) == (2470, 247, 31)
    assert stats["rejected_rows"] == 0
    assert len(stats["metrics"]) == 10


# --- the committed spec ------------------------------------------------------------------


def make_openapi_environment(tmp_path: Path) -> dict[str, str]:
    """The environment `make openapi` runs in on a developer's machine and in CI.

    No DATABASE_URL, DB_* or REDIS_URL: the embedded mode, its files kept in ``tmp_path``.
    """
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DATABASE_URL", "DB_", "REDIS_URL", "CELERY_", "PYTEST", "DJANGO_"))
    }
    environment.update(DJANGO_DEBUG="1", TELEMETRY_VAR_DIR=str(tmp_path / "var"))
    return environment


def test_committed_openapi_yaml_is_what_make_openapi_writes(tmp_path: Path) -> None:
    written = tmp_path / "openapi.yaml"
    # The Makefile's `openapi` command, writing elsewhere.
    subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--file", str(written)],
        cwd=REPO,
        env=make_openapi_environment(tmp_path),
        check=True,
        capture_output=True,
        timeout=120,
    )

    committed, fresh = COMMITTED_SPEC.read_text(), written.read_text()
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            fresh.splitlines(keepends=True),
            "openapi.yaml (committed)",
            "openapi.yaml (generated now)",
        )
    )
    assert committed == fresh, f"{STALE}\n{diff[:4000]}"


def test_the_schema_served_on_postgresql_is_the_committed_one(live_api: Client) -> None:
    response = live_api.get("/api/schema/")
    assert response.status_code == 200

    served = yaml.safe_load(response.content)
    committed = yaml.safe_load(COMMITTED_SPEC.read_text())
    assert served == committed, STALE


def test_the_schema_builds_without_warnings_or_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, err = io.StringIO(), io.StringIO()

    # --fail-on-warn turns any warning into a CommandError; --validate checks the OpenAPI spec.
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(tmp_path / "schema.yaml"),
        stdout=out,
        stderr=err,
    )

    emitted = "\n".join([out.getvalue(), err.getvalue(), capsys.readouterr().err]).strip()
    assert "warning" not in emitted.lower(), emitted
    assert "error" not in emitted.lower(), emitted
    assert yaml.safe_load((tmp_path / "schema.yaml").read_text())["paths"]


def test_every_operation_documents_its_error_statuses() -> None:
    schema = generated_schema()
    missing = []
    for path, method, operation in operations(schema):
        label, responses = f"{method.upper()} {path}", operation["responses"]
        expected = {str(status) for status in expected_statuses(path, operation)}
        if path == "/health":
            expected.add("503")  # the database or the broker is down
        if "requestBody" in operation:
            success = {"post /api/v1/write": "204"}.get(f"{method} {path}", "202")
            expected |= {success, *map(str, WRITE_STATUSES)}
        missing += [f"{label}: {status}" for status in sorted(expected - responses.keys())]
        missing += [
            f"{label}: {status} has no JSON body"
            for status in sorted(expected & responses.keys())
            if "application/json" not in responses[status].get("content", {})
            and status != "204"
            and not (status == "200" and path.endswith(".csv"))  # the exports: a text/csv file
        ]
    assert len(list(operations(schema))) >= 9, "operations are missing from the schema"
    assert not missing, missing


# --- inputs that once broke the API -----------------------------------------------------


def test_an_offset_postgresql_cannot_store_is_refused_not_crashed_on(live_api: Client) -> None:
    statuses = statuses_of(
        live_api,
        [
            f"{TELEMETRY}?start_time=2025-07-18T20:42:34%2B16:00",
            f"{TELEMETRY}?end_time=0665-09-11T15:41:48.913-19:28",
            f"{AGGREGATE}?bucket=60s&end_time=2025-07-18T20:42:34-17:40",
        ],
    )
    assert set(statuses.values()) <= {200, 400}, statuses


def test_the_widest_offset_postgresql_stores_is_answered(live_api: Client) -> None:
    statuses = statuses_of(
        live_api,
        [
            f"{TELEMETRY}?start_time=2025-07-18T04:43:34%2B15:59",
            f"{AGGREGATE}?bucket=1h&end_time=2025-07-18T05:00:00-15:59",
        ],
    )
    assert set(statuses.values()) == {200}, statuses


def test_an_aggregate_range_beyond_the_calendar_is_refused_not_crashed_on(
    live_api: Client,
) -> None:
    statuses = statuses_of(
        live_api,
        [
            f"{AGGREGATE}?bucket=1h&start_time=9999-12-31T23:30:00Z",
            f"{AGGREGATE}?bucket=1h&end_time=0001-01-01T00:30:00Z",
        ],
    )
    assert set(statuses.values()) <= {200, 400}, statuses


@pytest.mark.parametrize("query", ["offset=0.0", "limit=10.0", "offset=1e2"])
def test_a_page_parameter_written_as_a_decimal_is_a_400_naming_it(
    live_api: Client, query: str
) -> None:
    response = live_api.get(f"/api/v1/gpus?{query}")
    assert response.status_code == 400
    assert response.json() == {query.partition("=")[0]: ["A valid integer is required."]}


def test_every_400_maps_each_parameter_to_a_list_of_messages(live_api: Client) -> None:
    bodies = {
        url: live_api.get(url).json()
        for url in [
            f"{TELEMETRY}?metric={'x' * 129}",
            f"{TELEMETRY}?metric=DCGM_FI_DEV_GPU_UTIL&metric=",
            f"{AGGREGATE}?bucket=1s&start_time=2025-07-18T00:00:00Z&end_time=2025-07-19T00:00:00Z",
        ]
    }
    malformed = {
        url: body
        for url, body in bodies.items()
        if not all(
            isinstance(messages, list) and all(isinstance(m, str) for m in messages)
            for messages in body.values()
        )
    }
    assert not malformed, malformed


def test_an_empty_value_is_refused_like_any_malformed_one(live_api: Client) -> None:
    answers = {}
    for url, parameter in [
        ("/api/v1/gpus?limit=", "limit"),
        ("/api/v1/hosts?offset=", "offset"),
        (f"{TELEMETRY}?start_time=", "start_time"),
        (f"{TELEMETRY}?end_time=", "end_time"),
    ]:
        response = live_api.get(url)
        answers[url] = (response.status_code, parameter in response.json())
    assert set(answers.values()) == {(400, True)}, answers


# --- schemathesis over the whole schema ----------------------------------------------------

# Fixed, so a failure replays exactly; 100 generated examples per operation in the fuzzing
# phase, on top of the examples and coverage phases.
SCHEMATHESIS_SEED = 20250718
SCHEMATHESIS_MAX_EXAMPLES = 100


# A token that may write and read the staff views (made by the write_token fixture), which
# schemathesis presents as the schema's bearer scheme asks (and leaves out or spoils in its
# negative cases); the other reads ignore it.
WRITE_TOKEN_KEY = "schemathesis-write-token-" + "k" * 32


def schemathesis_config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SCHEMATHESIS_SEED,
            "auth": {"openapi": {"apiToken": {"bearer": WRITE_TOKEN_KEY}}},
            "generation": {
                "mode": "all",  # valid and invalid inputs
                "max-examples": SCHEMATHESIS_MAX_EXAMPLES,
                "database": "none",  # no replay of earlier runs: the seed alone decides
            },
            # A 400 for schema-valid but meaningless input (start after end, an unknown
            # metric) is the intended answer, so only this check is left out.
            "checks": {"positive_data_acceptance": {"enabled": False}},
        }
    )


def reference_uuids() -> list[str]:
    """The GPUs of the reference export, read from the file the data fixture loads."""
    with REFERENCE_CSV.open(newline="") as source:
        return sorted({row["uuid"] for row in csv.DictReader(source)})


REAL_UUIDS = st.sampled_from(reference_uuids())


def flatmap_path_parameters(
    context: HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    """About half of the generated ids become real uuids, so the 200 paths are reached too."""
    if not path_parameters or "id" not in path_parameters:
        return st.just(path_parameters)
    return st.one_of(
        st.just(path_parameters),
        REAL_UUIDS.map(lambda uuid: {**path_parameters, "id": uuid}),
    )


@schemathesis.serializer("application/x-protobuf", "text/csv", "text/plain")
def binary_body(context: SerializationContext, value: object) -> bytes:
    """The bytes of a generated ``format: binary`` body (the write operations' bodies), which
    schemathesis's own text serializer would send empty."""
    if isinstance(value, Binary):
        return value.data
    return str(value).encode()


# The schema the running application serves (building it needs no database).
API_SCHEMA = schemathesis.openapi.from_wsgi(
    "/api/schema/", application, config=schemathesis_config()
)
API_SCHEMA.hook(flatmap_path_parameters)

# (operation, status) -> responses of the running operation's schemathesis test.
EXERCISED: Counter[tuple[str, int]] = Counter()


@pytest.fixture
def schemathesis_run(
    django_db_blocker: DjangoDbBlocker, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """Counts one operation's responses, then checks the run reached what it documents."""
    EXERCISED.clear()
    caplog.set_level(logging.CRITICAL, logger="django.request")  # thousands of 4xx lines
    started = time.monotonic()
    with django_db_blocker.unblock():
        yield
    elapsed = time.monotonic() - started
    labels = {label for label, _ in EXERCISED}
    if len(labels) != 1:
        pytest.fail(f"expected one operation's responses, got {sorted(labels)}")
    (label,) = labels
    statuses = ", ".join(f"{status} x{count}" for (_, status), count in sorted(EXERCISED.items()))
    print(  # the figures, for `pytest -s`
        f"\nschemathesis seed {SCHEMATHESIS_SEED}: {label}: {EXERCISED.total()} requests "
        f"in {elapsed:.1f}s ({statuses})"
    )
    method, path = label.split(" ", 1)
    operation = generated_schema()["paths"][path][method.lower()]
    missing = expected_statuses(path, operation) - {status for _, status in EXERCISED}
    if missing:
        pytest.fail(f"{label} never answered {sorted(missing)}: the run did not reach them")


@pytest.fixture(scope="module")
def write_token(django_db_setup: None, django_db_blocker: DjangoDbBlocker) -> Iterator[None]:
    """A staff token that may write, whose key is WRITE_TOKEN_KEY."""
    with django_db_blocker.unblock():
        token, _ = ApiToken.objects.get_or_create(
            name="schemathesis",
            defaults={"key_hash": hash_key(WRITE_TOKEN_KEY), "can_write": True, "is_staff": True},
        )
        yield
        token.delete()


@pytest.mark.usefixtures(write_token.__name__, schemathesis_run.__name__)
@API_SCHEMA.parametrize()
def test_schemathesis_finds_no_server_error_and_no_check_failure(case: Case[Any]) -> None:
    # Every check but positive_data_acceptance, on every case of the examples, coverage and
    # fuzzing phases; one test per operation.
    response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
    EXERCISED[case.operation.label, response.status_code] += 1
    assert response.status_code < 500, case.as_curl_command()


# --- hostile query strings -----------------------------------------------------------------

ENDPOINTS = [
    "/api/v1/gpus",
    "/api/v1/hosts",
    TELEMETRY,
    AGGREGATE,
    f"/api/v1/gpus/{REFERENCE_UUID}/latest",
    f"/api/v1/gpus/{REFERENCE_UUID}",
    f"/api/v1/gpus/{REFERENCE_UUID}/telemetry.csv",
    "/api/v1/telemetry.csv",
    "/api/v1/metrics",
    "/api/v1/stats",
    "/api/v1/fleet/latest",
    "/api/v1/hosts/mtv5-dgx1-hgpu-031/aggregate",
]
PARAMETERS = [
    "start_time", "end_time", "metric", "bucket", "limit", "offset", "hostname", "model",
    "namespace", "fn",
]  # fmt: skip
HOSTILE_VALUES = {
    "sql": "' OR 1=1 --",
    "sql-union": "x' UNION SELECT uuid FROM ingest_gpu --",
    "sql-time": "2025-07-18T20:42:34Z'; DROP TABLE ingest_sample; --",
    "nul": "\x00",
    "nul-inside": "2025-07-18T20:42:34\x00Z",
    "percent-nul": "%00",
    "control": "\x01\x1b[31m\x7f",
    "newline": "a\r\nb",
    "unicode": "\ud7ff\ufffd\U0001f525",
    "huge": "9" * 100_000,
}
ANSWERS = {200, 400, 404}
TIME_AND_METRIC = ("start_time", "end_time", "metric")


def unanswered(api: Client, requests: list[tuple[str, dict[str, str]]]) -> list[str]:
    """The requests whose answer is not a 200, 400 or 404."""
    failures = []
    for url, query in requests:
        response = api.get(url, query)
        if response.status_code not in ANSWERS:
            shown = {name: value[:40] for name, value in query.items()}
            failures.append(f"{url} {shown!r}: {response.status_code}")
    return failures


@pytest.mark.parametrize("value_name", sorted(HOSTILE_VALUES))
def test_hostile_values_in_any_parameter_are_refused_not_crashed_on(
    live_api: Client, value_name: str
) -> None:
    value = HOSTILE_VALUES[value_name]
    requests = [
        (endpoint, {"bucket": "1h", parameter: value})
        for endpoint in ENDPOINTS
        for parameter in PARAMETERS
    ]
    assert not unanswered(live_api, requests)


def test_a_metric_repeated_two_thousand_times_is_not_a_server_error(live_api: Client) -> None:
    query = "&".join(["metric=DCGM_FI_DEV_GPU_UTIL"] * 2000)
    failures = []
    for endpoint in ENDPOINTS:
        response = live_api.get(f"{endpoint}?{query}&bucket=1h")
        if response.status_code not in ANSWERS:
            failures.append(f"{endpoint}: {response.status_code}")
    assert not failures


@pytest.mark.parametrize(
    ("endpoint", "parameter"),
    [
        *((endpoint, name) for endpoint in (TELEMETRY, AGGREGATE) for name in TIME_AND_METRIC),
        (TELEMETRY, "limit"),
        (TELEMETRY, "offset"),
        ("/api/v1/gpus", "limit"),
        ("/api/v1/hosts", "offset"),
    ],
)
def test_a_100_kb_value_is_a_400_naming_the_parameter(
    live_api: Client, endpoint: str, parameter: str
) -> None:
    value = "2025-07-18T20:42:34Z" + "0" * 100_000
    response = live_api.get(endpoint, {"bucket": "1h", parameter: value})
    assert response.status_code == 400, response.content[:300]
    assert parameter in response.json()


def test_a_100_kb_bucket_is_a_400_naming_it(live_api: Client) -> None:
    response = live_api.get(AGGREGATE, {"bucket": "1" * 100_000 + "s"})
    assert response.status_code == 400
    assert "bucket" in response.json()


UUID_SUFFIXES = ["", "/latest", "/telemetry", "/telemetry/aggregate?bucket=1h", "/telemetry.csv"]


@pytest.mark.parametrize(
    "value_name",
    sorted(HOSTILE_VALUES),
)
def test_hostile_uuids_are_not_found_not_crashed_on(live_api: Client, value_name: str) -> None:
    uuid = quote(HOSTILE_VALUES[value_name], safe="")
    failures = []
    for suffix in UUID_SUFFIXES:
        response = live_api.get(f"/api/v1/gpus/{uuid}{suffix}")
        if response.status_code != 404:
            failures.append(f"{suffix or '(detail)'}: {response.status_code}")
    assert not failures


# --- times: RFC 3339 exactly, and no control character in any parameter ----------------------

# The reference GPU has ten samples, three of them stamped 2025-07-18T20:42:34Z, the others
# in the three seconds after.
ACCEPTED_TIMES = {
    "upper-case T and Z": "2025-07-18T20:42:34Z",
    "lower-case t and z": "2025-07-18t20:42:34z",
    "an offset": "2025-07-18T22:42:34+02:00",
    "a negative offset": "2025-07-18T16:12:34-04:30",
    "a fraction": "2025-07-18T20:42:34.000Z",
    "the widest offset": "2025-07-19T20:41:34+23:59",
}
REFUSED_TIMES = {
    "a space for T": "2025-07-18 20:42:34Z",
    "no zone": "2025-07-18T20:42:34",
    "no seconds": "2025-07-18T20:42Z",
    "basic format": "20250718T204234Z",
    "a week date": "2025-W29-5T20:42:34Z",
    "an ordinal date": "2025-199T20:42:34Z",
    "a two-digit year": "25-07-18T20:42:34Z",
    "an offset without colon": "2025-07-18T20:42:34+0200",
    "an hour-only offset": "2025-07-18T20:42:34+02",
    "an empty fraction": "2025-07-18T20:42:34.Z",
    "a comma fraction": "2025-07-18T20:42:34,5Z",
    "hour 24": "2025-07-18T24:00:00Z",
    "minute 60": "2025-07-18T20:60:34Z",
    "offset hour 24": "2025-07-18T20:42:34+24:00",
    "the 30th of February": "2025-02-30T20:42:34Z",
    "year 0000": "0000-01-01T00:00:00Z",
    "a leap second that does not end a UTC day": "2025-07-18T20:42:60Z",
    "full-width digits": "\uff12\uff10\uff12\uff15-07-18T20:42:34Z",
    "a trailing letter": "2025-07-18T20:42:34Zx",
    "a leading space": " 2025-07-18T20:42:34Z",
    "a trailing space": "2025-07-18T20:42:34Z ",
    "UTC spelled out": "2025-07-18T20:42:34 UTC",
    "a date only": "2025-07-18",
}
# The probes that were once answered 200 as if the time were clean: raw query strings.
CONTROL_CHARACTER_TIMES = [
    "2025-07-18T20:42:34Z%00",
    "2025-07-18T20:42:34%00Z",
    "2025-07-18T20:42:34Z%0A",
    "%0D2025-07-18T20:42:34Z",
    "2025-07-18T20:42:34Z%09",
    "2025-07-18T20:42:34Z%7F",
    "2025-07-18T20:42:34Z%C2%85",  # NEL, a C1 control character
]
CONTROL_CHARACTERS = ["\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x85"]


def telemetry_count(api: Client, **query: str) -> int:
    response = api.get(TELEMETRY, query)
    assert response.status_code == 200, response.content
    return len(response.json()["results"])


@pytest.mark.parametrize("form", sorted(ACCEPTED_TIMES))
def test_each_form_of_the_rfc_3339_grammar_is_accepted_as_the_same_instant(
    live_api: Client, form: str
) -> None:
    time = ACCEPTED_TIMES[form]
    assert telemetry_count(live_api, start_time=time, end_time=time) == 3


@pytest.mark.parametrize("form", sorted(REFUSED_TIMES))
@pytest.mark.parametrize("parameter", ["start_time", "end_time"])
def test_a_time_outside_the_rfc_3339_grammar_is_a_400_naming_the_parameter(
    live_api: Client, form: str, parameter: str
) -> None:
    for endpoint in (TELEMETRY, AGGREGATE):
        response = live_api.get(endpoint, {"bucket": "1h", parameter: REFUSED_TIMES[form]})
        assert response.status_code == 400, (endpoint, response.content)
        assert list(response.json()) == [parameter]


def test_a_space_and_an_unencoded_plus_are_explained(live_api: Client) -> None:
    space = live_api.get(f"{TELEMETRY}?start_time=2025-07-18 20:42:34Z").json()
    plus = live_api.get(f"{TELEMETRY}?start_time=2025-07-18T22:42:34+02:00").json()

    assert "not a space" in space["start_time"][0]
    assert "%2B" in plus["start_time"][0]


@pytest.mark.parametrize("raw", CONTROL_CHARACTER_TIMES)
def test_a_time_with_a_control_character_is_a_400_naming_it(live_api: Client, raw: str) -> None:
    for endpoint in (TELEMETRY, f"{AGGREGATE}?bucket=1h&"):
        joiner = "&" if endpoint.endswith("&") else "?"
        url = f"{endpoint.rstrip('&?')}{joiner}end_time={raw}"
        response = live_api.get(url)
        assert response.status_code == 400, (url, response.content)
        assert "end_time" in response.json()


@pytest.mark.parametrize("character", CONTROL_CHARACTERS, ids=repr)
def test_no_parameter_of_any_endpoint_accepts_a_control_character(
    live_api: Client, character: str
) -> None:
    unanswered = []
    for endpoint in [*ENDPOINTS, "/api/schema/"]:
        for parameter in [*PARAMETERS, "format", "unknown"]:
            # A value that is otherwise valid for the parameter, the control character last.
            value = {"limit": "10", "offset": "0", "bucket": "1h"}.get(parameter, "x")
            response = live_api.get(endpoint, {"bucket": "1h", parameter: value + character})
            named = response.status_code == 400 and parameter in response.json()
            if not named:
                unanswered.append(f"{endpoint} {parameter}: {response.status_code}")
    assert not unanswered


def test_a_control_character_in_a_parameter_name_is_refused_too(live_api: Client) -> None:
    response = live_api.get(f"{TELEMETRY}?limit%00=10")
    assert response.status_code == 400
    assert list(response.json()) == ["limit\x00"]


def test_a_bound_finer_than_a_microsecond_is_rounded_into_the_range(live_api: Client) -> None:
    assert telemetry_count(live_api, start_time="2025-07-18T20:42:34.0000001Z") == 7
    assert telemetry_count(live_api, start_time="2025-07-18T20:42:33.9999999Z") == 10
    assert telemetry_count(live_api, end_time="2025-07-18T20:42:34.0000009Z") == 3
    assert telemetry_count(live_api, end_time="2025-07-18T20:42:33.9999999Z") == 0


def test_a_leap_second_bound_lies_between_its_neighbours(live_api: Client) -> None:
    # 23:59:60 on 18 July 2025 never happened, but the grammar allows :60 at the end of any
    # UTC day; here it sits after every sample, as the next day's first instant does.
    assert telemetry_count(live_api, end_time="2025-07-18T23:59:60Z") == 10
    assert telemetry_count(live_api, start_time="2025-07-18T23:59:60.5Z") == 0
    assert telemetry_count(live_api, end_time="2025-07-18T20:59:60-03:00") == 10
