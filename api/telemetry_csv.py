"""Samples written out as a DCGM CSV export, streamed: the file ``ingest.dcgm`` reads back.

The layout is the exporter's (``EXPORT_COLUMNS``, every field quoted), plus
``gpu_instance_id``/``gpu_instance_profile`` when a MIG instance is among the devices, so an
export imported again (``import_csv``, timestamps kept) gives the same samples:

- times in UTC to the microsecond (``2025-07-18T20:42:34.000000Z``), all the database holds;
- values as ``repr`` of the float, the shortest text that parses back to the same bits;
- ``labels_raw`` as the GPU's stored labels in the exporter's ``key="value"`` form, sorted by
  key. A label value holding a double quote cannot be written so that ``parse_labels`` reads
  it back (the form has no escape); no exporter label holds one.

Memory stays flat at any size: each device's samples are read through a server-side cursor
(``.iterator``, a named cursor on PostgreSQL) ``ROWS_PER_FETCH`` at a time, and each batch is
written and handed to the web server before the next is fetched. docs/design.md, "CSV export".
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Final

from django.db import transaction
from django.db.models import QuerySet

from ingest.models import Gpu, Metric, Sample

EXPORT_COLUMNS: Final = (
    "timestamp", "metric_name", "gpu_id", "device", "uuid", "modelName", "Hostname",
    "container", "pod", "namespace", "value", "labels_raw",
)  # fmt: skip
INSTANCE_COLUMNS: Final = ("gpu_instance_id", "gpu_instance_profile")
# Rows per round trip to the database and per piece handed to the web server: large enough
# that per-fetch costs vanish, small enough (~2 MB of CSV) to keep memory flat.
ROWS_PER_FETCH: Final = 5000
SAMPLE_FIELDS: Final = (
    "timestamp", "metric_id", "value",
    "workload__container", "workload__pod", "workload__namespace",
)  # fmt: skip


def labels_raw(labels: Mapping[str, str]) -> str:
    """A GPU's labels in the exporter's ``key="value",...`` form, sorted by key."""
    return ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))


def utc_microseconds(moment: datetime) -> str:
    """RFC 3339 in UTC with all six fraction digits: ``2025-07-18T20:42:34.000000Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def quoted(*fields: object) -> str:
    """``fields`` as one run of a row, every field quoted as the exporter quotes it (quotes
    inside doubled), by the csv module; without a line ending."""
    text = io.StringIO()
    csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="").writerow(fields)
    return text.getvalue()


class _Quoted(dict[Any, str]):
    """A field or run of fields, quoted once per distinct value: an export repeats a few
    metric names and workloads millions of times."""

    def __missing__(self, fields: tuple[object, ...]) -> str:
        self[fields] = text = quoted(*fields)
        return text


class _MetricNames(dict[int, tuple[str]]):
    """Metric ids to names, read once; read again if a metric appears during the export."""

    def __missing__(self, metric_id: int) -> tuple[str]:
        self.update((pk, (name,)) for pk, name in Metric.objects.values_list("id", "name"))
        return self[metric_id]


def csv_stream(
    devices: Sequence[Gpu], samples_of: Callable[[Gpu], QuerySet[Sample]]
) -> Iterator[bytes]:
    """The export of ``devices``, one after the other, each device's samples in time order.

    ``samples_of`` gives a device's samples (its filters applied). Each device is read in a
    transaction of its own: PostgreSQL needs one for a cursor that is not materialised whole
    on the server (in autocommit Django declares it WITH HOLD, which copies the entire result
    at commit), and one per device keeps a long export from holding one snapshot, and the
    partitions' locks, from its first row to its last.
    """
    with_instances = any(device.gpu_instance_id is not None for device in devices)
    columns = EXPORT_COLUMNS + INSTANCE_COLUMNS if with_instances else EXPORT_COLUMNS
    yield (quoted(*columns) + "\n").encode()
    metric_names = _MetricNames()
    runs = _Quoted()
    for device in devices:
        with transaction.atomic():
            samples = samples_of(device).order_by("timestamp", "id").values_list(*SAMPLE_FIELDS)
            rows = samples.iterator(chunk_size=ROWS_PER_FETCH)
            while batch := list(islice(rows, ROWS_PER_FETCH)):
                lines = _device_lines(device, batch, metric_names, runs, with_instances)
                yield "".join(lines).encode()


def _device_lines(
    device: Gpu,
    batch: Iterable[tuple[Any, ...]],
    metric_names: _MetricNames,
    runs: _Quoted,
    with_instances: bool,
) -> Iterator[str]:
    """The rows of a batch of the device's samples, each a line.

    Every field that comes from data (names, labels, workloads) is quoted by the csv module,
    once per distinct value; the two fields written per row, the time (``utc_microseconds``)
    and the value (``repr`` of a finite float), hold only digits, letters, ``.:+-`` and so
    need nothing but their quotes. Quoting the ~300 characters of ``labels_raw`` on every row
    was most of the export's time.
    """
    gpu = runs[(device.gpu_index, device.device, device.uuid, device.model_name, device.hostname)]
    instance_id = "" if device.gpu_instance_id is None else device.gpu_instance_id
    instance = (instance_id, device.gpu_instance_profile) if with_instances else ()
    labels = runs[(labels_raw(device.labels), *instance)]
    # A device's samples come in time order and several metrics share each time: format a
    # time once for its run of rows.
    last_time: datetime | None = None
    time_text = ""
    for timestamp, metric_id, value, container, pod, namespace in batch:
        if timestamp != last_time:
            last_time, time_text = timestamp, utc_microseconds(timestamp)
        metric = runs[metric_names[metric_id]]
        workload = runs[(container or "", pod or "", namespace or "")]
        yield f'"{time_text}",{metric},{gpu},{workload},"{value!r}",{labels}\n'
