"""OpenAPI documentation of the write endpoints: bodies, headers, and every status they answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

F = TypeVar("F", bound=Callable[..., Any])

_DETAIL = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}


def _error(description: str, name: str, example: str) -> OpenApiResponse:
    return OpenApiResponse(
        response=_DETAIL,
        description=description,
        examples=[OpenApiExample(name, value={"detail": example})],
    )


def _errors(unreadable: str, example: str) -> dict[int, OpenApiResponse]:
    """Every refusal of a write endpoint; ``unreadable`` says what its 400 is about."""
    return {
        400: _error(
            f"The body does not decode: not valid gzip, or {unreadable}.", "unreadable", example
        ),
        401: _error(
            "No token, or one that matches none (WWW-Authenticate: Bearer).",
            "no token",
            "Authentication credentials were not provided.",
        ),
        403: _error(
            "The token may only read.",
            "read-only token",
            "This token may only read: writing needs a token made with can_write.",
        ),
        411: _error(
            "No Content-Length.", "no length", "Send the body with a Content-Length header."
        ),
        413: _error(
            "The body is over PUSH_MAX_BODY_BYTES as sent, once decompressed, or as its "
            "snappy block declares.",
            "too large",
            "The body is 40000000 bytes, over the limit of 33554432.",
        ),
        415: _error(
            "A Content-Type or Content-Encoding the endpoint does not take.",
            "unsupported coding",
            "Content-Encoding 'br' is not taken here: send gzip or identity.",
        ),
        503: _error(
            "Nothing was recorded: the collect queue is at COLLECT_QUEUE_MAX_DEPTH, or the "
            "database or the broker is down. Send the same body again after Retry-After "
            "seconds.",
            "queue full",
            "The collect queue holds 64 chunks, its bound is 64: send again later.",
        ),
    }


class RefusalSerializer(serializers.Serializer[Any]):
    line = serializers.IntegerField(help_text="The line number in the body (the header is 1).")
    reason = serializers.CharField()
    text = serializers.CharField(help_text="The line, as stored with its rejected row.")


class ImportSerializer(serializers.Serializer[Any]):
    """What an import recorded. Collectors commit the parts later and may reject more rows
    (visible as rejected rows): a row whose time passed the retention window meanwhile."""

    chunks = serializers.ListField(
        child=serializers.CharField(),
        help_text="The ids of the parts, as the ledger and rejected rows name them.",
    )
    rows = serializers.IntegerField(help_text="Rows recorded, to be stored as samples.")
    refused = serializers.IntegerField(
        help_text="Rows refused while reading the body; each is also kept as a rejected row."
    )
    ignored = serializers.IntegerField(
        help_text="Samples of families that are not DCGM fields (pages only): not stored."
    )
    refusals = RefusalSerializer(many=True, help_text="The first 100 refused rows, in order.")
    already_recorded = serializers.BooleanField(
        help_text="The same body was recorded before: this request added nothing."
    )


_CONTENT_ENCODING = OpenApiParameter(
    "Content-Encoding",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="gzip, or none (identity); any other coding is a 415.",
)


remote_write: Callable[[F], F] = extend_schema(
    operation_id="remote_write",
    summary="Prometheus remote write 1.0",
    description=(
        "A snappy-compressed (block format) protobuf WriteRequest, as Prometheus's remote_write "
        "sends it. Samples of DCGM_FI_* series are stored at their own times, labels mapped as "
        "for exporter pages; other series are ignored and counted, staleness markers skipped "
        "and counted. A series whose labels name no GPU, a value that is not finite or is a "
        "DCGM blank sentinel, a time past retention or more than 10 minutes ahead of the "
        "request's arrival: rejected rows with the reason. Answered 204 once the batch is "
        "recorded in the database; the same body sent again (a retry) is recognised and "
        "stored once. Needs a token that may write."
    ),
    request={"application/x-protobuf": OpenApiTypes.BINARY},
    parameters=[
        OpenApiParameter(
            "Content-Encoding", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True,
            enum=["snappy"], description="snappy (block format).",
        ),
        OpenApiParameter(
            "X-Prometheus-Remote-Write-Version", OpenApiTypes.STR, OpenApiParameter.HEADER,
            description="0.1.0, as Prometheus sends it (not checked).",
        ),
    ],
    responses={
        204: OpenApiResponse(description="Recorded (or recorded before)."),
        **_errors(
            "not a snappy-compressed remote write 1.0 WriteRequest",
            "The snappy block is corrupt or cut short: snappy: corrupt input.",
        ),
    },
)  # fmt: skip


def _import(
    name: str, summary: str, description: str, media_types: list[str], unreadable: tuple[str, str]
) -> Callable[[F], F]:
    """The documentation of an import endpoint: a gzip-able body, a 202 saying what was
    recorded; ``unreadable`` is what its 400 is about, and an example of it."""
    return extend_schema(
        operation_id=f"import_{name}",
        summary=summary,
        description=f"{description} The same body sent again is recognised and stored once. "
        "Needs a token that may write.",
        request=dict.fromkeys(media_types, OpenApiTypes.BINARY),
        parameters=[_CONTENT_ENCODING],
        responses={202: ImportSerializer, **_errors(*unreadable)},
    )


csv_import = _import(
    "csv",
    "Import a DCGM CSV",
    "A DCGM CSV with the header of data/dcgm_metrics_sample.csv (required columns in any "
    "order), optionally gzip-compressed. Rows are stored at their own timestamps. The body "
    "is recorded in parts of 10,000 lines before the answer; a bad row rejects only itself.",
    ["text/csv", "text/plain"],
    (
        "its first line is not a DCGM CSV header",
        "The CSV's first line is not a DCGM header: header lacks the column(s) uuid; ...",
    ),
)

page_import = _import(
    "prometheus",
    "Import a Prometheus text exposition page",
    "A page in the Prometheus text format 0.0.4, as dcgm-exporter serves it, optionally "
    "gzip-compressed. DCGM_FI_* samples are stored at the page's own timestamp when the line "
    "has one, else at the time the request arrived; other families are ignored and counted. "
    "Recorded in parts of 10,000 samples before the answer; a bad series rejects only itself, "
    "a page the parser refuses as a whole is a 400.",
    ["text/plain"],
    (
        "not UTF-8, or a page the text format's parser refuses as a whole",
        "The body cannot be read: not a valid Prometheus text format page: ...",
    ),
)
