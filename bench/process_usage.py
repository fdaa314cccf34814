"""Where a benchmark run's CPU and memory go: its processes, sampled in the background.

Besides the benchmark's own processes (streamers, collectors, the importer) the sampler
finds the PostgreSQL backends serving the benchmark's database and the Redis server, so the
report can say what each row costs every role on a machine whose cores all of them share.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import psutil

RSS_SAMPLE_SECONDS: Final = 0.1
SERVICE_SCAN_SECONDS: Final = 2.0


@dataclass
class ProcessUsage:
    """Per role: the largest resident set seen (over every process and run), and the CPU
    seconds its processes used during each run's import (from first to last sample)."""

    peaks: dict[str, int] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    first_cpu: dict[int, float] = field(default_factory=dict)
    last_cpu: dict[int, tuple[str, float]] = field(default_factory=dict)

    def record(self, role: str, pid: int, rss: int, cpu: float) -> None:
        self.peaks[role] = max(self.peaks.get(role, 0), rss)
        self.first_cpu.setdefault(pid, cpu)
        self.last_cpu[pid] = (role, cpu)

    def close_run(self) -> None:
        """Add this run's CPU per role, and forget its processes."""
        for pid, (role, cpu) in self.last_cpu.items():
            used = cpu - self.first_cpu[pid]
            self.cpu_seconds[role] = self.cpu_seconds.get(role, 0.0) + used
        self.first_cpu.clear()
        self.last_cpu.clear()


class UsageSampler(threading.Thread):
    """Samples the RSS and CPU time of a run's processes and services until stopped."""

    def __init__(
        self,
        usage: ProcessUsage,
        processes: Callable[[], list[tuple[str, int]]],
        database_name: str,
    ) -> None:
        super().__init__(daemon=True, name="bench-usage")
        self.usage = usage
        self.processes = processes
        self.database_name = database_name
        self.done = threading.Event()
        self.services: list[tuple[str, int]] = []
        self.services_found_at = -math.inf

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(RSS_SAMPLE_SECONDS)
        self.sample()

    def sample(self) -> None:
        # Finding the services walks every process: every 0.1 s that would take a share of
        # a core from the pipeline being measured. Backends live as long as their worker's
        # connection, so looking again now and then finds them all.
        if time.monotonic() - self.services_found_at >= SERVICE_SCAN_SECONDS:
            self.services = service_processes(self.database_name)
            self.services_found_at = time.monotonic()
        for role, pid in [*self.processes(), *self.services]:
            try:
                process = psutil.Process(pid)
                with process.oneshot():
                    times = process.cpu_times()
                    rss = process.memory_info().rss
            except psutil.Error:
                continue
            self.usage.record(role, pid, rss, times.user + times.system)

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.usage.close_run()


def service_processes(database_name: str) -> list[tuple[str, int]]:
    """The PostgreSQL backends of ``database_name`` and the Redis server."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if command.startswith("postgres: ") and f" {database_name} " in command:
            found.append(("postgres", process.pid))
        elif (process.info["name"] or "").startswith("redis-server"):
            found.append(("redis", process.pid))
    return found
