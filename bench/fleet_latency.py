"""``make bench-fleet`` (``manage.py bench_fleet``): p50/p99 of GET /api/v1/fleet/latest over
a fleet of 2,000 GPUs.

The database is its own (``telemetry_bench_fleet`` by default, ``bench.sample_database``),
filled through the real write path, so the read model holds what the collector upserted: 250
hosts x 8 GPUs x 10 metrics, a few timesteps of them (``--rows``, 60,000 by default, three
timesteps). The answer is the whole fleet every time, so it is timed three ways: the default
four metrics, all ten, and one host (``hostname``). The budget is a p99 of 50 ms; as with
``bench_api``, a run over it is reported, not failed, since timings on a shared machine vary.
The figures measured so far are in docs/measurements.md ("The fleet view").
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Final
from urllib.parse import urlencode

from django.conf import settings
from django.test.utils import override_settings

from bench.api_latency import print_table
from bench.dcgm_generator import METRIC_NAMES
from bench.measurement import Measurement
from bench.request_timing import TEST_HOST, WsgiCaller
from bench.sample_database import FLEET, SampleDatabase
from ingest.models import Gpu, LatestValue

FLEET_OF_2000: Final = dataclasses.replace(FLEET, hosts=250, gpus_per_host=8, metrics=10)
FLEET_BUDGET_MS: Final = 50.0
REQUEST_SEED: Final = 7
FLEET_URL: Final = "/api/v1/fleet/latest"


def measure(database: SampleDatabase) -> tuple[str, list[str]]:
    """Time the fleet view three ways; return the summary line."""
    rows = database.prepare()
    devices = Gpu.objects.filter(sample_count__gt=0).count()
    hosts = sorted(set(Gpu.objects.values_list("hostname", flat=True)))
    choose = random.Random(REQUEST_SEED)  # noqa: S311  (reproducible requests, no secret)
    every_metric = urlencode([("metric", name) for name in METRIC_NAMES[: FLEET_OF_2000.metrics]])
    views: list[tuple[str, Callable[[], str]]] = [
        ("default", lambda: FLEET_URL),
        ("all_metrics", lambda: f"{FLEET_URL}?{every_metric}"),
        ("one_host", lambda: f"{FLEET_URL}?{urlencode({'hostname': choose.choice(hosts)})}"),
    ]
    database.say(
        f"\n=== {database.options['requests']} requests per view after a warm-up: "
        f"{devices:,} devices, {LatestValue.objects.count():,} read-model rows, {rows:,} samples"
    )
    # The requests' host is added to the settings' own; DEBUG off, as in production.
    with override_settings(ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, TEST_HOST], DEBUG=False):
        get = WsgiCaller().get
        timings = [database.time(get, label, url, FLEET_BUDGET_MS) for label, url in views]
    print_table(database, timings)
    summary = "bench-fleet: " + " ".join(
        f"{timing.label}_p50_ms={timing.p50_ms:.3f} {timing.label}_p99_ms={timing.p99_ms:.3f}"
        for timing in timings
    )
    return f"{summary} devices={devices}", []


MEASUREMENT: Final = Measurement(
    rows=FLEET_OF_2000.rows_per_timestep * 3,
    database="telemetry_bench_fleet",
    requests=500,
    measure=measure,
    fleet=FLEET_OF_2000,
)
