"""The environment the test suite runs in, set before Django reads its settings.

Loaded as a pytest plugin (``-p tests.support.environment`` in pyproject.toml), which pytest imports
before pytest-django configures Django. Every value is a default: CI or a developer may point
the suite elsewhere with the same variables. The Redis database number keeps tests away
from a pipeline a developer runs on database 0.
"""

import os
import tempfile

from tests.support.reference import REPO

TEST_ENVIRONMENT = {
    "DJANGO_SECRET_KEY": "test-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "DJANGO_ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/telemetry",
    "REDIS_URL": "redis://127.0.0.1:6379/15",
    "LOG_LEVEL": "WARNING",
    # Tests stream files they write under pytest's tmp_path, in the system temp directory.
    "STREAM_SOURCE_DIRS": f"{REPO / 'data'},{tempfile.gettempdir()}",
    # The suite imports the 2025 reference export with its own timestamps; the tests of
    # retention set a window themselves.
    "RETENTION_DAYS": "0",
    # Tests serve http(s) sources from local servers, which the fetch policy refuses by default.
    "SOURCE_URL_ALLOW": "127.0.0.0/8",
    # Empty: no development settings file (a developer's var/dev.env) is read by the suite
    # or by the processes it starts.
    "TELEMETRY_ENV_FILE": "",
}

for name, value in TEST_ENVIRONMENT.items():
    os.environ.setdefault(name, value)
