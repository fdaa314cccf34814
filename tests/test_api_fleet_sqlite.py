"""GET /api/v1/fleet/latest on SQLite (the embedded mode) answers exactly as on PostgreSQL:
the device query is written per database (``api.fleet_query``), so both are checked on the
same reference export, each loaded through the collector."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import override_settings

from tests.support.api_data import load_csv
from tests.support.embedded import run_on_embedded_database
from tests.support.reference import REFERENCE_CSV

# The whole fleet, several metrics (one never sampled), and each filter.
QUERIES = [
    "",
    "metric=DCGM_FI_DEV_GPU_UTIL&metric=DCGM_FI_DEV_MEM_CLOCK&metric=DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "hostname=mtv5-dgx1-hgpu-001",
    "model=NVIDIA+H100+80GB+HBM3",
    "namespace=none-such",
]


def fleet_bodies(client: Client) -> list[Any]:
    """Each query's status and body, without the time it was generated at."""
    bodies = []
    for query in QUERIES:
        response = client.get(f"/api/v1/fleet/latest?{query}")
        body = response.json()
        body.pop("generated_at", None)
        bodies.append([response.status_code, body])
    return bodies


def fleet_on_this_database() -> dict[str, Any]:
    """The scenario on the database of this process (run in the child, on SQLite)."""
    call_command("migrate", verbosity=0)
    load_csv(REFERENCE_CSV)
    with override_settings(ALLOWED_HOSTS=["testserver"]):
        return {"vendor": connection.vendor, "bodies": fleet_bodies(Client())}


@pytest.mark.django_db
@pytest.mark.usefixtures("reference_data")
def test_the_fleet_on_sqlite_is_the_fleet_on_postgresql(client: Client, tmp_path: Path) -> None:
    script = (
        "import json\n"
        "from tests.test_api_fleet_sqlite import fleet_on_this_database\n"
        "print(json.dumps(fleet_on_this_database()))\n"
    )
    report = json.loads(run_on_embedded_database(script, tmp_path))
    on_postgresql = fleet_bodies(client)

    assert report["vendor"] == "sqlite"
    assert [status for status, _ in on_postgresql] == [200] * len(QUERIES)
    assert len(on_postgresql[0][1]["devices"]) == 247
    assert report["bodies"] == on_postgresql
