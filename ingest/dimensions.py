"""Maps the names in parsed rows (device, metric name, workload) to small integer ids.

Ids are cached for the life of the worker process, so a steady stream costs dictionary
lookups only. New names are inserted idempotently in their own short transaction before the
chunk's transaction opens: a GPU row that exists without samples yet is harmless, and an id
is cached only once it is committed, so a rolled-back chunk can never leave a dangling id.
Every insert goes in sorted order: collectors started together insert the same new names at
once, and in each process's own order (a set's order changes with the process's string
hashing) two of them deadlocked, one losing a second to the deadlock timeout and its chunk to a
retry.
GPUs and metrics are never deleted (the admin does not allow it), which keeps the cache true.

A device is keyed by (uuid, GPU instance id): a MIG instance is a row of its own, and its
parent GPU's row is created with it when the parent has not been seen yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ingest import fields
from ingest.dcgm import DeviceKey, GpuFields, MetricDoc, gpu_labels
from ingest.models import Gpu, Metric, Workload

WorkloadKey = tuple[str, str, str]

_metric_ids: dict[str, int] = {}
_gpu_ids: dict[DeviceKey, int] = {}
_workload_ids: dict[WorkloadKey, int] = {}


def workload_key(gpu: GpuFields) -> WorkloadKey | None:
    if not (gpu.namespace or gpu.pod or gpu.container):
        return None
    return (gpu.namespace, gpu.pod, gpu.container)


def workload_keys(gpus: Iterable[GpuFields]) -> set[WorkloadKey]:
    """The workloads the GPUs' rows name (most DCGM rows name none)."""
    return {key for gpu in gpus if (key := workload_key(gpu)) is not None}


def metric_ids(names: Iterable[str], docs: Mapping[str, MetricDoc] | None = None) -> dict[str, int]:
    """Ids by name; a metric seen for the first time is created with its unit and kind."""
    missing = set(names) - _metric_ids.keys()
    if missing:
        Metric.objects.bulk_create(
            [_new_metric(name, (docs or {}).get(name)) for name in sorted(missing)],
            ignore_conflicts=True,
        )
        _metric_ids.update(Metric.objects.filter(name__in=missing).values_list("name", "id"))
    return _metric_ids


def _new_metric(name: str, doc: MetricDoc | None) -> Metric:
    """The field table's unit and kind; what the page said for a field the table lacks."""
    known = fields.field(name)
    help_text = doc.help if doc else ""
    if known is not None:
        return Metric(name=name, unit=known.unit, kind=known.kind, help=help_text)
    kind = doc.kind if doc and doc.kind in ("gauge", "counter") else ""
    return Metric(name=name, unit=fields.unit_from_help(help_text), kind=kind, help=help_text)


def gpu_ids(gpus: Iterable[GpuFields]) -> dict[DeviceKey, int]:
    """Ids by device key; a device seen for the first time is created from its first fields.

    A MIG instance's parent GPU is created first (from the instance's fields) if it is new.
    """
    new: dict[DeviceKey, GpuFields] = {}
    for gpu in gpus:
        key = gpu.device_key
        if key not in _gpu_ids and key not in new:
            new[key] = gpu
    instances = [gpu for gpu in new.values() if gpu.gpu_instance_id is not None]
    wholes: dict[DeviceKey, GpuFields] = {
        (gpu.uuid, None): gpu._replace(gpu_instance_id=None, gpu_instance_profile="")
        for gpu in instances
    }
    wholes.update((key, gpu) for key, gpu in new.items() if gpu.gpu_instance_id is None)
    _create([gpu for key, gpu in wholes.items() if key not in _gpu_ids])
    if instances:
        _create(instances)
    return _gpu_ids


def _create(gpus: list[GpuFields]) -> None:
    """Insert the devices not stored yet (whole GPUs before their instances) and cache the ids.

    Stored devices are read first and never inserted again: an insert that meets a stored
    row waits for whichever chunk transaction holds that row updated (its counters) to end,
    and with collectors taking turns at the rows, a collector started beside busy ones (its
    cache empty) waited seconds for its first chunk. A plain read waits for no one.
    """
    _cache_stored(gpus)
    missing = sorted(
        (gpu for gpu in gpus if gpu.device_key not in _gpu_ids), key=lambda gpu: gpu.device_key
    )
    if not missing:
        return
    Gpu.objects.bulk_create(
        [
            Gpu(
                uuid=gpu.uuid,
                gpu_instance_id=gpu.gpu_instance_id,
                gpu_instance_profile=gpu.gpu_instance_profile,
                parent_id=None if gpu.gpu_instance_id is None else _gpu_ids[(gpu.uuid, None)],
                gpu_index=gpu.gpu_index,
                device=gpu.device,
                model_name=gpu.model,
                hostname=gpu.hostname,
                labels=device_labels(gpu),
            )
            for gpu in missing
        ],
        ignore_conflicts=True,  # another collector may insert the same device meanwhile
    )
    _cache_stored(missing)


def _cache_stored(gpus: list[GpuFields]) -> None:
    """Cache the ids of those of ``gpus`` that have a row."""
    if not gpus:
        return
    wanted = {gpu.device_key for gpu in gpus}
    rows = Gpu.objects.filter(uuid__in={gpu.uuid for gpu in gpus}).values_list(
        "uuid", "gpu_instance_id", "id"
    )
    _gpu_ids.update(
        ((uuid, instance), id_) for uuid, instance, id_ in rows if (uuid, instance) in wanted
    )


def device_labels(gpu: GpuFields) -> dict[str, str]:
    """The GPU's static labels: as its page gave them, or read from its CSV labels_raw."""
    if gpu.labels is not None:
        return dict(gpu.labels)
    return gpu_labels(gpu.labels_raw)


def workload_ids(keys: Iterable[WorkloadKey]) -> dict[WorkloadKey, int]:
    missing = set(keys) - _workload_ids.keys()
    if missing:
        Workload.objects.bulk_create(
            [Workload(namespace=n, pod=p, container=c) for n, p, c in sorted(missing)],
            ignore_conflicts=True,
        )
        for key in missing:
            namespace, pod, container = key
            _workload_ids[key] = Workload.objects.values_list("id", flat=True).get(
                namespace=namespace, pod=pod, container=container
            )
    return _workload_ids


def forget() -> None:
    """Drop the cached ids (tests empty the tables between cases)."""
    _metric_ids.clear()
    _gpu_ids.clear()
    _workload_ids.clear()
