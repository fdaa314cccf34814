"""``make bench-http`` (``manage.py bench_http``): requests per second of the read API behind
gunicorn, beside what the same page costs without a web framework, in the same run.

It works on ``make bench-api``'s kept database (``telemetry_bench_api``, 10,000,000 samples),
which must be filled first, with a Redis database of its own for the ingest phase:

1. The reference, ``raw_rps``: one plain process per core fetches the telemetry first page
   with psycopg2 (the GPU's id from its uuid, then 101 samples with their metric and
   workload, ordered by time, as the API asks for them) and encodes it with ``json`` as the
   API's body, for ``seconds``; their pages per second, summed.
2. gunicorn (``bench.web_server``: the web role's configuration, production settings, one
   worker per core unless ``--workers`` says otherwise), and ``wrk`` with ``connections``
   (64) connections for ``seconds`` (30) on each hot endpoint, rotating over GPUs (telemetry
   first page, latest, gpus, stats, an hour of 1-minute aggregates), then on all of them
   mixed: requests per second, p50, p99, socket errors, non-2xx answers.
3. Paced ingest at ``make run``'s pace (a file source, ``--loop --batch-size 100
   --interval 2``, real beat, streamer and collector processes; the file is generated, 8
   GPUs of their own, long enough that no pass ends during the run) and, once its first
   chunk is committed, ``wrk`` holding 1,000 connections for 60 s on the mix (``--timeout
   30s``; the file-descriptor limit of wrk and gunicorn raised to its hard limit).

The last line is ``bench-http: telemetry_rps=... raw_rps=... ratio=... mix_rps=...
c1000_errors=... c1000_non2xx=... c1000_rps=... c1000_p99_ms=...``; the exit status is
non-zero when the 1,000 connections saw a socket error or an answer other than 2xx. The
paced source's samples stay in the database (``make bench-api`` times only the GPUs it
generated). Figures: README, "Web tier".
"""

from __future__ import annotations

import math
import os
import re
import resource
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Final
from urllib.parse import quote, urlencode

import redis
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError, OutputWrapper
from django.db.models import Sum

from bench import web_server
from bench.dcgm_generator import GeneratorSpec, write_dcgm_csv
from bench.pipeline_throughput import BenchDatabase, bench_environment
from bench.raw_page import PAGE_SIZE, raw_pages_per_second
from bench.sample_database import FLEET
from bench.workers import (
    Worker,
    start_beat,
    start_worker,
    stop_beat_and_workers,
    wait_until_ready,
    worker_logs,
)
from ingest.models import Gpu, IngestedChunk, StreamSource
from telemetry_project.routing import COLLECT_QUEUE, STREAM_QUEUE

DATABASE: Final = BenchDatabase("telemetry_bench_api", "redis://127.0.0.1:6379/15")
# GPUs each endpoint's requests rotate over, so no single row stays in every cache.
ROTATED_GPUS: Final = 32
PACED_SOURCE: Final = "bench-http-paced"
PACED_SEED: Final = 8080
PACED_ROWS_PER_SECOND: Final = 100 / 2  # make run's pace: 100 rows every 2 seconds
INGEST_START_SECONDS: Final = 120.0
WRK_THREADS: Final = 2
# Seconds of load on the mix before the measured runs (each worker's cold start).
WARM_UP_SECONDS: Final = 3
# wrk's request rotation: each request takes the next of the paths given after ``--``.
ROTATE_SCRIPT: Final = """
local paths = {}
local n = 0
function init(args)
  for _, path in ipairs(args) do table.insert(paths, path) end
end
function request()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1])
end
"""


@dataclass(frozen=True)
class HttpOptions:
    """What one run measures; the defaults are ``make bench-http``'s."""

    seconds: int = 30  # of wrk per endpoint, and of the reference
    connections: int = 64
    crowd_seconds: int = 60  # of the 1,000 connections under ingest
    crowd_connections: int = 1000
    workers: int = 0  # gunicorn workers; 0: one per core
    worker_options: tuple[str, ...] = ()  # added to gunicorn's command line

    def check(self) -> None:
        for name in ("seconds", "connections", "crowd_seconds", "crowd_connections"):
            if getattr(self, name) < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")


@dataclass(frozen=True)
class Load:
    """What wrk measured over one run."""

    label: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    non_2xx: int

    def line(self) -> str:
        return (
            f"  {self.label:<10} {self.requests_per_second:9.0f} req/s  p50 {self.p50_ms:7.2f} ms"
            f"  p99 {self.p99_ms:8.2f} ms  socket errors {self.socket_errors}"
            f"  non-2xx {self.non_2xx}"
        )


def parse_wrk(label: str, output: str) -> Load:
    """wrk's summary (run with ``--latency``) as a :class:`Load`."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if rate is None:
        raise CommandError(f"{label}: wrk printed no rate:\n{output}")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Load(
        label,
        float(rate.group(1)),
        _percentile_ms(output, "50", label),
        _percentile_ms(output, "99", label),
        sum(int(count) for count in errors.groups()) if errors else 0,
        int(non_2xx.group(1)) if non_2xx else 0,
    )


def _percentile_ms(output: str, percentile: str, label: str) -> float:
    found = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if found is None:
        raise CommandError(f"{label}: wrk printed no {percentile}th percentile:\n{output}")
    return float(found.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]


def raise_file_limit() -> None:
    """In a child before it runs: as many open files as the hard limit allows, for a
    thousand sockets (many systems start processes with 1,024)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class HttpBenchmark:
    """The reference, the endpoints at ``connections``, the crowd under ingest; a report."""

    def __init__(
        self, options: HttpOptions, stdout: OutputWrapper, database: BenchDatabase = DATABASE
    ) -> None:
        options.check()
        self.options = options
        self.stdout = stdout
        self.database = database

    def say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()

    def run(self) -> None:
        options = self.options
        # The collector of the ingest phase writes as this checkout's migrations say.
        call_command("migrate", interactive=False, verbosity=0)
        gpus = self._generated_gpus()
        paths = endpoint_paths(gpus)
        cores = os.cpu_count() or 1
        env = bench_environment(self.database)
        env["DJANGO_ALLOWED_HOSTS"] = "127.0.0.1,localhost"
        self.say(
            f"{len(gpus)} GPUs; {cores} cores; wrk -t{WRK_THREADS} -c{options.connections} "
            f"-d{options.seconds}s per endpoint, rotating over {ROTATED_GPUS} GPUs"
        )
        uuids = [uuid for uuid, _, _ in gpus[:ROTATED_GPUS]]
        raw_rps = raw_pages_per_second(self.database.dsn, uuids, cores, options.seconds)
        self.say(f"  {'raw':<10} {raw_rps:9.0f} pages/s  (psycopg2 + json, {cores} processes)")
        Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bench-http-", dir=settings.VAR_DIR) as folder:
            work = Path(folder)
            script = work / "rotate.lua"
            script.write_text(ROTATE_SCRIPT)
            web = web_server.start(
                env,
                work / "web.log",
                workers=options.workers or cores,
                options=options.worker_options,
                preexec_fn=raise_file_limit,
            )
            try:
                # Unreported: each worker's first requests load the URLconf, the views and the
                # serializers and compile the hot queries, which would count against the first
                # endpoint measured.
                self._wrk("warm-up", web.url, script, mixed(paths), options.connections,
                          WARM_UP_SECONDS)  # fmt: skip
                loads = {
                    label: self._wrk(label, web.url, script, endpoint, options.connections,
                                     options.seconds)
                    for label, endpoint in [*paths.items(), ("mix", mixed(paths))]
                }  # fmt: skip
                crowd = self._under_ingest(web.url, script, mixed(paths), env, work)
            except CommandError as error:
                log = (work / "web.log").read_text(errors="replace")[-3000:]
                raise CommandError(f"{error}\n--- web.log\n{log}") from None
            finally:
                web_server.stop(web)
        telemetry_rps = loads["telemetry"].requests_per_second
        self.say(
            f"bench-http: telemetry_rps={telemetry_rps:.0f} raw_rps={raw_rps:.0f} "
            f"ratio={telemetry_rps / raw_rps:.3f} mix_rps={loads['mix'].requests_per_second:.0f} "
            f"c1000_errors={crowd.socket_errors} c1000_non2xx={crowd.non_2xx} "
            f"c1000_rps={crowd.requests_per_second:.0f} c1000_p99_ms={crowd.p99_ms:.1f}"
        )
        if crowd.socket_errors or crowd.non_2xx:
            raise SystemExit(1)

    def _generated_gpus(self) -> list[tuple[str, datetime, datetime]]:
        """(uuid, first, last) of the GPUs ``make bench-api`` generated, in a fixed order."""
        gpus = [
            (uuid, first, last)
            for uuid, first, last in Gpu.objects.filter(
                sample_count__gt=0, gpu_instance_id__isnull=True, first_seen__lte=FLEET.start
            )
            .order_by("hostname", "gpu_index")
            .values_list("uuid", "first_seen", "last_seen")
            if first is not None and last is not None
        ]
        if not gpus:
            raise CommandError(f"{self.database.name} holds no samples: run make bench-api first")
        return gpus

    def _wrk(
        self,
        label: str,
        url: str,
        script: Path,
        paths: Sequence[str],
        connections: int,
        seconds: int,
        timeout: str = "10s",
    ) -> Load:
        command = [
            "wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds}s", "--latency",
            "--timeout", timeout, "-s", str(script), url, "--", *paths,
        ]  # fmt: skip
        try:
            finished = subprocess.run(  # noqa: S603  (wrk, with arguments made here)
                command,
                capture_output=True,
                text=True,
                timeout=seconds + 120,
                check=False,
                preexec_fn=raise_file_limit,
            )
        except FileNotFoundError:
            raise CommandError("wrk is missing: make load-tools") from None
        if finished.returncode:
            raise CommandError(f"{label}: wrk failed: {finished.stderr}")
        load = parse_wrk(label, finished.stdout)
        self.say(load.line())
        return load

    def _under_ingest(
        self, url: str, script: Path, paths: Sequence[str], env: dict[str, str], work: Path
    ) -> Load:
        """The mix at ``crowd_connections`` while beat, a streamer and a collector stream the
        generated file at ``make run``'s pace; the source is removed afterwards."""
        options = self.options
        broker = redis.Redis.from_url(self.database.redis_url)
        broker.flushdb()
        margin = INGEST_START_SECONDS + 60
        source = _paced_source(work / "paced.csv", options.crowd_seconds + margin)
        processes: list[Worker] = []
        beat: subprocess.Popen[bytes] | None = None
        try:
            processes = [
                start_worker("streamer", STREAM_QUEUE, 0, 0, env, work),
                start_worker("collector", COLLECT_QUEUE, 0, 0, env, work),
            ]
            wait_until_ready(processes)
            committed_before = _committed_rows()
            beat = start_beat(env, work)
            # The crowd starts once ingest runs: its first chunk is committed.
            deadline = time.monotonic() + INGEST_START_SECONDS
            while _committed_rows() == committed_before:
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"the paced source committed nothing:{worker_logs(processes)}"
                    )
                time.sleep(0.5)
            committed_before = _committed_rows()
            self.say(
                f"paced ingest (100 rows every 2 s) and wrk "
                f"-c{options.crowd_connections} -d{options.crowd_seconds}s --timeout 30s"
            )
            crowd = self._wrk(
                f"c{options.crowd_connections}", url, script, paths,
                options.crowd_connections, options.crowd_seconds, timeout="30s",
            )  # fmt: skip
            ingested = _committed_rows() - committed_before
            self.say(f"  ingest committed {ingested:,} rows meanwhile")
        finally:
            stop_beat_and_workers(beat, processes)
            source.delete()  # and its beat entry (ingest.signals)
            broker.flushdb()
        return crowd


def endpoint_paths(gpus: Sequence[tuple[str, datetime, datetime]]) -> dict[str, list[str]]:
    """The paths wrk rotates over for each hot endpoint."""
    rotated = gpus[:: max(1, len(gpus) // ROTATED_GPUS)][:ROTATED_GPUS]
    devices = [f"/api/v1/gpus/{quote(uuid)}" for uuid, _, _ in rotated]
    return {
        "telemetry": [f"{device}/telemetry?limit={PAGE_SIZE}" for device in devices],
        "latest": [f"{device}/latest" for device in devices],
        "gpus": ["/api/v1/gpus"],
        "stats": ["/api/v1/stats"],
        "aggregate": [
            f"{device}/telemetry/aggregate?{_hour_of(first, last, index)}"
            for index, (device, (_, first, last)) in enumerate(zip(devices, rotated, strict=True))
        ],
    }


def _hour_of(first: datetime, last: datetime, index: int) -> str:
    """An hour in 1-minute buckets, spread over the GPU's history by ``index``."""
    span = max(timedelta(0), last - first - timedelta(hours=1))
    start = (first + span * ((index * 7 % ROTATED_GPUS) / ROTATED_GPUS)).replace(
        second=0, microsecond=0
    )
    end = start + timedelta(hours=1)
    return urlencode(
        {"start_time": f"{start:%Y-%m-%dT%H:%M:%SZ}", "end_time": f"{end:%Y-%m-%dT%H:%M:%SZ}",
         "bucket": "1m"}
    )  # fmt: skip


def mixed(paths: dict[str, list[str]]) -> list[str]:
    """Every endpoint in turn, each with its own next GPU."""
    longest = max(len(endpoint) for endpoint in paths.values())
    return [
        endpoint[turn % len(endpoint)] for turn in range(longest) for endpoint in paths.values()
    ]


# --- the ingest around the crowd ------------------------------------------------------------


def _paced_source(path: Path, seconds: float) -> StreamSource:
    """A source streaming ``make run``'s pace from a generated file long enough for
    ``seconds`` of it, so no pass ends during the run; a previous run's source goes first.

    Its GPUs (a seed of their own) are not the measured fleet's, and their samples are of
    today, so ``make bench-api`` leaves them out."""
    rows = math.ceil(seconds * PACED_ROWS_PER_SECOND)
    with path.open("wb") as out:
        write_dcgm_csv(out, GeneratorSpec(hosts=1, rows=rows, seed=PACED_SEED))
    StreamSource.objects.filter(name=PACED_SOURCE).delete()
    call_command(
        "add_source", PACED_SOURCE, str(path), "--loop", "--batch-size", "100",
        "--interval", "2", stdout=StringIO(),
    )  # fmt: skip
    return StreamSource.objects.get(name=PACED_SOURCE)


def _committed_rows() -> int:
    committed = IngestedChunk.objects.aggregate(rows=Sum("rows_committed"))["rows"]
    return int(committed or 0)
