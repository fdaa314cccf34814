"""What the read model adds to a chunk's commit: the upsert beside the COPY of the same rows.
Figures in docs/measurements.md ("The read model's cost").

    DJANGO_DEBUG=1 .venv/bin/python -m bench.read_model_cost [--chunks 15]

Works in a PostgreSQL database of its own (``telemetry_read_model_bench`` on the server of
``DB_HOST``/``DB_PORT``/``DB_USER``, by default 127.0.0.1:5432 as postgres), migrated with the
project's migrations and dropped at the end. The reference fleet (248 GPUs x 10 metrics)
commits ``--chunks`` chunks of each of two shapes, each in its own transaction as the
collector commits it, timing its three writes back to back: the samples (COPY), the GPU
counters, the read model (``ingest.read_model.record_latest``). A stamped chunk (one
timestep, 2,480 rows: every row is a device's newest) is the read model's worst case; a
chunk of four timesteps in source-time mode (9,920 rows) upserts a quarter of its rows.
Medians, and the upsert's time over the COPY's, which a busy machine blurs less.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Final

from bench.sample_index import configure

DATABASE: Final = "telemetry_read_model_bench"
GPUS: Final = 248
METRICS: Final = 10
START: Final = datetime(2026, 1, 5, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=15, help="chunks of each shape")
    options = parser.parse_args()
    configure(DATABASE)
    import django

    django.setup()
    from django.db import connection

    with connection._nodb_cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{DATABASE}"')
    try:
        run(options.chunks)
    finally:
        connection.close()
        with connection._nodb_cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def run(chunks: int) -> None:
    from django.core.management import call_command
    from django.db import transaction

    from ingest import counters, partitions, read_model
    from ingest.models import Gpu, Metric
    from ingest.writer import SampleBatch, write_samples

    call_command("migrate", verbosity=0)
    gpu_ids = [
        Gpu.objects.create(
            uuid=f"GPU-{at:04d}", gpu_index=at % 8, device=f"nvidia{at % 8}",
            model_name="NVIDIA H100 80GB HBM3", hostname=f"host-{at // 8:03d}",
        ).pk
        for at in range(GPUS)
    ]  # fmt: skip
    metric_ids = [Metric.objects.create(name=f"DCGM_FI_BENCH_{at}").pk for at in range(METRICS)]
    partitions.ensure_partitions({START.date()})

    def chunk(number: int, timesteps: int) -> SampleBatch:
        times = [
            START + timedelta(seconds=10 * (number * timesteps + at)) for at in range(timesteps)
        ]
        rows = [
            (gpu, metric, at)
            for at in range(timesteps)
            for metric in range(METRICS)
            for gpu in range(GPUS)
        ]
        return SampleBatch(
            [(gpu_id, None) for gpu_id in gpu_ids],
            metric_ids,
            times,
            [gpu for gpu, _, _ in rows],
            [metric for _, metric, _ in rows],
            [at for _, _, at in rows],
            [float(number + at) for _, _, at in rows],
        )

    shapes = {"stamped, 2,480 rows": 1, "source times, 9,920 rows": 4}
    number = 0
    for label, timesteps in shapes.items():
        copy, gpu_counters, upsert = [], [], []
        for _ in range(chunks):
            batch = chunk(number, timesteps)
            number += 1
            with transaction.atomic():
                started = time.perf_counter()
                write_samples(batch)
                copied = time.perf_counter()
                counters.add_gpu_samples(batch)
                counted = time.perf_counter()
                read_model.record_latest(batch)
                done = time.perf_counter()
            copy.append(copied - started)
            gpu_counters.append(counted - copied)
            upsert.append(done - counted)
        medians = [statistics.median(times) * 1000 for times in (copy, gpu_counters, upsert)]
        print(
            f"{label}: COPY {medians[0]:.1f} ms, GPU counters {medians[1]:.1f} ms, "
            f"read model {medians[2]:.1f} ms; read model / COPY {medians[2] / medians[0]:.2f}"
        )


if __name__ == "__main__":
    main()
