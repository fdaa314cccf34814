"""Maps the names in CSV rows (GPU uuid, metric name, workload) to small integer ids.

Ids are cached for the life of the worker process, so a steady stream costs dictionary
lookups only. New names are inserted idempotently in their own short transaction before the
chunk's transaction opens: a GPU row that exists without samples yet is harmless, and an id
is cached only once it is committed, so a rolled-back chunk can never leave a dangling id.
GPUs and metrics are never deleted (the admin does not allow it), which keeps the cache true.
"""

from __future__ import annotations

from collections.abc import Iterable

from ingest.dcgm import SampleRow, parse_labels
from ingest.models import Gpu, Metric, Workload

WorkloadKey = tuple[str, str, str]

_metric_ids: dict[str, int] = {}
_gpu_ids: dict[str, int] = {}
_workload_ids: dict[WorkloadKey, int] = {}


def workload_key(row: SampleRow) -> WorkloadKey | None:
    if not (row.namespace or row.pod or row.container):
        return None
    return (row.namespace, row.pod, row.container)


def metric_ids(names: Iterable[str]) -> dict[str, int]:
    missing = set(names) - _metric_ids.keys()
    if missing:
        Metric.objects.bulk_create([Metric(name=name) for name in missing], ignore_conflicts=True)
        _metric_ids.update(Metric.objects.filter(name__in=missing).values_list("name", "id"))
    return _metric_ids


def gpu_ids(rows: Iterable[SampleRow]) -> dict[str, int]:
    """Ids by uuid; a GPU seen for the first time is created from its first row."""
    first_rows: dict[str, SampleRow] = {}
    for row in rows:
        if row.uuid not in _gpu_ids and row.uuid not in first_rows:
            first_rows[row.uuid] = row
    if first_rows:
        Gpu.objects.bulk_create(
            [
                Gpu(
                    uuid=row.uuid,
                    gpu_index=row.gpu_index,
                    device=row.device,
                    model_name=row.model,
                    hostname=row.hostname,
                    labels=parse_labels(row.labels_raw),
                )
                for row in first_rows.values()
            ],
            ignore_conflicts=True,
        )
        _gpu_ids.update(Gpu.objects.filter(uuid__in=first_rows).values_list("uuid", "id"))
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
