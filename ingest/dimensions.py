"""Maps the names in CSV rows (GPU uuid, metric name, workload) to small integer ids.

Ids are cached for the life of the worker process, so a steady stream costs dictionary
lookups only. New names are inserted idempotently in their own short transaction before the
chunk's transaction opens: a GPU row that exists without samples yet is harmless, and an id
is cached only once it is committed, so a rolled-back chunk can never leave a dangling id.
GPUs and metrics are never deleted (the admin does not allow it), which keeps the cache true.
"""

from __future__ import annotations

from collections.abc import Iterable

from ingest.dcgm import GpuFields, gpu_labels
from ingest.models import Gpu, Metric, Workload

WorkloadKey = tuple[str, str, str]

_metric_ids: dict[str, int] = {}
_gpu_ids: dict[str, int] = {}
_workload_ids: dict[WorkloadKey, int] = {}


def workload_key(gpu: GpuFields) -> WorkloadKey | None:
    if not (gpu.namespace or gpu.pod or gpu.container):
        return None
    return (gpu.namespace, gpu.pod, gpu.container)


def workload_keys(gpus: Iterable[GpuFields]) -> set[WorkloadKey]:
    """The workloads the GPUs' rows name (most DCGM rows name none)."""
    return {key for gpu in gpus if (key := workload_key(gpu)) is not None}


def metric_ids(names: Iterable[str]) -> dict[str, int]:
    missing = set(names) - _metric_ids.keys()
    if missing:
        Metric.objects.bulk_create([Metric(name=name) for name in missing], ignore_conflicts=True)
        _metric_ids.update(Metric.objects.filter(name__in=missing).values_list("name", "id"))
    return _metric_ids


def gpu_ids(gpus: Iterable[GpuFields]) -> dict[str, int]:
    """Ids by uuid; a GPU seen for the first time is created from its first fields."""
    new: dict[str, GpuFields] = {}
    for gpu in gpus:
        if gpu.uuid not in _gpu_ids and gpu.uuid not in new:
            new[gpu.uuid] = gpu
    if new:
        Gpu.objects.bulk_create(
            [
                Gpu(
                    uuid=gpu.uuid,
                    gpu_index=gpu.gpu_index,
                    device=gpu.device,
                    model_name=gpu.model,
                    hostname=gpu.hostname,
                    labels=gpu_labels(gpu.labels_raw),
                )
                for gpu in new.values()
            ],
            ignore_conflicts=True,
        )
        _gpu_ids.update(Gpu.objects.filter(uuid__in=new).values_list("uuid", "id"))
    return _gpu_ids


def workload_ids(keys: Iterable[WorkloadKey]) -> dict[WorkloadKey, int]:
    missing = set(keys) - _workload_ids.keys()
    if missing:
        Workload.objects.bulk_create(
            [Workload(namespace=n, pod=p, container=c) for n, p, c in missing],
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
