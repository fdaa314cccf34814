"""An export imported again is the same samples: times to the microsecond, values bit for bit.

The reference export and a file of a GPU with a MIG instance (times with microseconds and
offsets, values with every digit a float holds, workloads) are committed through the
collector; the fleet export of their whole range is written to a file; the tables are
emptied; ``import_csv`` (source timestamps) brings the file back through a real collector.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from ingest.dcgm import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from ingest.models import Sample
from tests.support.api_data import load_csv, truncate_ingest_tables
from tests.support.pipeline import finish_import, start_import
from tests.support.reference import REFERENCE_CSV, REPO
from tests.support.workers import WorkerFactory

pytestmark = pytest.mark.integration

MIG_UUID = "GPU-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
MIG_LABELS = 'DCGM_FI_DRIVER_VERSION="550.54.15",Hostname="mig-host",UUID="GPU-0a1b2c3d"'
# Floats whose shortest text has many digits, extremes, and a negative zero.
AWKWARD_VALUES = [
    0.1 + 0.2, 1 / 3, math.pi * 1e6, 2.0**-1074, 1.7976931348623157e308, -0.0,
    123456789.12345679, 5e-324 * 3, 299792458.000001, 1e22,
]  # fmt: skip
TIMES = [
    "2025-07-18T20:42:34.123456Z",
    "2025-07-18T22:42:35.000001+02:00",
    "2025-07-18T20:42:36.5-00:30",
    "2025-07-18T20:42:37Z",
]


def write_mig_file(path: Path) -> None:
    """A whole GPU and its MIG instance 13, each with every awkward value at every time."""
    columns = [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS]
    devices: list[dict[str, str]] = [
        {"gpu_instance_id": "", "gpu_instance_profile": "", "pod": ""},
        {"gpu_instance_id": "13", "gpu_instance_profile": "1g.10gb", "pod": "trainer-0"},
    ]
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, columns, quoting=csv.QUOTE_ALL)
        writer.writeheader()
        for device in devices:
            for time in TIMES:
                for number, value in enumerate(AWKWARD_VALUES):
                    workload = device["pod"]
                    writer.writerow(
                        {
                            "timestamp": time,
                            "metric_name": f"DCGM_FI_DEV_FIELD_{number}",
                            "gpu_id": "3",
                            "device": "nvidia3",
                            "uuid": MIG_UUID,
                            "modelName": "NVIDIA A100-SXM4-40GB",
                            "Hostname": "mig-host",
                            "container": "main" if workload else "",
                            "pod": workload,
                            "namespace": "research" if workload else "",
                            "value": repr(value),
                            "labels_raw": MIG_LABELS,
                            "gpu_instance_id": device["gpu_instance_id"],
                            "gpu_instance_profile": device["gpu_instance_profile"],
                        }
                    )


def stored_samples() -> Counter[tuple[Any, ...]]:
    """Every sample with its device, metric and workload by value, its value by its bits."""
    rows = Sample.objects.values_list(
        "gpu__uuid", "gpu__gpu_instance_id", "gpu__gpu_instance_profile", "gpu__gpu_index",
        "gpu__device", "gpu__model_name", "gpu__hostname", "gpu__labels", "metric__name",
        "timestamp", "value", "workload__namespace", "workload__pod", "workload__container",
    )  # fmt: skip
    return Counter(
        (*row[:7], tuple(sorted(row[7].items())), row[8], row[9], row[10].hex(), *row[11:])
        for row in rows
    )


def test_an_exported_range_imports_back_into_the_same_samples(
    workers: WorkerFactory, pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    mig_file = tmp_path / "mig.csv"
    write_mig_file(mig_file)
    loaded = load_csv(REFERENCE_CSV, source_id=1).rows + load_csv(mig_file, source_id=2).rows
    before = stored_samples()
    assert before.total() == loaded == 2470 + 2 * len(TIMES) * len(AWKWARD_VALUES)

    response = Client().get(
        "/api/v1/telemetry.csv",
        {"start_time": "2025-07-18T00:00:00Z", "end_time": "2025-07-19T00:00:00Z"},
    )
    assert response.status_code == 200
    export = tmp_path / "export.csv"
    export.write_bytes(response.getvalue())
    assert export.read_bytes().startswith(b'"timestamp","metric_name","gpu_id"')
    truncate_ingest_tables()
    assert not Sample.objects.exists()

    workers.collector()
    # Files may be streamed by workers from data/ only: the command streams this one itself.
    env = {**pipeline_env, "STREAM_SOURCE_DIRS": str(REPO / "data")}
    log = tmp_path / "import.log"
    output = finish_import(start_import(export, env, log, "--timestamp-mode", "source"), log)

    assert output.strip().splitlines()[-1].startswith(f"committed={loaded} rejected=0 ")
    assert stored_samples() == before
