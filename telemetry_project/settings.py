"""The one settings module, read from the environment.

With no environment at all (apart from the development settings ``make run`` writes to
``var/dev.env``, ``telemetry_project.dev_env``) the project runs embedded: SQLite and kombu's
filesystem transport under ``var/``. Setting ``DATABASE_URL`` (or the ``DB_*`` variables) and
``REDIS_URL`` switches the same processes to PostgreSQL and Redis. README.md lists every
variable with its default.

It is one module past 400 lines on purpose: every setting a deployment can change is read,
checked and given its default in one place, in the order Django and Celery use them.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from yarl import URL

from telemetry_project import dev_env
from telemetry_project.env import (
    env_bool,
    env_float,
    env_host_rules,
    env_int,
    env_list,
    env_secret,
    env_str,
    use_file_values,
)
from telemetry_project.routing import COLLECT_QUEUE, TASK_ROUTES

BASE_DIR = Path(__file__).resolve().parent.parent
# A development checkout knows it is one: the settings `make run` ran with stand in for every
# variable this process's environment leaves unset (none in production: there is no file).
use_file_values(dev_env.load(BASE_DIR / "var"))
VAR_DIR = Path(env_str("TELEMETRY_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)
DEVELOPMENT_SECRET_KEY = "development-only-key-never-used-in-production"  # noqa: S105
# Django's own deploy check (security.W009) calls a key weak below these figures.
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_UNIQUE_CHARACTERS = 5


def secret_key_weakness(key: str) -> str:
    """Why ``key`` is unfit for production, or "" when it is fit."""
    if not key:
        return "it is missing"
    if key == DEVELOPMENT_SECRET_KEY:
        return "it is the development key"
    if key.startswith("django-insecure"):
        return "it is a key Django's startproject marks insecure"
    if len(key) < SECRET_KEY_MIN_LENGTH:
        return f"it is shorter than {SECRET_KEY_MIN_LENGTH} characters"
    if len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        return f"it has fewer than {SECRET_KEY_MIN_UNIQUE_CHARACTERS} distinct characters"
    return ""


SECRET_KEY = env_secret("DJANGO_SECRET_KEY")
if not DEBUG and (weakness := secret_key_weakness(SECRET_KEY)):
    raise ImproperlyConfigured(
        f"DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is refused: {weakness}. Unless "
        "DJANGO_DEBUG=1, give a random key of at least 50 characters, e.g. the output of "
        "python3 -c 'import secrets; print(secrets.token_hex(32))'"
    )
SECRET_KEY = SECRET_KEY or DEVELOPMENT_SECRET_KEY
# With DEBUG and no list, Django answers localhost only; without DEBUG a list is required.
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "DJANGO_ALLOWED_HOSTS is required unless DJANGO_DEBUG=1: the comma-separated host "
        "names the web server answers to (e.g. telemetry.example.com,localhost)"
    )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "ingest",
    "api",
    "dashboard",
    # The tools app (bench/) is in a checkout, not in the image (.dockerignore).
    *(["bench"] if (BASE_DIR / "bench" / "apps.py").exists() else []),
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise: static files (the liveness probe's among them) are not counted.
    "api.request_metrics.RequestMetricsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "api.middleware.RefuseControlCharacters",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "telemetry_project.urls"
WSGI_APPLICATION = "telemetry_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


# --- Database -----------------------------------------------------------------------------


def _database() -> dict[str, Any]:
    url = env_secret("DATABASE_URL")
    if url:
        config: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=60))
    elif env_str("DB_HOST"):
        config = {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": env_str("DB_HOST"),
            "PORT": env_int("DB_PORT", 5432, minimum=1),
            "USER": env_str("DB_USER", "postgres"),
            "PASSWORD": env_secret("DB_PASSWORD"),
            "NAME": env_str("DB_NAME", "telemetry"),
            "CONN_MAX_AGE": 60,
        }
    else:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        # Several processes (web, beat, streamer, collector) write: WAL lets readers run
        # beside the writer, IMMEDIATE takes the write lock up front so two writers queue on
        # the busy timeout instead of failing with "database is locked" half-way through.
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "telemetry.sqlite3",
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    if config["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend with a health check that sends no query (telemetry_project.postgresql).
        config["ENGINE"] = "telemetry_project.postgresql"
        options = config.setdefault("OPTIONS", {})
        ssl_mode = env_str("DB_SSL_MODE")
        if ssl_mode:
            options["sslmode"] = ssl_mode
        # The CA that signed the server's certificate, for sslmode verify-ca / verify-full.
        if env_str("DB_SSL_ROOT_CERT"):
            options["sslrootcert"] = env_str("DB_SSL_ROOT_CERT")
        options.setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 5, minimum=1))
        config["CONN_HEALTH_CHECKS"] = True
    if env_str("DB_TEST_NAME"):
        config["TEST"] = {"NAME": env_str("DB_TEST_NAME")}
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# --- Broker -------------------------------------------------------------------------------


def broker_url_with_password(url: str, password: str) -> str:
    """``url`` with ``password`` in its user information, unless it already carries one.

    yarl keeps the URL's components apart (user, host with its IPv6 brackets, port, path,
    query) and percent-encodes the password by the rules of its own component, so a user
    name, an IPv6 literal or a password holding ``@``, ``:``, ``/`` or ``%`` all survive.
    """
    parsed = URL(url)
    if not password or parsed.password:
        return url
    return str(parsed.with_password(password))


def _broker_url() -> str:
    url = env_secret("CELERY_BROKER_URL") or env_secret("REDIS_URL")
    if not url:
        return "filesystem://"
    try:
        scheme = URL(url).scheme
    except ValueError as error:  # e.g. an unclosed IPv6 bracket
        raise ImproperlyConfigured(f"the broker URL {url!r} is not a URL: {error}") from None
    if scheme not in {"redis", "rediss"}:
        raise ImproperlyConfigured(f"the broker URL must be redis:// or rediss://, not {url!r}")
    return broker_url_with_password(url, env_secret("REDIS_PASSWORD"))


CELERY_BROKER_URL = _broker_url()
BROKER_IS_FILESYSTEM = CELERY_BROKER_URL == "filesystem://"
BROKER_FOLDER = VAR_DIR / "broker"

if BROKER_IS_FILESYSTEM:
    for folder in ("queue", "control"):
        (BROKER_FOLDER / folder).mkdir(parents=True, exist_ok=True)
    # The filesystem transport hands a message to exactly one consumer by renaming its file;
    # it has no visibility timeout, so exactly-once rests on the ledger and the streamer's
    # re-publishing of unconfirmed chunks (docs/design.md, "Run modes").
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
        "data_folder_in": str(BROKER_FOLDER / "queue"),
        "data_folder_out": str(BROKER_FOLDER / "queue"),
        "control_folder": str(BROKER_FOLDER / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # An un-acked chunk (its worker died) returns to the queue after this many seconds.
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=1),
    }
    if CELERY_BROKER_URL.startswith("rediss://"):
        CELERY_BROKER_USE_SSL: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        if env_str("REDIS_TLS_CA_FILE"):
            CELERY_BROKER_USE_SSL["ssl_ca_certs"] = env_str("REDIS_TLS_CA_FILE")
# kombu's transports, subclassed so that a message that cannot be decoded becomes a dead
# letter instead of stopping the worker, and the filesystem's hand-over is atomic.
CELERY_BROKER_TRANSPORT = (
    "ingest.filesystem_broker:Transport"
    if BROKER_IS_FILESYSTEM
    else "ingest.undecodable:RedisTransport"
)
CELERY_WORKER_CONSUMER = "ingest.undecodable:DeadLetteringConsumer"

# Delivery settings: docs/design.md, "Delivery protocol". A task is acked only after it has
# committed (or dead-lettered) its chunk; a killed worker's message is redelivered.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "msgpack"
CELERY_ACCEPT_CONTENT = ["msgpack", "json"]
CELERY_TASK_DEFAULT_QUEUE = COLLECT_QUEUE
CELERY_TASK_ROUTES = TASK_ROUTES
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TIMEZONE = "UTC"
# Celery's Django fixup otherwise closes the database connection around every task: a new
# PostgreSQL backend per chunk. Tasks close it themselves after a database error.
CELERY_DB_REUSE_MAX = 1000


# --- The pipeline -------------------------------------------------------------------------

# Chunks a cursor may have published but not yet seen committed: the backpressure bound.
MAX_OUTSTANDING_CHUNKS = env_int("MAX_OUTSTANDING_CHUNKS", 16, minimum=1)
# A stream tick publishes nothing while the collect queue holds this many messages.
COLLECT_QUEUE_MAX_DEPTH = env_int("COLLECT_QUEUE_MAX_DEPTH", 64, minimum=1)
# An outstanding chunk not in the ledger after this long is published again.
REPUBLISH_AFTER_SECONDS = env_float("REPUBLISH_AFTER_SECONDS", 120.0, minimum=0.1)
# A chunk whose own processing failed this many times becomes a dead letter.
MAX_CHUNK_ATTEMPTS = env_int("MAX_CHUNK_ATTEMPTS", 5, minimum=1)
# Every task cancels a database statement, or leaves an open transaction idle, no longer than
# this (ingest.bounds): the solo pool enforces no Celery time limit. Keep it well under the
# workers' heartbeat limit, which a task in hand must not outlive.
TASK_STATEMENT_TIMEOUT_SECONDS = env_float("TASK_STATEMENT_TIMEOUT_SECONDS", 60.0, minimum=0.1)
# Capped exponential backoff for a collect task that met a database or broker outage.
RETRY_BACKOFF_MAX_SECONDS = env_float("RETRY_BACKOFF_MAX_SECONDS", 30.0, minimum=0.1)
# Samples older than this are rejected at ingest and their partitions dropped (0 = keep).
# Bounded by default: the sample table is the one that grows without end.
RETENTION_DAYS = env_int("RETENTION_DAYS", 30, minimum=0)
# Ledger rows (and attempt counts) older than this are pruned hourly (0 = keep): a chunk
# delivered or pushed again after that is no longer recognised, so it must exceed the longest
# a redelivery, a re-publishing or a client's push retry can take.
LEDGER_RETENTION_DAYS = env_int("LEDGER_RETENTION_DAYS", 7, minimum=0)
# Days covered by one partition of the sample table (PostgreSQL), aligned on a fixed Monday,
# so 7 makes calendar weeks. Changing it affects new partitions only.
PARTITION_DAYS = env_int("PARTITION_DAYS", 1, minimum=1)
# Days ahead of today that the hourly maintenance makes sure have a partition.
PARTITIONS_AHEAD_DAYS = env_int("PARTITIONS_AHEAD_DAYS", 3, minimum=0)
# Source locations are data that an admin user (or anyone who can edit the database) controls,
# so a streamer reads only files under these directories (checked again at every read, after
# resolving symlinks) and only http(s) URLs. An empty list allows URLs only.
STREAM_SOURCE_DIRS = env_list("STREAM_SOURCE_DIRS", [str(BASE_DIR / "data"), str(VAR_DIR)])
# An http(s) source larger than this (Content-Length, or bytes actually read) is refused, so
# an endless or huge response cannot run a streamer forever (0 = no cap).
STREAM_SOURCE_MAX_BYTES = env_int("STREAM_SOURCE_MAX_BYTES", 20 << 30, minimum=0)
# Addresses an http(s) source may reach (ingest.fetch). Loopback, link-local (cloud metadata at
# 169.254.169.254), multicast and unspecified addresses are refused unless SOURCE_URL_ALLOW
# lists them; SOURCE_URL_DENY refuses more, and wins over everything. Private ranges are
# allowed: exporters live there. Both are comma-separated CIDR ranges and host names.
SOURCE_URL_ALLOW = env_host_rules("SOURCE_URL_ALLOW")
SOURCE_URL_DENY = env_host_rules("SOURCE_URL_DENY")
# Connect and per-read timeout for http(s) sources: a stalled server fails the tick instead
# of holding a streamer (and its cursor lock) indefinitely.
STREAM_SOURCE_HTTP_TIMEOUT_SECONDS = env_float(
    "STREAM_SOURCE_HTTP_TIMEOUT_SECONDS", 30.0, minimum=0.1
)
# Scrape sources (ingest.scraper): a page must arrive whole within this many seconds (never
# longer than the source's interval, so a hung target cannot hold a streamer past its slot)
# and be no larger than SCRAPE_MAX_BYTES; either failure is a failed scrape of that source.
SCRAPE_TIMEOUT_SECONDS = env_float("SCRAPE_TIMEOUT_SECONDS", 5.0, minimum=0.1)
SCRAPE_MAX_BYTES = env_int("SCRAPE_MAX_BYTES", 16 << 20, minimum=1)


# --- Web ----------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Transport security (README, "Configuration") -----------------------------------------
# Production defaults are the safe ones; DJANGO_DEBUG=1 (``make run`` over plain http on
# 127.0.0.1) relaxes those a browser would otherwise refuse there. The redirect to https is
# opt-in: behind a proxy that terminates TLS it needs DJANGO_SECURE_PROXY_SSL_HEADER too
# (else every request looks like http and redirects forever), and plain-http deployments
# (Compose on localhost, the test client) would stop working.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
# The health probe and /metrics are answered over plain http: kubelets, Compose and
# Prometheus reach the pod directly.
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^metrics$"]
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    # Only behind a proxy that sets (and overwrites) X-Forwarded-Proto: a client could forge it.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
# Browsers honour HSTS only when it arrives over https, so it is harmless on plain http.
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
# "preload" only makes the site eligible: the list is joined by submitting the domain.
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"


# --- API access ---------------------------------------------------------------------------

# Every /api/v1 endpoint requires a token, "Authorization: Bearer <key>" or "Token <key>"
# (tokens are made with manage.py create_token or in the admin). Writing always needs one.
API_REQUIRE_TOKEN = env_bool("API_REQUIRE_TOKEN", False)
# /api/docs/, /api/redoc/ and /api/schema/ require a login (through the admin's login page).
API_DOCS_REQUIRE_LOGIN = env_bool("API_DOCS_REQUIRE_LOGIN", False)

# The fleet view (/api/v1/fleet/latest): a device whose newest sample is older than this is
# stale (make run refreshes each GPU about every 50 s); one whose newest temperature is at
# least FLEET_HOT_TEMPERATURE_C is hot, one whose newest utilisation is at most
# FLEET_IDLE_UTILISATION_PERCENT is idle. A stale device is neither.
STALE_AFTER_SECONDS = env_int("STALE_AFTER_SECONDS", 180, minimum=1)
FLEET_HOT_TEMPERATURE_C = env_float("FLEET_HOT_TEMPERATURE_C", 80.0)
FLEET_IDLE_UTILISATION_PERCENT = env_float("FLEET_IDLE_UTILISATION_PERCENT", 5.0, minimum=0.0)

# The largest request body a push endpoint accepts, as sent and once decompressed (gzip, or
# the length a snappy block declares): larger is a 413. Django's own cap on bodies read into
# memory (2.5 MB by default, a 400 from request.body) is raised to it, or a remote write
# batch or a CSV between the two would be refused before the push view could answer.
PUSH_MAX_BODY_BYTES = env_int("PUSH_MAX_BODY_BYTES", 32 << 20, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = PUSH_MAX_BODY_BYTES
# Prometheus adds job and instance to every series it scrapes. They name the scrape (a job
# name, the exporter's address, which changes when its pod moves), not the GPU, whose identity
# is its UUID; kept, a GPU's labels would hold whichever address it was first pushed with.
PUSH_KEEP_JOB_INSTANCE_LABELS = env_bool("PUSH_KEEP_JOB_INSTANCE_LABELS", False)
# The Retry-After of a push answered 503 (the collect queue over COLLECT_QUEUE_MAX_DEPTH, or
# the database or broker down). Prometheus retries a 5xx with its own backoff either way.
PUSH_RETRY_AFTER_SECONDS = env_int("PUSH_RETRY_AFTER_SECONDS", 5, minimum=1)


def _throttle_rate(name: str) -> str | None:
    """A DRF rate such as "600/minute"; empty means no limit."""
    rate = env_str(name).strip()
    if not rate:
        return None
    number, _, period = rate.partition("/")
    if not number.isdigit() or not period or period[0] not in "smhd":
        raise ImproperlyConfigured(
            f"{name}={rate!r} is not a rate like 600/minute (period: second, minute, hour, day)"
        )
    return rate


# Counted in the default cache, which is per process (LocMemCache): with N web processes a
# client gets up to N times the rate.
API_THROTTLE_RATES = {
    "anon": _throttle_rate("API_THROTTLE_ANON"),
    "user": _throttle_rate("API_THROTTLE_USER"),
}

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # orjson: the standard encoder was a tenth of a telemetry page's request (api.renderers).
    "DEFAULT_RENDERER_CLASSES": ["api.renderers.FastJSONRenderer"],
    # A token, or the admin's session: the dashboard's pages call the API as the user signed
    # in to the admin (DRF then checks the CSRF token of an unsafe method).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # api.permissions reads API_REQUIRE_TOKEN and the rates at request time.
    "DEFAULT_PERMISSION_CLASSES": ["api.permissions.api_access"],
    "DEFAULT_THROTTLE_CLASSES": ["api.permissions.AnonThrottle", "api.permissions.UserThrottle"],
    "DEFAULT_THROTTLE_RATES": API_THROTTLE_RATES,
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "GPU telemetry API",
    "DESCRIPTION": "NVIDIA DCGM telemetry streamed through Celery into PostgreSQL.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.document_uri_too_long",
    ],
    # Django's str converter, which the API's routes use for GPU ids: any text but a slash.
    "PATH_CONVERTER_OVERRIDES": {"str": {"type": "string", "pattern": "^[^/]+$"}},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
