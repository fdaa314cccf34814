"""CSV exports of samples: one device's, or every device's within a time range.

Parameters are checked and the devices found before the first byte is sent, so a bad
parameter is still a JSON 400 and an unknown device a 404; then the file is streamed
(``api.telemetry_csv``) with no row cap. A long stream outlives gunicorn's worker timeout
because the web role runs gthread workers (telemetry_project/gunicorn_config.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from django.db.models import F
from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header
from rest_framework.generics import get_object_or_404
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from api import schema
from api.params import FleetExportParams, TimeRangeParams
from api.telemetry_csv import csv_stream
from api.views import device_with_telemetry, samples_of, validated
from ingest.models import Gpu

# What a device's CSV row needs of it: its labels are written on every row.
DEVICE_FIELDS = (
    "id", "uuid", "gpu_instance_id", "gpu_instance_profile", "gpu_index", "device",
    "model_name", "hostname", "labels",
)  # fmt: skip


class JsonErrorsWhateverAccepted(DefaultContentNegotiation):
    """An export's errors are JSON whatever the client accepts (``Accept: text/csv``
    included): the file itself is a streamed response that no renderer touches."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        json = next(iter(renderers))
        return json, json.media_type


def csv_response(
    devices: Sequence[Gpu], params: dict[str, Any], filename: str
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        csv_stream(devices, partial(samples_of, params=params)),
        content_type="text/csv; charset=utf-8",
    )
    # Never None for an attachment; the header quotes or encodes whatever the name holds.
    response["Content-Disposition"] = content_disposition_header(True, filename) or "attachment"
    # Proxies that buffer responses (nginx) would hold the stream back; let it through.
    response["X-Accel-Buffering"] = "no"
    return response


def _compact(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


class DeviceTelemetryCsvView(APIView):
    """One GPU's or MIG instance's samples as a DCGM CSV file."""

    content_negotiation_class = JsonErrorsWhateverAccepted

    @schema.telemetry_csv
    def get(self, request: Request, id: str) -> StreamingHttpResponse:
        device = get_object_or_404(device_with_telemetry(id).only(*DEVICE_FIELDS))
        params = validated(TimeRangeParams, request)
        name = (
            device.uuid
            if device.gpu_instance_id is None
            else (f"{device.uuid}-mig{device.gpu_instance_id}")
        )
        return csv_response([device], params, f"telemetry-{name}.csv")


class FleetTelemetryCsvView(APIView):
    """Every device's samples within a time range as one DCGM CSV file."""

    content_negotiation_class = JsonErrorsWhateverAccepted

    @schema.fleet_telemetry_csv
    def get(self, request: Request) -> StreamingHttpResponse:
        params = validated(FleetExportParams, request)
        start, end = params["start_time"], params["end_time"]
        # First and last seen are exact (kept in the collect transaction): a device with no
        # sample in the range is not queried at all.
        devices = Gpu.objects.filter(sample_count__gt=0, first_seen__lte=end, last_seen__gte=start)
        if params.get("hostname") is not None:
            devices = devices.filter(hostname=params["hostname"])
        if params.get("model") is not None:
            devices = devices.filter(model_name=params["model"])
        ordered = devices.only(*DEVICE_FIELDS).order_by(
            "hostname", "gpu_index", "uuid", F("gpu_instance_id").asc(nulls_first=True)
        )
        filename = f"telemetry-{_compact(start)}-{_compact(end)}.csv"
        return csv_response(list(ordered), params, filename)
