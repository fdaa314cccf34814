"""API tokens: made by ``create_token`` or the admin, stored hashed, presented as Bearer or
Token, read-only unless made to write, and carried over from DRF's token table on upgrade."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse
from pytest_django import DjangoAssertNumQueries
from pytest_django.fixtures import Settings

from api.models import ApiToken
from tests.support.reference import REPO

WRITE_VIEWS = pytest.mark.urls("tests.support.write_views")
CHALLENGE = 'Bearer realm="api"'


def auth(scheme: str, key: str) -> dict[str, str]:
    return {"authorization": f"{scheme} {key}"}


@pytest.fixture
def reader() -> ApiToken:
    return ApiToken.issue("grafana", can_write=False)


@pytest.fixture
def writer() -> ApiToken:
    return ApiToken.issue("prometheus-eu1", can_write=True)


def create_token(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "create_token", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


# --- manage.py create_token -------------------------------------------------------------


def test_create_token_prints_only_the_key_and_stores_only_its_hash(
    pipeline_env: dict[str, str],
) -> None:
    reading = create_token(pipeline_env, "grafana")
    writing = create_token(pipeline_env, "prometheus-eu1", "--write")

    for result in (reading, writing):
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}\n", result.stdout), result.stdout
    tokens = {token.name: token for token in ApiToken.objects.all()}
    assert tokens["grafana"].key_hash == hashlib.sha256(reading.stdout.strip().encode()).hexdigest()
    assert tokens["grafana"].can_write is False
    assert tokens["prometheus-eu1"].can_write is True
    assert ApiToken.for_key(writing.stdout.strip()) == tokens["prometheus-eu1"]


def test_create_token_exits_1_when_the_name_is_taken(pipeline_env: dict[str, str]) -> None:
    first = create_token(pipeline_env, "grafana")
    again = create_token(pipeline_env, "grafana", "--write")

    assert first.returncode == 0
    assert again.returncode == 1
    assert again.stdout == ""
    assert "A token with this name already exists." in again.stderr
    assert ApiToken.objects.get().can_write is False


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "message"), [("", "cannot be blank"), ("x" * 151, "at most 150")])
def test_a_token_needs_a_name_of_sensible_length(name: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ApiToken.issue(name, can_write=False)
    assert not ApiToken.objects.exists()


# --- Reading: any valid token, in either scheme, when the API requires one -------------------


@pytest.mark.django_db
@pytest.mark.parametrize("scheme", ["Bearer", "Token", "bearer"])
def test_either_scheme_opens_the_api_when_a_token_is_required(
    client: Client, settings: Settings, reader: ApiToken, scheme: str
) -> None:
    settings.API_REQUIRE_TOKEN = True
    response = client.get("/api/v1/stats", headers=auth(scheme, reader.new_key))
    assert response.status_code == 200, response.content


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ("", "Authentication credentials were not provided."),
        ("Basic dXNlcjpwYXNz", "Authentication credentials were not provided."),
        ("Bearer", "Invalid Bearer header: give exactly one key"),
        ("Token two keys", "Invalid Token header: give exactly one key"),
        ("Bearer not-a-key-anyone-holds", "Invalid token."),
    ],
)
def test_a_missing_malformed_or_unknown_token_is_401_with_the_challenge(
    client: Client, settings: Settings, reader: ApiToken, header: str, detail: str
) -> None:
    settings.API_REQUIRE_TOKEN = True
    response = client.get("/api/v1/stats", headers={"authorization": header} if header else {})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert response.json()["detail"].startswith(detail)


@pytest.mark.django_db
def test_last_used_is_noted_at_most_once_a_minute(
    reader: ApiToken, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    assert reader.last_used is None

    with django_assert_num_queries(2):  # the lookup, and the first note of its use
        ApiToken.for_key(reader.new_key)
    with django_assert_num_queries(1):  # the lookup alone: noted under a minute ago
        ApiToken.for_key(reader.new_key)

    reader.refresh_from_db()
    assert reader.last_used is not None


# --- Writing: a token that may write, whatever API_REQUIRE_TOKEN says -------------------------


@WRITE_VIEWS
@pytest.mark.django_db
@pytest.mark.parametrize("require_token", [False, True])
def test_writing_without_a_token_is_401_with_the_challenge(
    client: Client, settings: Settings, require_token: bool
) -> None:
    settings.API_REQUIRE_TOKEN = require_token
    response = client.post("/push", b"x", content_type="text/plain")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert response.json() == {"detail": "Authentication credentials were not provided."}


@WRITE_VIEWS
@pytest.mark.django_db
@pytest.mark.parametrize("scheme", ["Bearer", "Token"])
def test_a_read_only_token_may_not_write(client: Client, reader: ApiToken, scheme: str) -> None:
    response = client.post(
        "/push", b"x", content_type="text/plain", headers=auth(scheme, reader.new_key)
    )
    assert response.status_code == 403
    assert "WWW-Authenticate" not in response.headers
    assert response.json()["detail"].startswith("This token may only read")


@WRITE_VIEWS
@pytest.mark.django_db
@pytest.mark.parametrize("scheme", ["Bearer", "Token"])
def test_a_write_token_writes_in_either_scheme(
    client: Client, writer: ApiToken, scheme: str
) -> None:
    response = client.post(
        "/push", b"abc", content_type="text/plain", headers=auth(scheme, writer.new_key)
    )
    assert response.status_code == 200, response.content
    assert response.json()["bytes"] == 3


# --- A plain Django view -----------------------------------------------------------------


@WRITE_VIEWS
@pytest.mark.django_db
def test_a_plain_view_is_open_while_no_token_is_required(client: Client) -> None:
    assert client.get("/plain").status_code == 200


@WRITE_VIEWS
@pytest.mark.django_db
def test_a_plain_view_requires_a_valid_token_when_the_api_does(
    client: Client, settings: Settings, reader: ApiToken
) -> None:
    settings.API_REQUIRE_TOKEN = True

    without = client.get("/plain")
    unknown = client.get("/plain", headers=auth("Bearer", "nobody-holds-this"))
    bearer = client.get("/plain", headers=auth("Bearer", reader.new_key))
    token = client.get("/plain", headers=auth("Token", reader.new_key))

    assert (without.status_code, unknown.status_code) == (401, 401)
    assert without.headers["WWW-Authenticate"] == unknown.headers["WWW-Authenticate"] == CHALLENGE
    assert unknown.json() == {"detail": "Invalid token."}
    assert (bearer.status_code, token.status_code) == (200, 200)
    assert bearer.content.startswith(b"# a page")


# --- The admin ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_makes_a_token_and_shows_its_key_once(admin_client: Client) -> None:
    add_url = reverse("admin:api_apitoken_add")
    assert admin_client.get(add_url).status_code == 200

    response = admin_client.post(add_url, {"name": "vmagent", "can_write": "on"})

    assert response.status_code == 200, response.content
    assert "no-store" in response.headers["Cache-Control"]
    key = re.search(rb'<code id="token-key"[^>]*>([A-Za-z0-9_-]{43})</code>', response.content)
    assert key is not None, response.content
    token = ApiToken.objects.get(name="vmagent")
    assert token.can_write is True
    assert ApiToken.for_key(key.group(1).decode()) == token
    change = admin_client.get(reverse("admin:api_apitoken_change", args=[token.pk]))
    assert change.status_code == 200
    assert key.group(1) not in change.content
    assert token.key_hash.encode() not in change.content
    listing = admin_client.get(reverse("admin:api_apitoken_changelist"))
    assert b"vmagent" in listing.content


@pytest.mark.django_db
def test_the_admin_refuses_a_taken_name(admin_client: Client, reader: ApiToken) -> None:
    response = admin_client.post(reverse("admin:api_apitoken_add"), {"name": reader.name})
    assert response.status_code == 200
    assert b"A token with this name already exists." in response.content
    assert ApiToken.objects.count() == 1


# --- Upgrading from DRF's tokens -----------------------------------------------------------

LEGACY_KEY = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"  # DRF's format: 40 hex digits


@pytest.fixture
def legacy_token_table(transactional_db: None) -> Iterator[None]:
    """DRF's ``authtoken_token`` table as its migrations made it, with one user's key, and the
    api app migrated back to before the carry-over."""
    executor = MigrationExecutor(connection)
    executor.migrate([("api", "0001_api_token")])
    user = User.objects.create_user(username="dashboard-bot")
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamp with time zone NOT NULL, "
            "user_id integer NOT NULL UNIQUE REFERENCES auth_user (id))"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, %s, %s)",
            [LEGACY_KEY, datetime(2025, 7, 18, 13, 42, tzinfo=UTC), user.pk],
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS authtoken_token")
    MigrationExecutor(connection).migrate(
        MigrationExecutor(connection).loader.graph.leaf_nodes("api")
    )


@pytest.mark.usefixtures("legacy_token_table")
def test_upgrading_carries_drf_keys_over_as_read_only_tokens(
    client: Client, settings: Settings
) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes("api"))

    token = ApiToken.objects.get()
    assert token.name == "dashboard-bot"
    assert token.can_write is False
    assert token.created == datetime(2025, 7, 18, 13, 42, tzinfo=UTC)
    assert token.key_hash == hashlib.sha256(LEGACY_KEY.encode()).hexdigest()
    # The old table is left for processes of the previous release.
    assert "authtoken_token" in connection.introspection.table_names()
    settings.API_REQUIRE_TOKEN = True
    for scheme in ("Token", "Bearer"):
        response = client.get("/api/v1/stats", headers=auth(scheme, LEGACY_KEY))
        assert response.status_code == 200, response.content
