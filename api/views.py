"""API views. Health and stats answer from cheap sources: a ping each, and counters."""

from __future__ import annotations

import logging

from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ingest.queues import check_broker
from ingest.stats import pipeline_stats

logger = logging.getLogger(__name__)

_health_serializer = inline_serializer(
    "Health",
    fields={
        "status": serializers.ChoiceField(choices=["ok", "degraded"]),
        "database": serializers.CharField(),
        "broker": serializers.CharField(),
    },
)


class HealthView(APIView):
    """Whether the database and the broker answer; 503 names the part that does not."""

    @extend_schema(responses={200: _health_serializer, 503: _health_serializer})
    def get(self, request: Request) -> Response:
        parts = {"database": _probe_database(), "broker": _probe_broker()}
        healthy = all(state == "ok" for state in parts.values())
        body = {"status": "ok" if healthy else "degraded", **parts}
        return Response(body, status=200 if healthy else 503)


def _probe_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:  # noqa: BLE001  (any failure means "down", with its reason)
        logger.warning("health: database down: %s", error)
        return f"down: {type(error).__name__}"
    return "ok"


def _probe_broker() -> str:
    try:
        check_broker()
    except Exception as error:  # noqa: BLE001
        logger.warning("health: broker down: %s", error)
        return f"down: {type(error).__name__}"
    return "ok"


class StatsView(APIView):
    """Totals of what has been ingested, read from counters kept at ingest time."""

    @extend_schema(responses={200: None})
    def get(self, request: Request) -> Response:
        return Response(pipeline_stats())
