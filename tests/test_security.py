"""Secure by default: production settings refuse weak secrets, the API can require a token
and be throttled, the documentation can require a login, and every response carries the
security headers.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.urls import URLPattern, reverse
from pytest_django.fixtures import Settings

from api import urls as api_urls
from api.models import ApiToken
from api.push_views import PushView
from tests.support.reference import REPO

STRONG_KEY = secrets.token_urlsafe(48)  # 64 characters
UNSET = "<unset>"  # production_env drops a variable given this value
ON = "1"
# Variables the production-like environments below decide for themselves.
OWN_VARIABLES = ("DJANGO_", "API_", "DATABASE_URL", "DB_", "REDIS_", "CELERY_")


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The process environment of a production deployment: no DEBUG, a strong key, a host."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_VARIABLES)}
    env.update(
        DJANGO_SETTINGS_MODULE="telemetry_project.settings",
        DJANGO_SECRET_KEY=STRONG_KEY,
        DJANGO_ALLOWED_HOSTS="telemetry.example.com",
        TELEMETRY_VAR_DIR=str(tmp_path / "var"),
    )
    env.update(overrides)
    return {k: v for k, v in env.items() if v != UNSET}


def django_setup(env: dict[str, str], *names: str) -> subprocess.CompletedProcess[str]:
    """Start Django in a fresh interpreter and print the named settings as JSON."""
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {list(names)!r}}}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def settings_of(env: dict[str, str], *names: str) -> dict[str, object]:
    result = django_setup(env, *names)
    assert result.returncode == 0, result.stderr
    values: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return values


# --- Production settings refuse to start without a real secret and host list ---------------


def test_check_deploy_passes_for_production_settings(tmp_path: Path) -> None:
    env = production_env(tmp_path, DJANGO_SECURE_SSL_REDIRECT=ON)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_only_about_the_redirect_when_it_is_left_off(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO, env=production_env(tmp_path), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "security.W008" in output
    assert "1 issue" in output, output


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (UNSET, "missing"),
        ("", "missing"),
        ("short-but-random-Zx81", "shorter than 50"),
        ("development-only-key-never-used-in-production", "development key"),
        ("django-insecure-" + secrets.token_urlsafe(48), "insecure"),
        ("abab" * 20, "fewer than 5 distinct"),
    ],
)
def test_production_refuses_a_missing_or_weak_secret_key(
    tmp_path: Path, key: str, reason: str
) -> None:
    result = django_setup(production_env(tmp_path, DJANGO_SECRET_KEY=key), "SECRET_KEY")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert reason in result.stderr


def test_a_weak_secret_key_file_is_refused_too(tmp_path: Path) -> None:
    key_file = tmp_path / "secret_key"
    key_file.write_text("changeme\n")
    env = production_env(tmp_path, DJANGO_SECRET_KEY=UNSET, DJANGO_SECRET_KEY_FILE=str(key_file))
    result = django_setup(env, "SECRET_KEY")
    assert result.returncode != 0
    assert "shorter than 50" in result.stderr


def test_a_strong_secret_key_file_is_accepted(tmp_path: Path) -> None:
    key_file = tmp_path / "secret_key"
    key_file.write_text(STRONG_KEY + "\n")
    env = production_env(tmp_path, DJANGO_SECRET_KEY=UNSET, DJANGO_SECRET_KEY_FILE=str(key_file))
    assert settings_of(env, "SECRET_KEY") == {"SECRET_KEY": STRONG_KEY}


@pytest.mark.parametrize("hosts", [UNSET, "", " , "])
def test_production_refuses_an_empty_allowed_hosts(tmp_path: Path, hosts: str) -> None:
    result = django_setup(production_env(tmp_path, DJANGO_ALLOWED_HOSTS=hosts), "ALLOWED_HOSTS")
    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS is required" in result.stderr


def test_debug_runs_with_no_key_and_no_hosts_over_plain_http(tmp_path: Path) -> None:
    """``make run``: DJANGO_DEBUG=1 and nothing else, served over http on 127.0.0.1."""
    env = production_env(
        tmp_path, DJANGO_DEBUG="1", DJANGO_SECRET_KEY=UNSET, DJANGO_ALLOWED_HOSTS=UNSET
    )
    values = settings_of(
        env, "ALLOWED_HOSTS", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
        "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
    )  # fmt: skip
    assert values == {
        "ALLOWED_HOSTS": [],
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
    }


def test_production_defaults_are_the_safe_ones(tmp_path: Path) -> None:
    values = settings_of(
        production_env(tmp_path),
        "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_CONTENT_TYPE_NOSNIFF",
        "X_FRAME_OPTIONS", "API_REQUIRE_TOKEN", "API_DOCS_REQUIRE_LOGIN", "API_THROTTLE_RATES",
    )  # fmt: skip
    assert values == {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "X_FRAME_OPTIONS": "DENY",
        "API_REQUIRE_TOKEN": False,
        "API_DOCS_REQUIRE_LOGIN": False,
        "API_THROTTLE_RATES": {"anon": None, "user": None},
    }


def test_security_switches_are_read_from_the_environment(tmp_path: Path) -> None:
    env = production_env(
        tmp_path,
        DJANGO_SECURE_SSL_REDIRECT=ON,
        DJANGO_SECURE_PROXY_SSL_HEADER=ON,
        DJANGO_SECURE_COOKIES="0",
        DJANGO_SECURE_HSTS_SECONDS="60",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://telemetry.example.com",
        API_REQUIRE_TOKEN=ON,
        API_DOCS_REQUIRE_LOGIN="yes",
        API_THROTTLE_ANON="60/minute",
        API_THROTTLE_USER="1000/hour",
    )
    values = settings_of(
        env, "SECURE_SSL_REDIRECT", "SECURE_PROXY_SSL_HEADER", "SESSION_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS", "CSRF_TRUSTED_ORIGINS", "API_REQUIRE_TOKEN",
        "API_DOCS_REQUIRE_LOGIN", "API_THROTTLE_RATES",
    )  # fmt: skip
    assert values == {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SESSION_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 60,
        "CSRF_TRUSTED_ORIGINS": ["https://telemetry.example.com"],
        "API_REQUIRE_TOKEN": True,
        "API_DOCS_REQUIRE_LOGIN": True,
        "API_THROTTLE_RATES": {"anon": "60/minute", "user": "1000/hour"},
    }


@pytest.mark.parametrize("rate", ["600", "fast", "ten/minute", "600/fortnight"])
def test_a_malformed_throttle_rate_is_refused(tmp_path: Path, rate: str) -> None:
    result = django_setup(production_env(tmp_path, API_THROTTLE_ANON=rate), "API_THROTTLE_RATES")
    assert result.returncode != 0
    assert "is not a rate like 600/minute" in result.stderr


# --- The API: read-only, optionally token-protected, optionally throttled -------------------

API_PATTERNS = [p for p in api_urls.urlpatterns if isinstance(p, URLPattern)]


def is_push(pattern: URLPattern) -> bool:
    return issubclass(getattr(pattern.callback, "cls", object), PushView)


# Path parameters of detail routes: names of no GPU and no host.
UNKNOWN = {"id": "no-such-gpu", "hostname": "no-such-host"}
# Routes for staff only (a staff user's session or a staff token; test_api_sources.py): a
# token without staff is refused them with a 403 before any method is looked at.
STAFF_ONLY = {"/api/v1/sources"}
# Query parameters a route cannot answer without (by route name): the fleet export's range.
REQUIRED_QUERY = {"telemetry-csv": "?start_time=2025-07-18T00:00:00Z&end_time=2025-07-19T00:00:00Z"}


def api_paths(*, push: bool = False) -> list[str]:
    """Every read-only /api/v1 route (or every push route), a detail route with parameters
    that name no GPU or host."""
    paths = []
    for pattern in API_PATTERNS:
        if is_push(pattern) != push:
            continue
        kwargs = {name: UNKNOWN[name] for name in pattern.pattern.regex.groupindex}
        query = REQUIRED_QUERY.get(str(pattern.name), "")
        paths.append(reverse(f"api:{pattern.name}", kwargs=kwargs) + query)
    return paths


def test_every_api_route_is_covered() -> None:
    assert len(API_PATTERNS) == len(api_urls.urlpatterns) >= 11
    assert len(api_paths(push=True)) == 3
    assert all(path.startswith("/api/v1/") for path in api_paths() + api_paths(push=True))


@pytest.fixture
def no_throttle_state() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def token() -> str:
    return ApiToken.issue("reader", can_write=False).new_key


@pytest.mark.django_db
@pytest.mark.parametrize("path", api_paths())
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_the_api_refuses_every_write_method(client: Client, path: str, method: str) -> None:
    response = getattr(client, method)(path, data={}, content_type="application/json")
    # A staff-only route asks who is calling first.
    assert response.status_code == (401 if path in STAFF_ONLY else 405), (path, method)


@pytest.mark.django_db
@pytest.mark.parametrize("path", api_paths())
def test_the_api_is_open_when_no_token_is_required(client: Client, path: str) -> None:
    assert client.get(path).status_code in ({401} if path in STAFF_ONLY else {200, 404})


@pytest.mark.django_db
@pytest.mark.parametrize("path", api_paths())
def test_a_required_token_guards_every_api_route(
    client: Client, settings: Settings, token: str, path: str
) -> None:
    settings.API_REQUIRE_TOKEN = True

    without = client.get(path)
    wrong = client.get(path, headers={"authorization": "Token " + "0" * 40})
    with_token = client.get(path, headers={"authorization": f"Token {token}"})
    with_bearer = client.get(path, headers={"authorization": f"Bearer {token}"})

    assert without.status_code == 401, without.content
    assert without.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert wrong.status_code == 401
    # A detail route for a GPU or host that does not exist: authorised, then not found.
    unknown = any(name in path for name in UNKNOWN.values())
    expected = 403 if path in STAFF_ONLY else 404 if unknown else 200
    assert with_token.status_code == expected, with_token.content
    assert with_bearer.status_code == with_token.status_code


@pytest.mark.django_db
@pytest.mark.parametrize("path", api_paths(push=True))
def test_the_push_routes_need_a_write_token_and_take_only_posts(
    client: Client, token: str, path: str
) -> None:
    writer = ApiToken.issue("writer", can_write=True).new_key
    assert client.post(path).status_code == 401  # whatever API_REQUIRE_TOKEN says
    assert client.post(path, headers={"authorization": f"Bearer {token}"}).status_code == 403
    for method in ("get", "put", "patch", "delete"):
        response = getattr(client, method)(path, headers={"authorization": f"Bearer {writer}"})
        assert response.status_code == 405, (method, response.content)


@pytest.mark.django_db
def test_a_write_with_a_token_is_still_refused(
    client: Client, settings: Settings, token: str
) -> None:
    settings.API_REQUIRE_TOKEN = True
    response = client.post("/api/v1/gpus", headers={"authorization": f"Token {token}"})
    assert response.status_code == 405


@pytest.mark.django_db
@pytest.mark.usefixtures("no_throttle_state")
def test_health_stays_open_when_a_token_is_required_and_rates_are_tiny(
    client: Client, settings: Settings
) -> None:
    settings.API_REQUIRE_TOKEN = True
    settings.API_THROTTLE_RATES = {"anon": "1/minute", "user": "1/minute"}
    statuses = [client.get("/health").status_code for _ in range(3)]
    bad_token = client.get("/health", headers={"authorization": "Token nonsense"})
    assert set(statuses) <= {200, 503}, statuses
    assert bad_token.status_code in {200, 503}


@pytest.mark.django_db
@pytest.mark.usefixtures("no_throttle_state")
def test_anonymous_requests_are_throttled_at_the_anon_rate(
    client: Client, settings: Settings
) -> None:
    settings.API_THROTTLE_RATES = {"anon": "2/minute", "user": None}
    statuses = [client.get("/api/v1/metrics").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert int(client.get("/api/v1/stats").headers["Retry-After"]) > 0


@pytest.mark.django_db
@pytest.mark.usefixtures("no_throttle_state")
def test_token_holders_are_throttled_at_the_user_rate_only(
    client: Client, settings: Settings, token: str
) -> None:
    settings.API_THROTTLE_RATES = {"anon": "1/minute", "user": "3/minute"}
    auth = {"authorization": f"Token {token}"}
    statuses = [client.get("/api/v1/metrics", headers=auth).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    # The anonymous budget is counted apart from the user's.
    assert client.get("/api/v1/metrics").status_code == 200
    assert client.get("/api/v1/metrics").status_code == 429


@pytest.mark.django_db
@pytest.mark.usefixtures("no_throttle_state")
def test_no_rate_means_no_throttle(client: Client, settings: Settings) -> None:
    settings.API_THROTTLE_RATES = {"anon": None, "user": None}
    assert {client.get("/api/v1/metrics").status_code for _ in range(20)} == {200}


# --- The documentation can require a login --------------------------------------------------

DOC_PATHS = ["/api/docs/", "/api/redoc/", "/api/schema/"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", DOC_PATHS)
def test_docs_are_open_by_default(client: Client, path: str) -> None:
    assert client.get(path).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("path", DOC_PATHS)
def test_docs_can_require_a_login(
    client: Client, settings: Settings, django_user_model: type[User], path: str
) -> None:
    settings.API_DOCS_REQUIRE_LOGIN = True

    anonymous = client.get(path)
    staff = django_user_model.objects.create_user(
        username="operator", password=secrets.token_hex(), is_staff=True
    )
    client.force_login(staff)
    logged_in = client.get(path)

    assert anonymous.status_code == 302
    assert anonymous.headers["Location"] == f"/admin/login/?next={path}"
    assert logged_in.status_code == 200


# --- Headers, cookies and the https redirect ------------------------------------------------


@pytest.mark.django_db
def test_responses_carry_the_security_headers(client: Client) -> None:
    plain = client.get("/api/v1/metrics")
    secure = client.get("/api/v1/metrics", secure=True)

    assert plain.headers["X-Frame-Options"] == "DENY"
    assert plain.headers["X-Content-Type-Options"] == "nosniff"
    assert plain.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in plain.headers  # browsers ignore it over http
    assert secure.headers["Strict-Transport-Security"] == (
        "max-age=31536000; includeSubDomains; preload"
    )


@pytest.mark.django_db
def test_admin_cookies_are_secure_without_debug(
    client: Client, django_user_model: type[User]
) -> None:
    password = secrets.token_hex()
    django_user_model.objects.create_user(username="admin", password=password, is_staff=True)
    client.get("/admin/login/")
    response = client.post("/admin/login/", {"username": "admin", "password": password})
    assert response.status_code == 302
    assert client.cookies["csrftoken"]["secure"] is True
    assert response.cookies["sessionid"]["secure"] is True
    assert response.cookies["sessionid"]["httponly"] is True


@pytest.mark.django_db
def test_the_https_redirect_trusts_the_proxy_header_and_spares_health(
    settings: Settings,
) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    client = Client()  # built after the change: SecurityMiddleware reads settings once

    plain = client.get("/api/v1/metrics")
    proxied = client.get("/api/v1/metrics", headers={"x-forwarded-proto": "https"})
    health = client.get("/health")

    assert plain.status_code == 301
    assert plain.headers["Location"] == "https://testserver/api/v1/metrics"
    assert proxied.status_code == 200
    assert health.status_code in {200, 503}
