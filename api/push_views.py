"""The write side of the API: Prometheus remote write, and imports of a CSV or an exporter page.

Each view authenticates a token that may write, refuses with a 503 and ``Retry-After`` while
the collect queue is at its bound or the database or broker is down (before reading the body),
reads the body (``api.push_body``), cuts it into parts (``ingest.push_parts``) and records them
durably (``ingest.push``) before answering 2xx. Collectors commit the parts later, exactly once.

They are not throttled per request: a 429 makes Prometheus drop the batch, and the queue's
bound, answered with a 503 that Prometheus retries, is what holds writers back.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import push_schema
from api.models import ApiToken
from api.permissions import CanWrite
from api.push_body import GZIP, IDENTITY, read_body, read_remote_write
from ingest import push, push_parts, pushed_series
from ingest.chunks import Chunk
from ingest.collector import UNREADABLE_CHUNK_ERRORS, parse_chunk, reject_past_retention
from ingest.dcgm import HeaderError
from ingest.queues import queue_depth
from ingest.tasks import INFRASTRUCTURE_ERRORS
from telemetry_project.routing import COLLECT_QUEUE

CSV_MEDIA_TYPES = {"text/csv", "text/plain"}
PAGE_MEDIA_TYPES = {"text/plain"}
# Refused rows listed in an import's answer; the count covers them all.
LISTED_REFUSALS = 100


class ServiceUnavailable(APIException):
    """503 with ``Retry-After`` (DRF's handler sends the header for an exception's ``wait``)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.wait = settings.PUSH_RETRY_AFTER_SECONDS


class PushView(APIView):
    permission_classes = [CanWrite]
    throttle_classes = []
    # Bodies are read by api.push_body, never by DRF's parsers.
    parser_classes = []

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        depth = queue_depth(COLLECT_QUEUE)
        if depth >= settings.COLLECT_QUEUE_MAX_DEPTH:
            raise ServiceUnavailable(
                f"The collect queue holds {depth} chunks, its bound is "
                f"{settings.COLLECT_QUEUE_MAX_DEPTH}: send again later."
            )

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, (*INFRASTRUCTURE_ERRORS, OSError)):
            exc = ServiceUnavailable(
                f"The pipeline cannot record data now ({type(exc).__name__}): send again later."
            )
        return super().handle_exception(exc)

    @staticmethod
    def token(request: Request) -> ApiToken:
        token = request.auth
        assert isinstance(token, ApiToken)  # noqa: S101  (CanWrite let only a token through)
        return token


class RemoteWriteView(PushView):
    """Prometheus remote write 1.0: samples of DCGM fields stored at their own times."""

    @push_schema.remote_write
    def post(self, request: Request) -> Response:
        received_at = timezone.now()
        batch = read_remote_write(request)
        token = self.token(request).pk
        digest = push.body_digest(request.body)
        split = pushed_series.split(batch.series, push.PART_ROWS)
        tallies = {push.IGNORED_SAMPLES: split.ignored, push.STALE_MARKERS: batch.stale_markers}
        if split.parts or any(tallies.values()):
            parts = push_parts.remote_write_parts(token, digest, split, received_at)
            push.record(token, digest, parts, tallies)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CsvImportView(PushView):
    """A DCGM CSV, stored with its own timestamps."""

    @push_schema.csv_import
    def post(self, request: Request) -> Response:
        body = read_body(request, media_types=CSV_MEDIA_TYPES, encodings={IDENTITY, GZIP})
        token = self.token(request).pk
        digest = push.body_digest(request.body)
        try:
            parts = push_parts.csv_parts(token, digest, body)
        except HeaderError as error:
            raise ParseError(f"The CSV's first line is not a DCGM header: {error}.") from None
        return _import(token, digest, parts)


class PageImportView(PushView):
    """A Prometheus text exposition page (dcgm-exporter's), stored at the page's timestamps, or
    at the time the request arrived for lines without one."""

    @push_schema.page_import
    def post(self, request: Request) -> Response:
        received_at = timezone.now()
        body = read_body(request, media_types=PAGE_MEDIA_TYPES, encodings={IDENTITY, GZIP})
        token = self.token(request).pk
        digest = push.body_digest(request.body)
        return _import(token, digest, push_parts.page_parts(token, digest, body, received_at))


def _import(token: int, digest: str, parts: list[Chunk]) -> Response:
    """Read the parts as collectors will, to answer what they hold, then record them."""
    rows = ignored = 0
    refusals: list[dict[str, Any]] = []
    for part in parts:
        try:
            parsed = parse_chunk(part)
        except UNREADABLE_CHUNK_ERRORS as error:
            raise ParseError(f"The body cannot be read: {error}.") from None
        reject_past_retention(parsed, part.stamp)
        rows += len(parsed)
        ignored += parsed.skipped
        refusals += [
            {"line": line.line_number, "reason": line.reason, "text": line.raw}
            for line in parsed.rejected
        ]
    recorded = push.Recorded([], new=0)
    if parts or ignored:
        recorded = push.record(token, digest, parts, {push.IGNORED_SAMPLES: ignored})
    body = {
        "chunks": recorded.chunk_ids,
        "rows": rows,
        "refused": len(refusals),
        "ignored": ignored,
        "refusals": refusals[:LISTED_REFUSALS],
        "already_recorded": bool(parts) and not recorded.new,
    }
    return Response(body, status=status.HTTP_202_ACCEPTED)
