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
from api.params import AggregateParams, FleetExportParams, TimeRangeParams
from api.serializers import AggregateSerializer, LatestSerializer, SamplePageSerializer

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
_ERRORS = {404: _NOT_FOUND}
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
        "hour of data is used; with one of them, the hour after start_time or before end_time."
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
