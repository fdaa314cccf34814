"""CSV exports on SQLite (the embedded mode): the same file as on PostgreSQL, from a plain cursor.

The scenario runs in a child process with the embedded settings (settings, and so the
database, are read once per process): the reference export is committed through the
collector, then both exports are read through the test client and reported as JSON.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import override_settings

from tests.support.api_data import load_csv
from tests.support.embedded import run_on_embedded_database
from tests.support.reference import REFERENCE_CSV, REFERENCE_UUID

RANGE = {"start_time": "2025-07-18T00:00:00Z", "end_time": "2025-07-19T00:00:00Z"}


def export_on_this_database() -> dict[str, Any]:
    """The scenario, on the database of this process (run in the child, on SQLite)."""
    call_command("migrate", verbosity=0)
    loaded = load_csv(REFERENCE_CSV)
    with override_settings(ALLOWED_HOSTS=["testserver"]):
        client = Client()
        fleet = client.get("/api/v1/telemetry.csv", RANGE)
        device = client.get(f"/api/v1/gpus/{REFERENCE_UUID}/telemetry.csv")
        return {
            "vendor": connection.vendor,
            "loaded": loaded.rows,
            "statuses": [fleet.status_code, device.status_code],
            "fleet": fleet.getvalue().decode(),
            "device": device.getvalue().decode(),
        }


def samples_in(text: str) -> set[tuple[datetime, str, str, float]]:
    return {
        (
            datetime.fromisoformat(row["timestamp"]),
            row["metric_name"],
            row["uuid"],
            float(row["value"]),
        )
        for row in csv.DictReader(io.StringIO(text))
    }


def test_both_exports_on_sqlite_hold_the_reference_samples(tmp_path: Path) -> None:
    script = (
        "import json\n"
        "from tests.test_export_sqlite import export_on_this_database\n"
        "print(json.dumps(export_on_this_database()))\n"
    )
    report = json.loads(run_on_embedded_database(script, tmp_path))

    reference = samples_in(REFERENCE_CSV.read_text())
    assert (report["vendor"], report["loaded"], report["statuses"]) == ("sqlite", 2470, [200, 200])
    assert samples_in(report["fleet"]) == reference
    assert samples_in(report["device"]) == {row for row in reference if row[2] == REFERENCE_UUID}
