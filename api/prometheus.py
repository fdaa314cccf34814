"""``GET /metrics``: the pipeline's own series in Prometheus's exposition format.

Each scrape builds a registry of the web processes' request series and the pipeline's state
read from the database (``ingest.pipeline_metrics``), and answers in the format the client
asks for: OpenMetrics for Prometheus, the classic text format otherwise. Not part of
``/api/v1`` nor of its OpenAPI document: it is a monitoring endpoint, and not JSON.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from api.authentication import api_token_required
from api.request_metrics import register_request_metrics
from ingest.pipeline_metrics import PipelineCollector


@require_safe
@api_token_required
def metrics(request: HttpRequest) -> HttpResponse:
    registry = CollectorRegistry()
    register_request_metrics(registry)
    registry.register(PipelineCollector())
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return HttpResponse(encode(registry), content_type=content_type)
