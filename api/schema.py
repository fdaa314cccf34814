"""OpenAPI documentation of the API: parameters, error statuses and real DCGM examples."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework.serializers import BaseSerializer

from api.pagination import SamplePageParams
from api.params import AggregateParams, FleetExportParams, FleetParams, TimeRangeParams
from api.serializers import (
    AggregateSerializer,
    FleetSerializer,
    HostAggregateSerializer,
    LatestSerializer,
    SamplePageSerializer,
    SourcesSerializer,
)

F = TypeVar("F", bound=Callable[..., Any])


class ApiTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Documents ``api.authentication.ApiTokenAuthentication`` as HTTP bearer authentication."""

    target_class = "api.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token: `Authorization: Bearer <key>` (or `Token <key>`). "
            "Required when the deployment sets API_REQUIRE_TOKEN; pushing data always needs "
            "a token that may write.",
        }


# Taken from the reference export (dcgm_metrics_20250718_134233.csv).
EXAMPLE_UUID = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
EXAMPLE_TIME = "2025-07-18T20:42:34Z"

_BAD_REQUEST = OpenApiResponse(
    response={
        "type": "object",
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    },
    description=(
        "A query parameter is invalid: each offending parameter with its messages. Any "
        "parameter holding a control character (NUL, a newline, ...) is refused this way on "
        "every operation, whether or not the operation reads it."
    ),
    examples=[
        OpenApiExample(
            "zone-less time",
            value={"start_time": ["The time has no zone: add Z or an offset such as +02:00."]},
        ),
        OpenApiExample(
            "limit too large", value={"limit": ["Ensure this value is less than or equal to 1000."]}
        ),
        OpenApiExample(
            "control character",
            value={
                "end_time": [
                    "This parameter holds a control character (U+0000), which no parameter accepts."
                ]
            },
        ),
    ],
)
_NOT_FOUND = OpenApiResponse(
    response={"type": "object", "properties": {"detail": {"type": "string"}}},
    description="No GPU or MIG instance with this id has telemetry.",
    examples=[OpenApiExample("unknown id", value={"detail": "No Gpu matches the given query."})],
)
_HOST_NOT_FOUND = OpenApiResponse(
    response={"type": "object", "properties": {"detail": {"type": "string"}}},
    description="No device of a host with this name has telemetry.",
    examples=[
        OpenApiExample("unknown host", value={"detail": "No host with this name has telemetry."})
    ],
)
_ERRORS = {
    404: _NOT_FOUND,
    401: OpenApiResponse(
        response={"type": "object", "properties": {"detail": {"type": "string"}}},
        description="No credentials, or a token that matches none.",
    ),
    403: OpenApiResponse(
        response={"type": "object", "properties": {"detail": {"type": "string"}}},
        description="Signed in, but neither a staff user of the admin nor a staff token.",
    ),
}
# gunicorn's own page, sent before the request reaches Django when the request line (method,
# path, query string and protocol) is longer than its limit_request_line (4094 bytes by
# default). The limit stays: lifting it (0) would let one request line take any memory.
URI_TOO_LONG = {
    "description": (
        "The request line is longer than the web server accepts (gunicorn's "
        "limit_request_line, 4094 bytes by default): gunicorn's own HTML page, not JSON."
    ),
    "content": {"text/html": {"schema": {"type": "string"}}},
}

DEVICE_PARAMETER = OpenApiParameter(
    "id", OpenApiTypes.STR, OpenApiParameter.PATH,
    description=(
        "The device's id: a GPU's uuid (its identity; index and device repeat across hosts), "
        "or <uuid>:<GPU instance id> for a MIG instance of that GPU."
    ),
    examples=[
        OpenApiExample("H100 on mtv5-dgx1-hgpu-031", value=EXAMPLE_UUID),
        OpenApiExample("MIG instance 13 of a GPU", value=f"{EXAMPLE_UUID}:13"),
    ],
)  # fmt: skip


def responses(serializer: Any, *errors: int) -> dict[int, Any]:
    """A 200 with ``serializer``, the 400 every API operation may answer, and ``errors``."""
    return {200: serializer, 400: _BAD_REQUEST, **{status: _ERRORS[status] for status in errors}}


def document_uri_too_long(
    result: dict[str, Any], generator: object, request: object, public: bool
) -> dict[str, Any]:
    """drf-spectacular post-processing hook: the 414 any operation may meet, on every one."""
    for path in result["paths"].values():
        for operation in path.values():
            operation["responses"].setdefault("414", URI_TOO_LONG)
    return result


def described(serializer: type[BaseSerializer[Any]], description: str) -> OpenApiResponse:
    return OpenApiResponse(response=serializer, description=description)


telemetry: Callable[[F], F] = extend_schema(
    summary="A GPU's samples in ascending time",
    description=(
        "Samples ordered by timestamp (ties broken by insertion order), so pages never "
        "overlap or skip. start_time and end_time are inclusive to the microsecond. "
        "No total count is returned: `next` is null on the last page. `next` carries a "
        "cursor (where this page ended), so following it costs the same at any depth; "
        "`offset` is accepted too, and costs more the deeper it goes."
    ),
    parameters=[DEVICE_PARAMETER, TimeRangeParams, SamplePageParams],
    responses=responses(SamplePageSerializer, 404),
    examples=[
        OpenApiExample(
            "one sample",
            response_only=True,
            value={
                "next": None,
                "previous": None,
                "results": [
                    {
                        "timestamp": EXAMPLE_TIME,
                        "metric": "DCGM_FI_DEV_GPU_UTIL",
                        "value": 0.0,
                        "namespace": "",
                        "pod": "",
                        "container": "",
                    }
                ],
            },
        )
    ],
)

aggregate: Callable[[F], F] = extend_schema(
    summary="Per-metric time buckets of a GPU's samples",
    description=(
        "Count, average, minimum and maximum per metric and bucket, computed in the database. "
        "Buckets are aligned to the Unix epoch. Without start_time and end_time the GPU's last "
        "hour of data is used; with one of them, the hour after start_time or before end_time. "
        "With fn (delta or rate; metric required, counters only), each bucket also gets the "
        "counter's increase, or that per second of the bucket's width: the sum of the "
        "increments between consecutive samples in the range, a decrease counted as a reset "
        "(the new value is the increment)."
    ),
    parameters=[DEVICE_PARAMETER, AggregateParams],
    responses=responses(AggregateSerializer, 404),
    examples=[
        OpenApiExample(
            "GPU utilisation per minute",
            response_only=True,
            value={
                "id": EXAMPLE_UUID,
                "uuid": EXAMPLE_UUID,
                "bucket": "60s",
                "start_time": "2025-07-18T19:42:34Z",
                "end_time": EXAMPLE_TIME,
                "buckets": [
                    {
                        "metric": "DCGM_FI_DEV_GPU_UTIL",
                        "bucket_start": "2025-07-18T20:42:00Z",
                        "count": 1,
                        "avg": 0.0,
                        "min": 0.0,
                        "max": 0.0,
                    }
                ],
            },
        )
    ],
)

latest: Callable[[F], F] = extend_schema(
    summary="The latest value of every metric of a GPU",
    parameters=[DEVICE_PARAMETER],
    responses=responses(LatestSerializer(many=True), 404),
    examples=[
        OpenApiExample(
            "temperature",
            response_only=True,
            value=[{"metric": "DCGM_FI_DEV_GPU_TEMP", "timestamp": EXAMPLE_TIME, "value": 34.0}],
        )
    ],
)


_CSV_DESCRIPTION = (
    "A DCGM CSV file (timestamp, metric_name, gpu_id, device, uuid, modelName, Hostname, "
    "container, pod, namespace, value, labels_raw; gpu_instance_id and gpu_instance_profile "
    "too when a MIG instance is in it) that import_csv reads back into the same samples: times "
    "in UTC to the microsecond, values as the shortest text of the same float, the GPU's "
    "labels in labels_raw. Streamed, every row, however many."
)
_EXAMPLE_CSV = (
    '"timestamp","metric_name","gpu_id","device","uuid","modelName","Hostname","container",'
    '"pod","namespace","value","labels_raw"\n'
    f'"2025-07-18T20:42:34.000000Z","DCGM_FI_DEV_GPU_TEMP","0","nvidia0","{EXAMPLE_UUID}",'
    '"NVIDIA H100 80GB HBM3","mtv5-dgx1-hgpu-031","","","","34.0",'
    '"DCGM_FI_DRIVER_VERSION=""535.129.03"",Hostname=""mtv5-dgx1-hgpu-031"",..."\n'
)


def _csv_responses(*errors: int) -> dict[Any, Any]:
    """The file as a text/csv 200; the errors as JSON, as on every operation."""
    csv_file = OpenApiResponse(
        response=OpenApiTypes.STR,
        description=_CSV_DESCRIPTION,
        examples=[OpenApiExample("one sample", value=_EXAMPLE_CSV, response_only=True)],
    )
    return {(200, "text/csv"): csv_file, 400: _BAD_REQUEST, **{s: _ERRORS[s] for s in errors}}


telemetry_csv: Callable[[F], F] = extend_schema(
    operation_id="api_v1_gpus_telemetry_csv_retrieve",
    summary="A GPU's samples as a CSV file",
    description=(
        "The samples /telemetry pages through, with the same filters, as one DCGM CSV file "
        "in ascending time, without a row limit (Content-Disposition: attachment)."
    ),
    parameters=[DEVICE_PARAMETER, TimeRangeParams],
    responses=_csv_responses(404),
)

fleet_telemetry_csv: Callable[[F], F] = extend_schema(
    operation_id="api_v1_telemetry_csv_retrieve",
    summary="Every device's samples in a time range as a CSV file",
    description=(
        "All samples between start_time and end_time (both required), device after device "
        "(by host, GPU index, uuid, whole GPU before its MIG instances), each device's in "
        "ascending time; optionally only a host's, a model's or some metrics' samples."
    ),
    parameters=[FleetExportParams],
    responses=_csv_responses(),
)

fleet_latest: Callable[[F], F] = extend_schema(
    summary="Every device with its newest values",
    description=(
        "One entry per device with telemetry (GPUs and MIG instances), ordered by host, GPU "
        "index, and each GPU's instances after it; not paginated. Values come from the read "
        "model the collector keeps (the newest sample of each metric per device), never from "
        "the sample table. A device is stale when its newest sample is older than "
        "STALE_AFTER_SECONDS, hot when its newest GPU temperature is at least "
        "FLEET_HOT_TEMPERATURE_C, idle when its newest GPU utilisation is at most "
        "FLEET_IDLE_UTILISATION_PERCENT; a stale device is neither hot nor idle. An unknown "
        "metric name is a 400 naming it."
    ),
    parameters=[FleetParams],
    responses=responses(FleetSerializer),
    examples=[
        OpenApiExample(
            "one idle H100",
            response_only=True,
            value={
                "generated_at": EXAMPLE_TIME,
                "stale_after_seconds": 180,
                "thresholds": {"hot_temperature_c": 80.0, "idle_utilisation_percent": 5.0},
                "metrics": [{"name": "DCGM_FI_DEV_GPU_UTIL", "unit": "%", "kind": "gauge"}],
                "counts": {"devices": 1, "hosts": 1, "hot": 0, "idle": 1, "stale": 0},
                "devices": [
                    {
                        "id": EXAMPLE_UUID,
                        "uuid": EXAMPLE_UUID,
                        "parent": None,
                        "gpu_instance_id": None,
                        "gpu_instance_profile": "",
                        "hostname": "mtv5-dgx1-hgpu-031",
                        "gpu_index": 0,
                        "model_name": "NVIDIA H100 80GB HBM3",
                        "workload": None,
                        "last_seen": EXAMPLE_TIME,
                        "stale": False,
                        "hot": False,
                        "idle": True,
                        "values": {
                            "DCGM_FI_DEV_GPU_UTIL": {"value": 0.0, "timestamp": EXAMPLE_TIME}
                        },
                    }
                ],
            },
        )
    ],
)

sources: Callable[[F], F] = extend_schema(
    summary="The pipeline's sources: state, progress, throughput, lag and rejections",
    description=(
        "For operators: a staff user signed in to the admin, or a token made with --staff "
        "(create_token) or marked staff in the admin. Rows rejected by reason come from "
        "counters kept in the collect transaction, by the category of the reason (its kind, "
        "without the values of the row)."
    ),
    responses=responses(SourcesSerializer, 401, 403),
)

HOSTNAME_PARAMETER = OpenApiParameter(
    "hostname",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The host's name, exactly as its GPUs report it (the Hostname label).",
    examples=[OpenApiExample("a DGX host", value="mtv5-dgx1-hgpu-031")],
)

host_aggregate: Callable[[F], F] = extend_schema(
    summary="Per-metric time buckets over all of a host's devices",
    description=(
        "The parameters and validation of a GPU's aggregate: count, average, minimum and "
        "maximum per metric and bucket over every device of the host (GPUs and MIG "
        "instances), computed in the database. Without start_time and end_time, the hour up "
        "to the host's newest sample. With fn, counters only: each bucket's increase summed "
        "over the devices (delta), or that per second of the bucket's width (rate)."
    ),
    parameters=[HOSTNAME_PARAMETER, AggregateParams],
    responses={**responses(HostAggregateSerializer), 404: _HOST_NOT_FOUND},
)
