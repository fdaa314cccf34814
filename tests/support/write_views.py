"""A URLconf of write-protected views built from the push endpoints' parts, for tests.

They authenticate, authorise and read bodies exactly as the push endpoints do, then answer
with what they read instead of storing it. Tests select it with
``@pytest.mark.urls("tests.support.write_views")``; the live server of the Prometheus test
serves it.
"""

from __future__ import annotations

import hashlib
import threading

from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import api_token_required
from api.permissions import CanWrite
from api.push_body import GZIP, IDENTITY, read_body, read_remote_write
from ingest.remote_write import WriteBatch

TEXT_MEDIA_TYPES = {"text/plain", "text/csv"}


class ReceivedBatches:
    """Every batch the remote write view decoded, in arrival order (the server is a thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: list[WriteBatch] = []

    def add(self, batch: WriteBatch) -> None:
        with self._lock:
            self._batches.append(batch)

    def take(self) -> list[WriteBatch]:
        with self._lock:
            batches, self._batches = self._batches, []
        return batches


received = ReceivedBatches()


class RemoteWriteView(APIView):
    permission_classes = [CanWrite]

    def post(self, request: Request) -> Response:
        batch = read_remote_write(request)
        received.add(batch)
        return Response(
            {
                "series": len(batch.series),
                "samples": batch.samples,
                "stale_markers": batch.stale_markers,
                "too_far_ahead": batch.too_far_ahead,
                "metadata": batch.metadata,
            }
        )


class TextPushView(APIView):
    permission_classes = [CanWrite]

    def post(self, request: Request) -> Response:
        body = read_body(request, media_types=TEXT_MEDIA_TYPES, encodings={IDENTITY, GZIP})
        return Response({"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()})


@api_token_required
def plain_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("# a page a plain Django view serves\n", content_type="text/plain")


urlpatterns = [
    path("write", RemoteWriteView.as_view()),
    path("push", TextPushView.as_view()),
    path("plain", plain_view),
]
