"""Synthetic DCGM exporter CSV, laid out exactly like the reference export.

Load tests and ingest benchmarks need files of any size that the real parser reads
unchanged, so the layout (header, quoting, ``labels_raw`` keys, timestamp format) copies
the reference export and only the fleet and the numbers are invented. Output is
deterministic for a spec, so a benchmark or a failing test can be replayed byte for byte.

Speed comes from doing the per-row work in C: every (metric, GPU) row is rendered once
into a ``%``-template in which only the timestamp and the value vary, and each block of
rows is a single ``join`` and ``%`` away from bytes. Memory is bounded by the fleet size,
never by the number of rows, because rows are written block by block as they are made.
The fleet, its simulated values and the row templates stay in this one module, long as it
is, because each is shaped by the others: a template fixes where the simulation's values go.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import BinaryIO, Final

CSV_HEADER: Final = (
    "timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,"
    "container,pod,namespace,value,labels_raw"
)

# The reference export's ten metrics in the order it lists them, then further real DCGM
# fields, so that a spec asking for N metrics always gets the N most familiar ones.
METRIC_NAMES: Final = (
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_MEM_COPY_UTIL",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_DEC_UTIL",
    "DCGM_FI_DEV_ENC_UTIL",
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_DEV_MEM_CLOCK",
    "DCGM_FI_DEV_MEMORY_TEMP",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "DCGM_FI_DEV_FB_RESERVED",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    "DCGM_FI_PROF_DRAM_ACTIVE",
    "DCGM_FI_PROF_PCIE_TX_BYTES",
    "DCGM_FI_PROF_PCIE_RX_BYTES",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_XID_ERRORS",
)

DEFAULT_START: Final = datetime(2025, 7, 18, 20, 42, 34, tzinfo=UTC)

_TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
_HOSTNAME_PREFIX: Final = "mtv5-dgx1-hgpu-"
_DRIVER_VERSION: Final = "535.129.03"
_EXPORTER_PORT: Final = 9400
_EXPORTER_JOB: Final = "dgx_dcgm_exporter"

# About 1.3 MB of text per write: large enough that the per-write overhead vanishes, small
# enough that memory stays flat however large one timestep of a big fleet is.
_ROWS_PER_WRITE: Final = 4096

# Chance per timestep that a GPU's job ends or a new one starts; at a 10 s interval this
# gives phases of a few minutes, so a short file still shows both busy and idle GPUs.
_PHASE_SWITCH_PROBABILITY: Final = 0.02
# Fraction of the gap to the target temperature closed per timestep: GPUs heat and cool
# gradually instead of jumping with the load.
_THERMAL_RESPONSE: Final = 0.35
_LOAD_HEATING_C: Final = 45.0
_MILLIJOULES_PER_WATT_SECOND: Final = 1000

# Pod names use the Kubernetes random-suffix alphabet (no vowels, no confusable digits).
_POD_SUFFIX_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"
# (namespace, application, container): what a workload-carrying GPU is running.
_WORKLOADS: Final = (
    ("ml-training", "llm-pretrain", "megatron"),
    ("ml-training", "llm-finetune", "trainer"),
    ("research", "vision-train", "pytorch"),
    ("inference", "triton-serve", "triton"),
    ("batch-jobs", "embedding-batch", "worker"),
)


class InvalidSpecError(ValueError):
    """A spec field is out of range; ``field_name`` lets a CLI name its own flag."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name} {problem}")
        self.field_name = field_name
        self.problem = problem


@dataclass(frozen=True)
class GeneratorSpec:
    """What to generate: the fleet, how many metrics, the time span, and the seed.

    ``timesteps`` may be left out when ``rows`` is given: the file then runs exactly
    as many timesteps as needed to hold ``rows`` rows; with neither, one timestep is
    written, about the size of the reference export.
    """

    hosts: int = 31
    gpus_per_host: int = 8
    metrics: int = 10
    timesteps: int | None = None
    interval_seconds: int = 10
    start: datetime = DEFAULT_START
    rows: int | None = None
    seed: int = 1
    workload_fraction: float = 0.0

    def __post_init__(self) -> None:
        for name in ("hosts", "gpus_per_host", "interval_seconds"):
            _require_at_least_one(name, getattr(self, name))
        for name in ("timesteps", "rows"):
            value = getattr(self, name)
            if value is not None:
                _require_at_least_one(name, value)
        if not 1 <= self.metrics <= len(METRIC_NAMES):
            raise InvalidSpecError(
                "metrics", f"must be between 1 and {len(METRIC_NAMES)}, got {self.metrics}"
            )
        if self.start.utcoffset() is None:
            raise InvalidSpecError("start", "must carry a time zone, e.g. 2025-07-18T20:42:34Z")
        if not 0.0 <= self.workload_fraction <= 1.0:
            raise InvalidSpecError(
                "workload_fraction", f"must be between 0 and 1, got {self.workload_fraction}"
            )

    @property
    def gpu_count(self) -> int:
        return self.hosts * self.gpus_per_host

    @property
    def rows_per_timestep(self) -> int:
        return self.gpu_count * self.metrics

    @property
    def timestep_count(self) -> int:
        if self.timesteps is not None:
            return self.timesteps
        if self.rows is not None:
            return math.ceil(self.rows / self.rows_per_timestep)
        return 1

    @property
    def row_count(self) -> int:
        """Data rows the file will hold: every timestep in full unless ``rows`` cuts it."""
        full = self.rows_per_timestep * self.timestep_count
        return full if self.rows is None else min(self.rows, full)


def _require_at_least_one(name: str, value: int) -> None:
    if value < 1:
        raise InvalidSpecError(name, f"must be at least 1, got {value}")


def write_dcgm_csv(out: BinaryIO, spec: GeneratorSpec) -> int:
    """Write the header and ``spec.row_count`` data rows to ``out``; return the row count.

    Within a timestep rows go metric by metric, host by host, GPU by GPU, as in the
    reference export, so a ``rows``-capped file is a prefix of the uncapped one.
    """
    fleet = _build_fleet(spec)
    metric_names = METRIC_NAMES[: spec.metrics]
    row_templates = [_row_template(metric, gpu) for metric in metric_names for gpu in fleet]
    simulation = _FleetSimulation(fleet, spec.seed, spec.interval_seconds)
    first_time = spec.start.astimezone(UTC)
    interval = timedelta(seconds=spec.interval_seconds)

    out.write(f"{CSV_HEADER}\n".encode("ascii"))
    rows_written = 0
    for step in range(spec.timestep_count):
        rows_this_step = min(len(row_templates), spec.row_count - rows_written)
        if rows_this_step <= 0:
            break
        timestamp = (first_time + step * interval).strftime(_TIMESTAMP_FORMAT)
        simulation.advance()
        values: list[int | float] = []
        for metric in metric_names:
            values.extend(simulation.readings(metric))
        for block_start in range(0, rows_this_step, _ROWS_PER_WRITE):
            block_stop = min(block_start + _ROWS_PER_WRITE, rows_this_step)
            out.write(
                _render_block(
                    row_templates[block_start:block_stop],
                    timestamp,
                    values[block_start:block_stop],
                )
            )
        rows_written += rows_this_step
    return rows_written


def _render_block(templates: list[str], timestamp: str, values: list[int | float]) -> bytes:
    """Fill consecutive row templates, each taking (timestamp, value), in one C-level pass."""
    arguments: list[object] = [timestamp] * (2 * len(values))
    arguments[1::2] = values
    return ("".join(templates) % tuple(arguments)).encode("ascii")


@dataclass(frozen=True, slots=True)
class _GpuModel:
    """Figures that shape one model's readings.

    They are close to what DCGM reports for these parts (the H100 frame-buffer split
    matches the reference export: used + free = 81007 MiB) but are chosen for
    plausibility, not copied from a datasheet.
    """

    name: str
    fb_usable_mib: int
    fb_reserved_mib: int
    sm_clock_max_mhz: int
    sm_clock_idle_mhz: int
    mem_clock_mhz: int
    idle_power_w: float
    max_power_w: float


_GPU_MODELS: Final = (
    _GpuModel("NVIDIA H100 80GB HBM3", 81007, 552, 1980, 345, 2619, 70.0, 700.0),
    _GpuModel("NVIDIA A100-SXM4-80GB", 81251, 669, 1410, 210, 1593, 60.0, 400.0),
    _GpuModel("NVIDIA A100-SXM4-40GB", 40536, 424, 1410, 210, 1215, 55.0, 400.0),
    _GpuModel("NVIDIA L40S", 45499, 569, 2520, 210, 9001, 35.0, 350.0),
)


@dataclass(frozen=True, slots=True)
class _Gpu:
    """One GPU's identity: everything in its rows except the timestamp and the value."""

    hostname: str
    index: int
    uuid: str
    model: _GpuModel
    namespace: str
    pod: str
    container: str


def _digest(seed: int, purpose: str, *parts: int) -> bytes:
    """Stable bytes for one attribute of one host or GPU.

    Identities are hashed from (seed, position) rather than drawn from a shared random
    stream, so a GPU keeps its uuid, model and pod whatever the fleet size, metric count
    or start time: files generated for consecutive periods describe the same GPUs.
    """
    key = "/".join([str(seed), purpose, *map(str, parts)])
    return hashlib.blake2b(key.encode("ascii"), digest_size=16).digest()


def _build_fleet(spec: GeneratorSpec) -> list[_Gpu]:
    """List the fleet host by host; hosts are homogeneous, as DGX nodes are."""
    slots = [(host, gpu) for host in range(spec.hosts) for gpu in range(spec.gpus_per_host)]
    workload_count = math.floor(spec.workload_fraction * len(slots) + 0.5)
    with_workload = set(
        sorted(slots, key=lambda slot: _digest(spec.seed, "workload", *slot))[:workload_count]
    )
    host_models = [
        _GPU_MODELS[_digest(spec.seed, "model", host)[0] % len(_GPU_MODELS)]
        for host in range(spec.hosts)
    ]
    fleet = []
    for host, gpu in slots:
        namespace, pod, container = (
            _workload(spec.seed, host, gpu) if (host, gpu) in with_workload else ("", "", "")
        )
        fleet.append(
            _Gpu(
                hostname=f"{_HOSTNAME_PREFIX}{host + 1:03d}",
                index=gpu,
                uuid=_gpu_uuid(_digest(spec.seed, "uuid", host, gpu)),
                model=host_models[host],
                namespace=namespace,
                pod=pod,
                container=container,
            )
        )
    return fleet


def _gpu_uuid(digest: bytes) -> str:
    hex_digits = digest.hex()
    groups = (hex_digits[:8], hex_digits[8:12], hex_digits[12:16], hex_digits[16:20])
    return f"GPU-{'-'.join(groups)}-{hex_digits[20:32]}"


def _workload(seed: int, host: int, gpu: int) -> tuple[str, str, str]:
    """(namespace, pod, container) shaped like a Deployment's pod, e.g. ``triton-serve-...``."""
    digest = _digest(seed, "pod", host, gpu)
    namespace, application, container = _WORKLOADS[digest[0] % len(_WORKLOADS)]
    suffix = "".join(_POD_SUFFIX_ALPHABET[byte % len(_POD_SUFFIX_ALPHABET)] for byte in digest[1:])
    return namespace, f"{application}-{suffix[:10]}-{suffix[10:15]}", container


def _csv_quote(field: str) -> str:
    return '"' + field.replace('"', '""') + '"'


def _row_template(metric: str, gpu: _Gpu) -> str:
    """Render one (metric, GPU) row with ``%s`` slots for the timestamp and the value."""
    gpu_id = str(gpu.index)
    device = f"nvidia{gpu.index}"
    labels = ",".join(
        f'{key}="{value}"'
        for key, value in (
            ("DCGM_FI_DRIVER_VERSION", _DRIVER_VERSION),
            ("Hostname", gpu.hostname),
            ("UUID", gpu.uuid),
            ("__name__", metric),
            ("device", device),
            ("gpu", gpu_id),
            ("instance", f"{gpu.hostname}:{_EXPORTER_PORT}"),
            ("job", _EXPORTER_JOB),
            ("modelName", gpu.model.name),
        )
    )
    identity = ",".join(
        _csv_quote(field)
        for field in (
            metric,
            gpu_id,
            device,
            gpu.uuid,
            gpu.model.name,
            gpu.hostname,
            gpu.container,
            gpu.pod,
            gpu.namespace,
        )
    )
    # A literal percent sign would be read as a conversion specifier by the ``%`` fill.
    before_value = identity.replace("%", "%%")
    after_value = _csv_quote(labels).replace("%", "%%")
    return f'"%s",{before_value},"%s",{after_value}\n'


class _FleetSimulation:
    """Moves each GPU between idle and busy phases and derives every metric from that state.

    Deriving all metrics from one shared state keeps them consistent with each other (a
    busy GPU is hot, draws power and holds memory; used + free memory is constant). Only
    ``advance`` draws random numbers, and it draws the same ones whichever metrics are
    read, so a metric's values do not depend on which other metrics a file includes.
    """

    def __init__(self, gpus: Sequence[_Gpu], seed: int, interval_seconds: int) -> None:
        self._rng = random.Random(seed)  # noqa: S311  (reproducible synthetic data, not secrets)
        rand = self._rng.random
        self._models = [gpu.model for gpu in gpus]
        self._millijoules_per_watt = interval_seconds * _MILLIJOULES_PER_WATT_SECOND
        # Scheduled GPUs are busy far more often than the rest of the fleet.
        self._busy = [rand() < (0.9 if gpu.pod else 0.5) for gpu in gpus]
        self._job_util = [60.0 + 40.0 * rand() for _ in gpus]
        self._job_memory_share = [0.3 + 0.68 * rand() for _ in gpus]
        # Cubed so that most idle GPUs hold a few MiB and a few hold a leftover context.
        self._idle_memory_mib = [4 + int(2500 * rand() ** 3) for _ in gpus]
        self._ambient_c = [26.0 + 8.0 * rand() for _ in gpus]
        self._memory_above_core_c = [3.0 + 6.0 * rand() for _ in gpus]
        self._copy_share = [0.5 + 0.35 * rand() for _ in gpus]
        self._tensor_share = [0.2 + 0.5 * rand() for _ in gpus]
        # Some idle GPUs drop to their lowest clock; others hold the maximum, as in the
        # reference export where most idle H100s still report 1980 MHz.
        self._parks_clock_when_idle = [rand() < 0.3 for _ in gpus]
        self._pcie_idle_bytes = [100_000 + int(900_000 * rand()) for _ in gpus]
        self._pcie_bytes_per_util_pct = [5_000_000 + int(15_000_000 * rand()) for _ in gpus]
        self._energy_mj = [1_000_000_000 + int(90_000_000_000 * rand()) for _ in gpus]
        self._temperature_c = [
            ambient + (_LOAD_HEATING_C * job / 100.0 if busy else 0.0)
            for ambient, job, busy in zip(self._ambient_c, self._job_util, self._busy, strict=True)
        ]
        gpu_count = len(gpus)
        self._util = [0] * gpu_count
        self._power_w = [0.0] * gpu_count
        self._fb_used_mib = [0] * gpu_count
        self._zeros = [0] * gpu_count
        self._readers = self._metric_readers()

    def advance(self) -> None:
        """Move every GPU one timestep forward."""
        rand = self._rng.random
        busy_flags = self._busy
        job_util = self._job_util
        job_memory_share = self._job_memory_share
        idle_memory = self._idle_memory_mib
        ambient = self._ambient_c
        temperature = self._temperature_c
        energy = self._energy_mj
        util_out = self._util
        power_out = self._power_w
        fb_out = self._fb_used_mib
        millijoules_per_watt = self._millijoules_per_watt
        for i, model in enumerate(self._models):
            busy = busy_flags[i]
            if rand() < _PHASE_SWITCH_PROBABILITY:
                busy = busy_flags[i] = not busy
                if busy:
                    job_util[i] = 60.0 + 40.0 * rand()
                    job_memory_share[i] = 0.3 + 0.68 * rand()
            if busy:
                util = min(100, max(0, int(job_util[i] + 8.0 * (rand() - 0.5))))
                fb_used = int(model.fb_usable_mib * job_memory_share[i]) + int(64 * rand())
            else:
                util = 0
                fb_used = idle_memory[i]
            load = util / 100.0
            idle_power = model.idle_power_w * (0.95 + 0.1 * rand())
            headroom = model.max_power_w - idle_power
            power = round(idle_power + headroom * load * (0.85 + 0.15 * rand()), 3)
            temperature[i] += (ambient[i] + _LOAD_HEATING_C * load - temperature[i]) * (
                _THERMAL_RESPONSE
            )
            energy[i] += int(power * millijoules_per_watt)
            util_out[i] = util
            power_out[i] = power
            fb_out[i] = fb_used

    def readings(self, metric: str) -> Sequence[int | float]:
        """This timestep's value of ``metric`` for every GPU, in fleet order."""
        return self._readers[metric]()

    def _metric_readers(self) -> dict[str, Callable[[], Sequence[int | float]]]:
        models = self._models
        memory_clock = [model.mem_clock_mhz for model in models]
        reserved_memory = [model.fb_reserved_mib for model in models]
        return {
            "DCGM_FI_DEV_GPU_UTIL": lambda: self._util,
            "DCGM_FI_DEV_MEM_COPY_UTIL": self._memory_copy_util,
            "DCGM_FI_DEV_POWER_USAGE": lambda: self._power_w,
            "DCGM_FI_DEV_GPU_TEMP": lambda: [round(t) for t in self._temperature_c],
            "DCGM_FI_DEV_FB_USED": lambda: self._fb_used_mib,
            "DCGM_FI_DEV_FB_FREE": lambda: [
                model.fb_usable_mib - used
                for model, used in zip(models, self._fb_used_mib, strict=True)
            ],
            "DCGM_FI_DEV_DEC_UTIL": lambda: self._zeros,
            "DCGM_FI_DEV_ENC_UTIL": lambda: self._zeros,
            "DCGM_FI_DEV_SM_CLOCK": self._sm_clock,
            "DCGM_FI_DEV_MEM_CLOCK": lambda: memory_clock,
            "DCGM_FI_DEV_MEMORY_TEMP": lambda: [
                round(core + offset)
                for core, offset in zip(self._temperature_c, self._memory_above_core_c, strict=True)
            ],
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": lambda: self._energy_mj,
            "DCGM_FI_DEV_FB_RESERVED": lambda: reserved_memory,
            "DCGM_FI_PROF_GR_ENGINE_ACTIVE": lambda: [round(u / 100.0, 3) for u in self._util],
            "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": lambda: self._util_ratio(self._tensor_share),
            "DCGM_FI_PROF_DRAM_ACTIVE": lambda: self._util_ratio(self._copy_share),
            "DCGM_FI_PROF_PCIE_TX_BYTES": lambda: self._pcie_bytes(1),
            "DCGM_FI_PROF_PCIE_RX_BYTES": lambda: self._pcie_bytes(3),
            "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": lambda: self._zeros,
            "DCGM_FI_DEV_XID_ERRORS": lambda: self._zeros,
        }

    def _memory_copy_util(self) -> list[int]:
        return [int(u * share) for u, share in zip(self._util, self._copy_share, strict=True)]

    def _util_ratio(self, shares: list[float]) -> list[float]:
        """Utilisation scaled by a per-GPU share, as the 0..1 ratio DCGM profiling reports."""
        return [round(u * share / 100.0, 3) for u, share in zip(self._util, shares, strict=True)]

    def _sm_clock(self) -> list[int]:
        return [
            model.sm_clock_idle_mhz if parks and not util else model.sm_clock_max_mhz
            for model, util, parks in zip(
                self._models, self._util, self._parks_clock_when_idle, strict=True
            )
        ]

    def _pcie_bytes(self, multiple: int) -> list[int]:
        """Bytes/s on the bus; training reads its input, so receive runs above transmit."""
        return [
            multiple * (idle + util * per_pct)
            for idle, util, per_pct in zip(
                self._pcie_idle_bytes, self._util, self._pcie_bytes_per_util_pct, strict=True
            )
        ]
